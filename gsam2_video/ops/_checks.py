"""Input validation shared by the mask ops, raising one-line ModelError messages."""

from __future__ import annotations

import torch

from ..errors import ModelError

MASK_DTYPES = (torch.bool, torch.uint8)


def check_masks(name: str, masks: torch.Tensor, ndim: int | None = 3) -> torch.Tensor:
    """Return ``masks`` as a bool tensor after checking type and rank; raise ModelError otherwise."""
    if not isinstance(masks, torch.Tensor):
        raise ModelError(f"{name} must be a torch.Tensor of masks, got {type(masks).__name__}")
    if masks.dtype not in MASK_DTYPES:
        raise ModelError(f"{name} must be bool or uint8 masks, got {masks.dtype} (threshold logits first)")
    if ndim is not None and masks.dim() != ndim:
        raise ModelError(f"{name} must have {ndim} dimensions (N x H x W), got shape {tuple(masks.shape)}")
    if ndim is None and masks.dim() < 2:
        raise ModelError(f"{name} must have at least 2 dimensions (... x H x W), got shape {tuple(masks.shape)}")
    return masks if masks.dtype == torch.bool else masks != 0
