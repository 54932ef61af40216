"""Meta-format SAM 2 checkpoints (.pt from facebookresearch/sam2) -> transformers' Sam2VideoModel.

Why: users often hold the original ``sam2.1_hiera_*.pt`` files rather than a Hugging Face snapshot. The
model code we run is transformers' Sam2VideoModel, so we rename Meta's parameters into its layout here
(our own key mapping, written from the two module trees) and load strictly: a checkpoint that leaves any
parameter unset or carries one we do not understand is rejected, never half-loaded.

The architecture is read off the checkpoint's shapes where they determine it (embedding width, blocks per
stage, memory size, SAM 2 vs 2.1 heads); the few choices that leave no trace in the weights (attention heads,
global-attention blocks, window sizes) come from the four official sizes: tiny, small, base-plus, large.
The input resolution leaves no trace either: it defaults to SAM 2's 1024 and every size field of the
transformers config (image_size, prompt-encoder image_size, backbone feature sizes, RoPE feature sizes)
follows it, because a model whose top-level image_size disagrees with the others runs and gives wrong masks.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from ..errors import ModelError

if TYPE_CHECKING:  # transformers is imported lazily: the package imports without it
    from transformers import Sam2VideoConfig, Sam2VideoModel


@dataclass(frozen=True)
class HieraSize:
    """Backbone choices of one official SAM 2 size that the weights do not record."""

    name: str
    embed_dim: int
    blocks_per_stage: tuple[int, ...]
    num_heads: int
    global_attention_blocks: tuple[int, ...]
    window_size_per_stage: tuple[int, ...]


OFFICIAL_SIZES: tuple[HieraSize, ...] = (
    HieraSize("tiny", 96, (1, 2, 7, 2), 1, (5, 7, 9), (8, 4, 14, 7)),
    HieraSize("small", 96, (1, 2, 11, 2), 1, (7, 10, 13), (8, 4, 14, 7)),
    HieraSize("base-plus", 112, (2, 3, 16, 3), 2, (12, 16, 20), (8, 4, 14, 7)),
    HieraSize("large", 144, (2, 6, 36, 4), 2, (23, 33, 43), (8, 4, 16, 8)),
)

# Plain renames, applied in order to every key after the structural rules below. Each pair is a regex on the
# Meta key and its replacement in transformers' Sam2VideoModel.
_RENAMES: tuple[tuple[str, str], ...] = (
    # image encoder: Hiera trunk + FPN neck
    (r"^image_encoder\.trunk\.", "vision_encoder.backbone."),
    (r"^image_encoder\.neck\.convs\.(\d+)\.conv\.", r"vision_encoder.neck.convs.\1."),
    (r"^vision_encoder\.backbone\.patch_embed\.proj\.", "vision_encoder.backbone.patch_embed.projection."),
    (r"^(vision_encoder\.backbone\.blocks\.\d+)\.norm(\d)\.", r"\1.layer_norm\2."),
    # prompt encoder
    (r"^sam_prompt_encoder\.", "prompt_encoder."),
    # mask decoder
    (r"^sam_mask_decoder\.", "mask_decoder."),
    (r"^mask_decoder\.transformer\.norm_final_attn\.", "mask_decoder.transformer.layer_norm_final_attn."),
    (r"^(mask_decoder\.transformer\.layers\.\d+)\.norm(\d)\.", r"\1.layer_norm\2."),
    (r"\.out_proj\.(weight|bias)$", r".o_proj.\1"),  # attention output projections (decoder + memory attn)
    # memory attention
    (r"^(memory_attention\.layers\.\d+)\.norm(\d)\.", r"\1.layer_norm\2."),
    (r"^memory_attention\.norm\.", "memory_attention.layer_norm."),
    # memory encoder
    (r"^memory_encoder\.pix_feat_proj\.", "memory_encoder.feature_projection."),
    (r"^memory_encoder\.o_proj\.", "memory_encoder.projection."),  # its out_proj, renamed above
    (r"^memory_encoder\.fuser\.", "memory_encoder.memory_fuser."),
    (r"^(memory_encoder\.memory_fuser\.layers\.\d+)\.dwconv\.", r"\1.depthwise_conv."),
    (r"^(memory_encoder\.memory_fuser\.layers\.\d+)\.pwconv(\d)\.", r"\1.pointwise_conv\2."),
    (r"^(memory_encoder\.memory_fuser\.layers\.\d+)\.norm\.", r"\1.layer_norm."),
    (r"^(memory_encoder\.memory_fuser\.layers\.\d+)\.gamma$", r"\1.scale"),
    # top-level tokens and heads
    (r"^maskmem_tpos_enc$", "memory_temporal_positional_encoding"),
    (r"^no_mem_embed$", "no_memory_embedding"),
    (r"^no_mem_pos_enc$", "no_memory_positional_encoding"),
    (r"^no_obj_ptr$", "no_object_pointer"),
    (r"^no_obj_embed_spatial$", "occlusion_spatial_embedding_parameter"),
    (r"^obj_ptr_proj\.", "object_pointer_proj."),
    (r"^obj_ptr_tpos_proj\.", "temporal_positional_encoding_projection_layer."),
)

# Meta's MLP class keeps every linear layer in ``<prefix>.layers.<i>``; transformers' feed-forward splits
# them into proj_in, layers.<i-1> and proj_out. These prefixes hold such MLPs.
_MLP_PREFIX = re.compile(
    r"^(image_encoder\.trunk\.blocks\.\d+\.mlp"
    r"|sam_mask_decoder\.transformer\.layers\.\d+\.mlp"
    r"|sam_mask_decoder\.iou_prediction_head"
    r"|sam_mask_decoder\.pred_obj_score_head"
    r"|sam_mask_decoder\.output_hypernetworks_mlps\.\d+"
    r"|obj_ptr_proj)\.layers\.(\d+)\.(weight|bias)$"
)
# nn.Sequential slots: prompt-encoder mask downscaling and decoder upscaling (activations hold no weights)
_SEQUENTIAL_SLOTS: dict[str, dict[int, str]] = {
    "sam_prompt_encoder.mask_downscaling": {
        0: "prompt_encoder.mask_embed.conv1", 1: "prompt_encoder.mask_embed.layer_norm1",
        3: "prompt_encoder.mask_embed.conv2", 4: "prompt_encoder.mask_embed.layer_norm2",
        6: "prompt_encoder.mask_embed.conv3",
    },
    "sam_mask_decoder.output_upscaling": {
        0: "mask_decoder.upscale_conv1", 1: "mask_decoder.upscale_layer_norm",
        3: "mask_decoder.upscale_conv2",
    },
}
_SEQ = re.compile(
    r"^(sam_prompt_encoder\.mask_downscaling|sam_mask_decoder\.output_upscaling)\.(\d+)\.(weight|bias)$")
# Memory-encoder mask downsampler: Sequential of (conv, LayerNorm2d, act) x n, then a final 1x1 conv.
_DOWNSAMPLER = re.compile(r"^memory_encoder\.mask_downsampler\.encoder\.(\d+)\.(weight|bias)$")
_POINT_EMBED = re.compile(r"^sam_prompt_encoder\.point_embeddings\.(\d+)\.weight$")
_GAUSSIAN = "sam_prompt_encoder.pe_layer.positional_encoding_gaussian_matrix"


def _layer_counts(keys: list[str]) -> dict[str, int]:
    counts: dict[str, set[int]] = {}
    for key in keys:
        m = _MLP_PREFIX.match(key)
        if m:
            counts.setdefault(m.group(1), set()).add(int(m.group(2)))
    return {prefix: max(idx) + 1 for prefix, idx in counts.items()}


def _rename(key: str) -> str:
    for pattern, repl in _RENAMES:
        key = re.sub(pattern, repl, key)
    return key


def convert_meta_state_dict(meta_state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename (and where needed regroup) a Meta SAM 2 state dict into Sam2VideoModel's keys.

    Tensors are shared, not copied. Raises ModelError on a key that belongs to no known SAM 2 module.
    """
    keys = list(meta_state)
    mlp_layers = _layer_counts(keys)
    downsampler_final = max(
        (int(m.group(1)) for k in keys if (m := _DOWNSAMPLER.match(k))), default=-1
    )
    out: dict[str, torch.Tensor] = {}
    points: dict[int, torch.Tensor] = {}
    for key, value in meta_state.items():
        if (m := _POINT_EMBED.match(key)) is not None:
            points[int(m.group(1))] = value
            continue
        if key == _GAUSSIAN:  # one random projection shared by the prompt encoder and the image-wide PE
            out["prompt_encoder.shared_embedding.positional_embedding"] = value
            out["shared_image_embedding.positional_embedding"] = value
            continue
        if (m := _MLP_PREFIX.match(key)) is not None:
            prefix, idx, kind = m.group(1), int(m.group(2)), m.group(3)
            last = mlp_layers[prefix] - 1
            slot = "proj_in" if idx == 0 else "proj_out" if idx == last else f"layers.{idx - 1}"
            out[_rename(f"{prefix}.{slot}.{kind}")] = value
            continue
        if (m := _SEQ.match(key)) is not None:
            slot = _SEQUENTIAL_SLOTS[m.group(1)].get(int(m.group(2)))
            if slot is None:
                raise ModelError(f"Meta SAM 2 checkpoint key {key!r} does not match SAM 2's layer layout")
            out[f"{slot}.{m.group(3)}"] = value
            continue
        if (m := _DOWNSAMPLER.match(key)) is not None:
            idx, kind = int(m.group(1)), m.group(2)
            base = "memory_encoder.mask_downsampler"
            if idx == downsampler_final:
                out[f"{base}.final_conv.{kind}"] = value
            elif idx % 3 == 0:
                out[f"{base}.layers.{idx // 3}.conv.{kind}"] = value
            elif idx % 3 == 1:
                out[f"{base}.layers.{idx // 3}.layer_norm.{kind}"] = value
            else:
                raise ModelError(f"Meta SAM 2 checkpoint key {key!r} does not match SAM 2's layer layout")
            continue
        new = _rename(key)
        if new == key and not key.startswith(("mask_downsample.", "memory_attention.", "memory_encoder.")):
            raise ModelError(f"Meta SAM 2 checkpoint has an unknown parameter {key!r}")
        out[new] = value
    if points:
        if sorted(points) != list(range(len(points))):
            raise ModelError(f"Meta SAM 2 checkpoint has gaps in point_embeddings: {sorted(points)}")
        out["prompt_encoder.point_embed.weight"] = torch.cat([points[i] for i in range(len(points))], dim=0)
    return out


def _stages(meta_state: Mapping[str, torch.Tensor]) -> tuple[int, ...]:
    """Blocks per Hiera stage: a stage starts at block 0 and at every block that changes width (has proj)."""
    blocks = sorted({int(m.group(1)) for k in meta_state
                     if (m := re.match(r"^image_encoder\.trunk\.blocks\.(\d+)\.", k))})
    if not blocks:
        raise ModelError("Meta SAM 2 checkpoint has no image_encoder.trunk.blocks: not a SAM 2 state dict")
    starts = [0] + [b for b in blocks
                    if b > 0 and f"image_encoder.trunk.blocks.{b}.proj.weight" in meta_state]
    ends = starts[1:] + [blocks[-1] + 1]
    return tuple(e - s for s, e in zip(starts, ends))


def _indices(meta_state: Mapping[str, torch.Tensor], pattern: str) -> set[int]:
    return {int(m.group(1)) for k in meta_state if (m := re.match(pattern, k))}


def official_size(meta_state: Mapping[str, torch.Tensor]) -> HieraSize:
    """Which of the four official SAM 2 sizes these weights are (ModelError when none)."""
    try:
        embed_dim = int(meta_state["image_encoder.trunk.patch_embed.proj.weight"].shape[0])
    except KeyError:
        raise ModelError("Meta SAM 2 checkpoint has no image_encoder.trunk.patch_embed: "
                         "not a SAM 2 state dict") from None
    stages = _stages(meta_state)
    for size in OFFICIAL_SIZES:
        if size.embed_dim == embed_dim and size.blocks_per_stage == stages:
            return size
    raise ModelError(f"Meta SAM 2 checkpoint backbone (width {embed_dim}, blocks per stage {list(stages)}) "
                     f"is not one of the official sizes tiny/small/base-plus/large; "
                     f"pass a Sam2VideoConfig explicitly")


def config_from_meta_state_dict(meta_state: Mapping[str, torch.Tensor], image_size: int = 1024,
                                **overrides: Any) -> Sam2VideoConfig:
    """The transformers config matching a Meta state dict, at input resolution ``image_size``.

    ``image_size`` must be a multiple of 32 (SAM 2's coarsest feature stride is 16 and its window attention
    needs even sizes); every size field of the config follows it. ``overrides`` go to Sam2VideoConfig.
    """
    from transformers import Sam2VideoConfig

    if image_size % 32 != 0 or image_size < 64:
        raise ModelError(f"SAM 2 image size must be a multiple of 32 and >= 64, got {image_size}")
    size = official_size(meta_state)
    dims = [size.embed_dim * 2**i for i in range(len(size.blocks_per_stage))]
    heads = [size.num_heads * 2**i for i in range(len(size.blocks_per_stage))]
    bkg = list(meta_state["image_encoder.trunk.pos_embed"].shape[-2:])
    window0 = int(meta_state["image_encoder.trunk.pos_embed_window"].shape[-1])
    windows = [window0, *size.window_size_per_stage[1:]]
    hidden = int(meta_state["no_mem_embed"].shape[-1])
    maskmem = meta_state["maskmem_tpos_enc"]
    mem_layers = _indices(meta_state, r"^memory_attention\.layers\.(\d+)\.")
    fuser_layers = _indices(meta_state, r"^memory_encoder\.fuser\.layers\.(\d+)\.")
    feats = [[image_size // s, image_size // s] for s in (4, 8, 16)]
    backbone = {
        "model_type": "sam2_hiera_det_model",
        "hidden_size": size.embed_dim,
        "num_attention_heads": size.num_heads,
        "image_size": [image_size, image_size],
        "blocks_per_stage": list(size.blocks_per_stage),
        "embed_dim_per_stage": dims,
        "num_attention_heads_per_stage": heads,
        "window_size_per_stage": windows,
        "global_attention_blocks": list(size.global_attention_blocks),
        "window_positional_embedding_background_size": bkg,
    }
    vision = {
        "model_type": "sam2_vision_model",
        "backbone_config": backbone,
        "backbone_channel_list": dims[::-1],
        "backbone_feature_sizes": feats,
        "fpn_hidden_size": hidden,
    }
    kwargs: dict[str, Any] = {
        "vision_config": vision,
        "prompt_encoder_config": {"hidden_size": hidden, "image_size": image_size},
        "mask_decoder_config": {"hidden_size": hidden},
        "image_size": image_size,
        "num_maskmem": int(maskmem.shape[0]),
        "memory_encoder_output_channels": int(maskmem.shape[-1]),
        "memory_attention_hidden_size": hidden,
        "memory_attention_num_layers": len(mem_layers),
        "memory_attention_rope_feat_sizes": [image_size // 16, image_size // 16],
        "memory_fuser_num_layers": len(fuser_layers),
        # SAM 2.1 added these two heads; SAM 2.0 checkpoints have neither
        "enable_occlusion_spatial_embedding": "no_obj_embed_spatial" in meta_state,
        "enable_temporal_pos_encoding_for_object_pointers": "obj_ptr_tpos_proj.weight" in meta_state,
    }
    kwargs.update(overrides)
    return Sam2VideoConfig(**kwargs)


def check_config_sizes(config: Sam2VideoConfig) -> None:
    """Reject a config whose size fields disagree (it would run and give wrong masks)."""
    s = config.image_size
    s = s if isinstance(s, int) else s[0]
    want = {
        "prompt_encoder_config.image_size": s,
        "vision_config.backbone_feature_sizes": [[s // 4, s // 4], [s // 8, s // 8], [s // 16, s // 16]],
        "memory_attention_rope_feat_sizes": [s // 16, s // 16],
        "vision_config.backbone_config.image_size": [s, s],
    }
    have = {
        "prompt_encoder_config.image_size": config.prompt_encoder_config.image_size,
        "vision_config.backbone_feature_sizes": [list(x)
                                                 for x in config.vision_config.backbone_feature_sizes],
        "memory_attention_rope_feat_sizes": list(config.memory_attention_rope_feat_sizes),
        "vision_config.backbone_config.image_size": list(config.vision_config.backbone_config.image_size),
    }
    for name, value in want.items():
        got = have[name]
        if isinstance(got, (list, tuple)) and not isinstance(value, list):
            got = got[0]
        if got != value:
            raise ModelError(f"Sam2VideoConfig {name} is {got} but image_size {s} needs {value}")


def is_meta_checkpoint(name_or_path: str | os.PathLike[str]) -> bool:
    """True for a local ``.pt``/``.pth`` file: the form Meta ships (hub ids and save_pretrained dirs are not)."""
    path = os.fspath(name_or_path)
    return path.endswith((".pt", ".pth")) and os.path.isfile(path)


def read_meta_checkpoint(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """The model state dict of a Meta .pt file (``{"model": state_dict}`` or a bare state dict)."""
    if not os.path.isfile(path):
        raise ModelError(f"Meta SAM 2 checkpoint {str(path)!r} does not exist")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt or unsafe pickles
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ModelError(f"cannot read Meta SAM 2 checkpoint {str(path)!r}: {first}") from exc
    state = blob.get("model", blob) if isinstance(blob, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelError(f"Meta SAM 2 checkpoint {str(path)!r} holds no state dict of tensors")
    return state


def model_from_meta_state_dict(meta_state: Mapping[str, torch.Tensor], config: Sam2VideoConfig | None = None,
                               *, image_size: int = 1024) -> Sam2VideoModel:
    """A Sam2VideoModel (eval mode) carrying these Meta weights; strict: every key mapped, none missing."""
    from transformers import Sam2VideoModel

    if config is None:
        config = config_from_meta_state_dict(meta_state, image_size=image_size)
    check_config_sizes(config)
    converted = convert_meta_state_dict(meta_state)
    model = Sam2VideoModel(config)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(converted))
    unexpected = sorted(set(converted) - set(expected))
    if missing or unexpected:
        raise ModelError(f"Meta SAM 2 checkpoint does not fit the config: {len(missing)} missing "
                         f"(e.g. {missing[:3]}), {len(unexpected)} unexpected (e.g. {unexpected[:3]})")
    bad = [k for k, v in converted.items() if tuple(v.shape) != tuple(expected[k].shape)]
    if bad:
        k = bad[0]
        raise ModelError(f"Meta SAM 2 checkpoint shape mismatch for {k}: {tuple(converted[k].shape)} vs "
                         f"{tuple(expected[k].shape)} in the config ({len(bad)} such parameters)")
    model.load_state_dict(converted, strict=True)
    return model.eval()


def load_meta_checkpoint(path: str | os.PathLike[str], config: Sam2VideoConfig | None = None,
                         *, image_size: int = 1024) -> Sam2VideoModel:
    """Load a facebookresearch/sam2 .pt checkpoint as transformers' Sam2VideoModel.

    ``config`` None infers it from the weights (official sizes only) at ``image_size``.
    """
    return model_from_meta_state_dict(read_meta_checkpoint(path), config, image_size=image_size)
