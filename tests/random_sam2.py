"""Random-weight SAM 2 video configs and checkpoints, for tests and parity runs without real weights.

No weights can be downloaded here, so every propagator test runs on a randomly initialised
``Sam2VideoModel`` that is saved with ``save_pretrained`` and loaded back through the same path users hit
with a hub id. Three sizes:

* :func:`tiny_sam2_config` - milliseconds per frame on a CPU, for unit and end-to-end tests;
* :func:`reduced_sam2_config` - the hiera-tiny architecture at a reduced image size, for parity against
  Meta's ``SAM2VideoPredictor`` (whose hydra config must be reduced the same way);
* :func:`real_size_sam2_config` - the shapes of ``facebook/sam2.1-hiera-tiny`` (1024 px).

SAM 2's image size appears in five places of the transformers config (top-level ``image_size``, the
prompt encoder's ``image_size``, the Hiera backbone's ``image_size``, the vision ``backbone_feature_sizes``
and ``memory_attention_rope_feat_sizes``). A wrong top-level value runs without error and gives wrong masks,
so every builder here derives all of them from one number, and the package's own check
(:func:`gsam2_video.models.sam2_checks.sam2_size_problems`) verifies a config before it is saved.

Test-side on purpose: these builders exist because no weights can be downloaded in tests and benchmarks;
users load real checkpoints, so none of this ships in the package.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from transformers import Sam2VideoConfig, Sam2VideoModel

from gsam2_video.errors import ConfigError
from gsam2_video.models.sam2_checks import FEATURE_STRIDES, MASK_DECODER_PATCH, sam2_size_problems


def _size_fields(image_size: int) -> dict[str, Any]:
    if image_size % 32 != 0 or image_size < 64:
        raise ConfigError(f"SAM 2 image size must be a multiple of 32 and >= 64, got {image_size}")
    top = image_size // MASK_DECODER_PATCH
    return {
        "image_size": image_size,
        "backbone_feature_sizes": [[image_size // s, image_size // s] for s in FEATURE_STRIDES],
        "rope": [top, top],
    }


def _build(image_size: int, *, embed_dim: int, stages: list[int], heads: list[int], global_blocks: list[int],
           windows: list[int], hidden: int, mlp_dim: int, fuser_dim: int, ff_dim: int, attn_layers: int,
           iou_hidden: int, decoder_heads: int) -> Sam2VideoConfig:
    sizes = _size_fields(image_size)
    dims = [embed_dim * 2 ** i for i in range(4)]
    vision = {
        "model_type": "sam2_vision_model",
        "backbone_config": {
            "model_type": "sam2_hiera_det_model",
            "hidden_size": embed_dim,
            "num_attention_heads": heads[0],
            "image_size": [image_size, image_size],
            "blocks_per_stage": stages,
            "embed_dim_per_stage": dims,
            "num_attention_heads_per_stage": heads,
            "window_size_per_stage": windows,
            "global_attention_blocks": global_blocks,
        },
        "backbone_channel_list": dims[::-1],
        "backbone_feature_sizes": sizes["backbone_feature_sizes"],
        "fpn_hidden_size": hidden,
    }
    return Sam2VideoConfig(
        vision_config=vision,
        prompt_encoder_config={"hidden_size": hidden, "image_size": image_size, "patch_size": MASK_DECODER_PATCH},
        mask_decoder_config={"hidden_size": hidden, "mlp_dim": mlp_dim, "num_attention_heads": decoder_heads,
                             "iou_head_hidden_dim": iou_hidden},
        image_size=image_size,
        memory_attention_hidden_size=hidden,
        memory_attention_num_layers=attn_layers,
        memory_attention_feed_forward_hidden_size=ff_dim,
        memory_attention_rope_feat_sizes=sizes["rope"],
        memory_encoder_hidden_size=hidden,
        memory_encoder_output_channels=64,  # transformers hard-codes kv_in_dim=64 in the memory cross-attention
        mask_downsampler_embed_dim=hidden,
        memory_fuser_embed_dim=hidden,
        memory_fuser_intermediate_dim=fuser_dim,
    )


def tiny_sam2_config(image_size: int = 128) -> Sam2VideoConfig:
    """A SAM 2 video config that runs in milliseconds per frame (for tests); all size fields consistent."""
    return _build(image_size, embed_dim=8, stages=[1, 1, 2, 1], heads=[1, 1, 1, 1], global_blocks=[3],
                  windows=[8, 4, 4, 2], hidden=64, mlp_dim=128, fuser_dim=128, ff_dim=128, attn_layers=2,
                  iou_hidden=64, decoder_heads=2)


def real_size_sam2_config(image_size: int = 1024) -> Sam2VideoConfig:
    """The hiera-tiny architecture of ``facebook/sam2.1-hiera-tiny`` (SAM 2.1), at ``image_size``."""
    return _build(image_size, embed_dim=96, stages=[1, 2, 7, 2], heads=[1, 2, 4, 8], global_blocks=[5, 7, 9],
                  windows=[8, 4, 14, 7], hidden=256, mlp_dim=2048, fuser_dim=1024, ff_dim=2048, attn_layers=4,
                  iou_hidden=256, decoder_heads=8)


def reduced_sam2_config(image_size: int = 256) -> Sam2VideoConfig:
    """hiera-tiny at a reduced image size (parity runs); Meta's config needs the same image_size and
    ``feat_sizes`` = image_size / 16 in both RoPE attentions of its memory attention."""
    return real_size_sam2_config(image_size)


def save_random_sam2(out_dir: str | os.PathLike[str], config: Sam2VideoConfig | None = None,
                     seed: int = 0) -> Path:
    """Initialise a ``Sam2VideoModel`` with seeded random weights and ``save_pretrained`` it to ``out_dir``.

    The zero-initialised SAM 2 parameters (no-memory embeddings, temporal encodings, no-object pointer,
    occlusion embedding) are re-drawn so that every code path that uses them is exercised in tests.
    """
    config = config if config is not None else tiny_sam2_config()
    problems = sam2_size_problems(config)
    if problems:
        raise ConfigError("inconsistent SAM 2 config: " + "; ".join(problems))
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Sam2VideoModel(config)
    with torch.no_grad():
        for name in ("no_memory_embedding", "no_memory_positional_encoding", "memory_temporal_positional_encoding",
                     "no_object_pointer", "occlusion_spatial_embedding_parameter"):
            p = getattr(model, name, None)
            if isinstance(p, torch.nn.Parameter):
                p.copy_(torch.randn(p.shape, generator=gen) * 0.1)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.eval().save_pretrained(out)
    return out
