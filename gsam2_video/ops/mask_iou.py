"""Pairwise mask overlap matrices (IoU and coverage) between two batches of masks.

Association compares every keyframe detection with every live track; doing it pair by pair is quadratic
Python. On the CPU the masks are bit-packed (64 pixels per word) and every intersection is a vectorised
AND + popcount, the same algorithm as the CUDA kernel (``cuda/mask_iou.cu``, used for CUDA tensors when
CuPy is present). On other devices without the kernel, intersections come from one matrix product of the
flattened masks (exact: small integers, accumulated in float32 below 2**24 pixels, float64 above).
"""

from __future__ import annotations

import numpy as np
import torch

from ..errors import ModelError
from ._checks import check_masks
from ._dispatch import use_kernel

_EXACT_FP32_PIXELS = 1 << 24
_BIT_CHUNK_WORDS = 1 << 22  # uint64 words per vectorised AND/popcount step (32 MiB)


def _check_pair(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    a = check_masks("mask batch a", a)
    b = check_masks("mask batch b", b)
    if a.shape[1:] != b.shape[1:]:
        raise ModelError(f"mask batches differ in size: a is {tuple(a.shape[1:])}, b is {tuple(b.shape[1:])}")
    if a.device != b.device:
        raise ModelError(f"mask batches are on different devices: {a.device} and {b.device}")
    return a, b


def _overlap_counts_matmul(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Any-device torch path: one matrix product of the flattened masks (exact small-integer sums)."""
    n, m = a.shape[0], b.shape[0]
    pixels = a.shape[1] * a.shape[2]
    dtype = torch.float32 if pixels < _EXACT_FP32_PIXELS else torch.float64
    fa = a.reshape(n, pixels).to(dtype)
    fb = b.reshape(m, pixels).to(dtype)
    inter = (fa @ fb.T).round().to(torch.int64)
    return inter, a.reshape(n, pixels).sum(1), b.reshape(m, pixels).sum(1)


def _packed_words(masks: torch.Tensor) -> np.ndarray:
    """N x words uint64: masks packed 64 pixels per word (zero padded), as the kernel packs 32."""
    flat = masks.reshape(masks.shape[0], masks.shape[1] * masks.shape[2]).numpy()
    packed = np.packbits(flat, axis=1)
    pad = (-packed.shape[1]) % 8
    if pad:
        packed = np.pad(packed, ((0, 0), (0, pad)))
    return np.ascontiguousarray(packed).view(np.uint64)


def _overlap_counts_bits(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """CPU path: popcount(a_i AND b_j) on bit-packed masks: one 64-bit AND + popcount covers 64 pixels, where a
    float product spends a multiply-add per pixel."""
    wa, wb = _packed_words(a), _packed_words(b)
    n, m, words = wa.shape[0], wb.shape[0], wa.shape[1]
    inter = np.empty((n, m), dtype=np.int64)
    rows = max(1, _BIT_CHUNK_WORDS // max(1, m * words))  # rows of a per vectorised step
    for i0 in range(0, n, rows):
        both = wa[i0:i0 + rows, None, :] & wb[None, :, :]
        inter[i0:i0 + rows] = np.bitwise_count(both).sum(axis=2, dtype=np.int64)
    area_a = np.bitwise_count(wa).sum(axis=1, dtype=np.int64)
    area_b = np.bitwise_count(wb).sum(axis=1, dtype=np.int64)
    return torch.from_numpy(inter), torch.from_numpy(area_a), torch.from_numpy(area_b)


def overlap_counts_reference(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(intersection N x M, area_a N, area_b M) as exact int64 counts on the masks' device, without CuPy."""
    if a.device.type == "cpu" and a.shape[1] * a.shape[2] > 0:
        return _overlap_counts_bits(a, b)
    return _overlap_counts_matmul(a, b)


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
