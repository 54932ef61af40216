"""Pairwise mask overlap matrices (IoU and coverage) between two batches of masks.

Association compares every keyframe detection with every live track; doing it pair by pair is quadratic
Python. Here intersections come from one matrix product of the flattened masks (exact: counts are small
integers, accumulated in float32 below 2**24 pixels and float64 above), areas from one sum each.
On CUDA tensors with CuPy present a fused kernel computes the same counts without the float copies.
"""

from __future__ import annotations

import torch

from ..errors import ModelError
from ._checks import check_masks
from ._dispatch import use_kernel

_EXACT_FP32_PIXELS = 1 << 24


def _check_pair(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    a = check_masks("mask batch a", a)
    b = check_masks("mask batch b", b)
    if a.shape[1:] != b.shape[1:]:
        raise ModelError(f"mask batches differ in size: a is {tuple(a.shape[1:])}, b is {tuple(b.shape[1:])}")
    if a.device != b.device:
        raise ModelError(f"mask batches are on different devices: {a.device} and {b.device}")
    return a, b


def overlap_counts_reference(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(intersection N x M, area_a N, area_b M) as exact int64 counts, computed with torch only."""
    n, m = a.shape[0], b.shape[0]
    pixels = a.shape[1] * a.shape[2]
    dtype = torch.float32 if pixels < _EXACT_FP32_PIXELS else torch.float64
    fa = a.reshape(n, pixels).to(dtype)
    fb = b.reshape(m, pixels).to(dtype)
    inter = (fa @ fb.T).round().to(torch.int64)
    return inter, a.reshape(n, pixels).sum(1), b.reshape(m, pixels).sum(1)


def _overlap_counts(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    if use_kernel(a, b) and a.shape[0] and b.shape[0]:
        from ..kernels.mask_iou import overlap_counts_cuda

        return overlap_counts_cuda(a, b)
    return overlap_counts_reference(a, b)


def _safe_div(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    num = num.to(torch.float32)
    den = den.to(torch.float32)
    return torch.where(den > 0, num / den.clamp_min(1), torch.zeros_like(num))


def mask_iou_matrix(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU of every mask in ``a`` (N x H x W) with every mask in ``b`` (M x H x W) -> N x M float32.

    Pairs whose union is empty get 0. N or M may be 0. Masks are bool or uint8 (nonzero = foreground).
    """
    a, b = _check_pair(a, b)
    inter, area_a, area_b = _overlap_counts(a, b)
    union = area_a[:, None] + area_b[None, :] - inter
    return _safe_div(inter, union)


def mask_coverage_matrix(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """|a_i ∩ b_j| / |a_i| for every pair -> N x M float32 ("how much of a_i lies inside b_j").

    Rows of empty masks in ``a`` are 0.
    """
    a, b = _check_pair(a, b)
    inter, area_a, _ = _overlap_counts(a, b)
    return _safe_div(inter, area_a[:, None].expand_as(inter))
