"""Consistency checks of a SAM 2 video config's image-size fields.

Why a check of its own: SAM 2's image size appears in five places of the transformers config (top-level
``image_size``, the prompt encoder's ``image_size``, the Hiera backbone's ``image_size``, the vision
``backbone_feature_sizes`` and ``memory_attention_rope_feat_sizes``). A wrong top-level value runs without
error and gives wrong masks, so the propagator refuses a config whose fields disagree, naming each one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # only annotated: the check reads attributes, so any config object with them works
    from transformers import Sam2VideoConfig

# The Hiera trunk downsamples by 4 (patch embedding) and by 2 per query-pool stage; the FPN keeps the
# first three levels (scalp=1), so SAM 2 sees features at image_size / 4, / 8 and / 16.
FEATURE_STRIDES = (4, 8, 16)
MASK_DECODER_PATCH = 16  # prompt-encoder patch size: image embedding is image_size / 16


def sam2_size_problems(config: Sam2VideoConfig) -> list[str]:
    """Every disagreement between the image-size fields of a SAM 2 video config (empty when consistent)."""
    s = config.image_size
    s = s[0] if isinstance(s, (list, tuple)) else s
    problems: list[str] = []
    pe = config.prompt_encoder_config
    pe_size = pe.image_size[0] if isinstance(pe.image_size, (list, tuple)) else pe.image_size
    if pe_size != s:
        problems.append(f"prompt_encoder_config.image_size={pe_size} but image_size={s}")
    patch = pe.patch_size[0] if isinstance(pe.patch_size, (list, tuple)) else pe.patch_size
    expect = [[s // st, s // st] for st in FEATURE_STRIDES]
    got = [list(x) for x in config.vision_config.backbone_feature_sizes]
    if got != expect:
        problems.append(f"vision_config.backbone_feature_sizes={got} but image_size={s} implies {expect}")
    if got and list(got[-1]) != [s // patch, s // patch]:
        problems.append(f"top feature size {got[-1]} != image_size / patch_size = {s // patch}")
    bb = getattr(config.vision_config, "backbone_config", None)
    bb_size = getattr(bb, "image_size", None)
    if bb_size is not None and list(bb_size if isinstance(bb_size, (list, tuple)) else [bb_size] * 2) != [s, s]:
        problems.append(f"vision_config.backbone_config.image_size={bb_size} but image_size={s}")
    rope = list(config.memory_attention_rope_feat_sizes)
    if rope != [s // patch, s // patch]:
        problems.append(f"memory_attention_rope_feat_sizes={rope} but image_size={s} implies {[s // patch] * 2}")
    return problems
