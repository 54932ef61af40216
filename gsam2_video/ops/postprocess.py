"""SAM 2's mask post-processing: small holes filled, small foreground sprinkles removed.

Meta's video predictor runs ``fill_holes_in_mask_scores`` on every low-resolution mask (``fill_hole_area``
8 in its default build) but only when its compiled CUDA extension is present; without it the step is
silently skipped. The image predictor additionally removes foreground "sprinkles" up to
``max_sprinkle_area``. Both are reproduced here on top of :func:`gsam2_video.ops.connected_components`
(an OpenCV/torch path on the CPU, a CUDA kernel on CUDA tensors), so the result never depends on how an
extension happened to build:

* a hole is an 8-connected component of ``score <= threshold`` pixels with area <= ``fill_hole_area``;
  it becomes foreground with score ``threshold + 0.1`` (Meta's video predictor uses 0.1 at threshold 0);
* a sprinkle is an 8-connected component of ``score > threshold`` pixels with area <= ``max_sprinkle_area``
  found on the *input* scores (as Meta's image predictor does); it becomes ``threshold - 10``.
"""

from __future__ import annotations

import torch

from .connected_components import connected_components

HOLE_FILL_SCORE = 0.1  # Meta's fill_holes_in_mask_scores writes 0.1 (just above the 0 threshold)
SPRINKLE_SCORE = -10.0  # Meta's postprocess_masks writes threshold - 10


def fill_holes_in_mask_scores(scores: torch.Tensor, max_area: int, threshold: float = 0.0) -> torch.Tensor:
    """Fill background components of area <= ``max_area`` in mask scores (... x H x W); returns a new tensor."""
    if max_area <= 0 or scores.numel() == 0:
        return scores
    labels, areas = connected_components(scores <= threshold)
    is_hole = (labels > 0) & (areas <= max_area)
    return torch.where(is_hole, threshold + HOLE_FILL_SCORE, scores)  # a Python scalar: no host-to-GPU copy


def remove_sprinkles(scores: torch.Tensor, max_area: int, threshold: float = 0.0,
                     reference: torch.Tensor | None = None) -> torch.Tensor:
    """Set foreground components of area <= ``max_area`` to background.

    Components are found on ``reference`` (default: ``scores``) so a caller can, like Meta, detect
    sprinkles on the scores before hole filling and apply the result to the filled scores.
    """
    if max_area <= 0 or scores.numel() == 0:
        return scores
    src = scores if reference is None else reference
    labels, areas = connected_components(src > threshold)
    is_sprinkle = (labels > 0) & (areas <= max_area)
    return torch.where(is_sprinkle, threshold + SPRINKLE_SCORE, scores)


def postprocess_mask_scores(scores: torch.Tensor, fill_hole_area: int = 0, max_sprinkle_area: int = 0,
                            threshold: float = 0.0) -> torch.Tensor:
    """Hole filling then sprinkle removal (sprinkles detected on the input scores), as SAM 2 orders them."""
    out = fill_holes_in_mask_scores(scores, fill_hole_area, threshold)
    return remove_sprinkles(out, max_sprinkle_area, threshold, reference=scores)
