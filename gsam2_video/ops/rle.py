"""COCO run-length encoding of a batch of masks, equal to ``pycocotools.mask.encode``.

Dataset export (YouTube-VIS / COCO style) encodes every object mask of every frame; pycocotools needs a
Fortran-ordered uint8 copy on the host first. Here the run boundaries are found on the masks' device
(a CUDA kernel on GPU, vectorised torch on CPU): runs are taken in column-major order and start with a
(possibly empty) run of zeros, as in COCO. Only the run lengths travel to the host, where pycocotools turns
them into its compressed string form (``frPyObjects``), so the result is byte-identical to ``encode``.
"""

from __future__ import annotations

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

            starts = run_starts_cuda(masks)
        else:
            starts = run_starts_reference(masks)
        runs = run_lengths(starts)
    return mask_utils.frPyObjects([{"size": [h, w], "counts": r} for r in runs], h, w)
