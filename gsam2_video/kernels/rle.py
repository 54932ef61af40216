"""Launch the COCO RLE run-start kernel (``cuda/rle.cu``)."""

from __future__ import annotations

import numpy as np
import torch

from .runtime import BLOCK, Runner, cuda_runner, grid_for


def run_starts_cuda(masks: torch.Tensor, runner: Runner | None = None) -> torch.Tensor:
    """N x (H*W) bool run-start flags in column-major order (see ``ops.rle.run_starts_reference``)."""
    runner = runner or cuda_runner(masks.device)
    n, h, w = masks.shape
    starts = torch.empty((n, h * w), dtype=torch.bool, device=masks.device)
    if starts.numel():
        runner.launch("rle.cu", "rle_run_starts", grid_for(starts.numel()), (BLOCK, 1, 1),
                      (masks.contiguous().view(torch.uint8), starts.view(torch.uint8), np.int32(n),
                       np.int32(h), np.int32(w)))
    return starts
