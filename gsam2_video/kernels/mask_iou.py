"""Launch the mask-overlap kernels (``cuda/mask_iou.cu``): bit packing, areas, pairwise intersections."""

from __future__ import annotations

import numpy as np
import torch

from .runtime import BLOCK, MAX_BLOCKS, Runner, cuda_runner, grid_for

_WORD_CHUNKS = 32  # blocks along the words of one pair; enough parallelism at 1080p, few atomics


def _pack(masks: torch.Tensor, runner: Runner) -> torch.Tensor:
    rows, pixels = masks.shape[0], masks.shape[1] * masks.shape[2]
    words = (pixels + 31) // 32
    bits = torch.empty((rows, words), dtype=torch.int32, device=masks.device)
    img = masks.contiguous().view(torch.uint8)
    runner.launch("mask_iou.cu", "iou_pack_bits", grid_for(rows * words), (BLOCK, 1, 1),
                  (img, bits, np.int32(rows), np.int64(pixels), np.int64(words)))
    return bits


def _areas(bits: torch.Tensor, runner: Runner) -> torch.Tensor:
    rows, words = bits.shape
    counts = torch.zeros(rows, dtype=torch.int32, device=bits.device)
    chunks = max(1, min((words + BLOCK - 1) // BLOCK, _WORD_CHUNKS))
    for r0 in range(0, rows, MAX_BLOCKS):  # gridDim.y is limited to 65535 rows per launch
        r1 = min(rows, r0 + MAX_BLOCKS)
        runner.launch("mask_iou.cu", "iou_row_popcount", (chunks, r1 - r0, 1), (BLOCK, 1, 1),
                      (bits[r0:r1], np.int32(r1 - r0), np.int64(words), counts[r0:r1]))
    return counts


def overlap_counts_cuda(a: torch.Tensor, b: torch.Tensor, runner: Runner | None = None
                        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(intersections N x M, areas of a, areas of b) as int64, for N x H x W and M x H x W bool masks."""
    runner = runner or cuda_runner(a.device)
    n, m = a.shape[0], b.shape[0]
    abits, bbits = _pack(a, runner), _pack(b, runner)
    words = abits.shape[1]
    inter = torch.zeros(n * m, dtype=torch.int32, device=a.device)
    if n and m and words:
        chunks = max(1, min((words + BLOCK - 1) // BLOCK, _WORD_CHUNKS))
        runner.launch("mask_iou.cu", "iou_pair_intersections", (n * m, chunks, 1), (BLOCK, 1, 1),
                      (abits, bbits, np.int32(n), np.int32(m), np.int64(words), inter))
    return inter.view(n, m).long(), _areas(abits, runner).long(), _areas(bbits, runner).long()
