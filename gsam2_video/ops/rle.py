"""COCO run-length encoding of a batch of masks, equal to ``pycocotools.mask.encode``.

Dataset export (YouTube-VIS / COCO style) encodes every object mask of every frame; pycocotools needs a
Fortran-ordered uint8 copy on the host first. Here the run boundaries are found on the masks' device
(a CUDA kernel on GPU, vectorised numpy on CPU, vectorised torch elsewhere): runs are taken in column-major order and start with a
(possibly empty) run of zeros, as in COCO. Only the run lengths travel to the host, where pycocotools turns
them into its compressed string form (``frPyObjects``), so the result is byte-identical to ``encode``.
"""

from __future__ import annotations

import numpy as np
import torch
from pycocotools import mask as mask_utils

from ._checks import check_masks
from ._dispatch import use_kernel


def run_starts_reference(masks: torch.Tensor) -> torch.Tensor:
    """N x (H*W) bool: True where a column-major run starts (value differs from the previous pixel).

    Position 0 is flagged when the first pixel is foreground, so the implicit leading zero run is empty.
    """
    n = masks.shape[0]
    col = masks.transpose(1, 2).reshape(n, -1)  # column-major pixel order
    starts = torch.zeros_like(col)
    starts[:, 0] = col[:, 0]
    starts[:, 1:] = col[:, 1:] != col[:, :-1]
    return starts


def run_lengths(starts: torch.Tensor) -> list[list[int]]:
    """Turn run-start flags (N x P) into COCO run lengths per mask with one host transfer."""
    n, p = starts.shape
    idx = torch.nonzero(starts)  # (K, 2): (mask, position), sorted by mask then position
    pos = idx[:, 1]
    same_mask = torch.zeros_like(pos, dtype=torch.bool)
    same_mask[1:] = idx[1:, 0] == idx[:-1, 0]
    prev = torch.zeros_like(pos)
    prev[1:] = pos[:-1]
    gaps = pos - torch.where(same_mask, prev, torch.zeros_like(prev))  # run before each flagged position
    last = torch.zeros(n, dtype=pos.dtype, device=pos.device).scatter_reduce(0, idx[:, 0], pos, "amax")
    tail = p - last  # final run: from the last start (or 0) to the end
    per_mask = starts.sum(1).cpu().tolist()
    gaps_host, tail_host = gaps.cpu(), tail.cpu().tolist()
    return [g.tolist() + [t] for g, t in zip(torch.split(gaps_host, per_mask), tail_host)]


def run_lengths_cpu(masks: torch.Tensor) -> list[list[int]]:
    """CPU path: COCO run lengths from N x H x W bool masks with numpy, without a transposed copy.

    In column-major order pixel (y, x) follows (y - 1, x), and (0, x) follows (H - 1, x - 1); both
    comparisons are contiguous slices of the row-major masks. Only the few run starts are then converted to
    column-major positions and sorted.
    """
    n, h, w = masks.shape
    p = h * w
    m = masks.numpy()
    k_v, y_v, x_v = np.nonzero(m[:, 1:, :] != m[:, :-1, :])  # start at (y + 1, x)
    k_w, x_w = np.nonzero(m[:, 0, 1:] != m[:, h - 1, :-1])   # start at (0, x + 1)
    k_f = np.flatnonzero(m[:, 0, 0])                          # mask starts with foreground
    keys = np.concatenate([k_v * p + x_v * h + y_v + 1, k_w * p + (x_w + 1) * h, k_f * p])
    keys.sort()
    mask_id, local = keys // p, keys % p
    per_mask = np.bincount(mask_id, minlength=n)
    prev = np.zeros_like(local)
    prev[1:] = local[:-1]
    new_mask = np.ones(len(local), dtype=bool)
    new_mask[1:] = mask_id[1:] != mask_id[:-1]
    gaps = local - np.where(new_mask, 0, prev)
    last = np.zeros(n, dtype=np.int64)
    last[mask_id] = local  # keys are sorted, so the last write per mask is its last run start
    tails = (p - last).tolist()
    return [g.tolist() + [t] for g, t in zip(np.split(gaps, np.cumsum(per_mask)[:-1]), tails)]


def rle_encode(masks: torch.Tensor) -> list[dict]:
    """COCO RLE of N x H x W masks (bool/uint8) -> ``[{"size": [H, W], "counts": bytes}, ...]``.

    Equal to ``pycocotools.mask.encode(np.asfortranarray(masks.permute(1, 2, 0).numpy()))``.
    """
    masks = check_masks("masks", masks)
    n, h, w = masks.shape
    if n == 0:
        return []
    if h * w == 0:
        runs: list[list[int]] = [[0] for _ in range(n)]  # as pycocotools: one empty zero run
    else:
        if use_kernel(masks):
            from ..kernels.rle import run_starts_cuda

            runs = run_lengths(run_starts_cuda(masks))
        elif masks.device.type == "cpu":
            runs = run_lengths_cpu(masks)
        else:
            runs = run_lengths(run_starts_reference(masks))
    return mask_utils.frPyObjects([{"size": [h, w], "counts": r} for r in runs], h, w)
