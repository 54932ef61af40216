"""Launch the fused resize + normalise kernel (``cuda/preprocess.cu``)."""

from __future__ import annotations

import numpy as np
import torch

from ..errors import ModelError
from .runtime import BLOCK, Runner, cuda_runner, grid_for

MAX_CHANNELS = 4


def preprocess_frames_cuda(frames: torch.Tensor, size: tuple[int, int], mean: tuple[float, ...],
                           std: tuple[float, ...], mode: str, runner: Runner | None = None) -> torch.Tensor:
    """B x H x W x C uint8 -> B x C x h x w float32 (see ``ops.preprocess`` for the semantics)."""
    b, in_h, in_w, c = frames.shape
    if c > MAX_CHANNELS:
        raise ModelError(f"preprocess kernel handles up to {MAX_CHANNELS} channels, got {c}")
    runner = runner or cuda_runner(frames.device)
    out_h, out_w = size
    dev = frames.device
    out = torch.empty((b, c, out_h, out_w), dtype=torch.float32, device=dev)
    mean_t = torch.tensor(mean, dtype=torch.float32).to(dev)
    std_t = torch.tensor(std, dtype=torch.float32).to(dev)
    runner.launch("preprocess.cu", "preprocess_resize_normalize", grid_for(b * out_h * out_w), (BLOCK, 1, 1),
                  (frames.contiguous(), out, np.int32(b), np.int32(in_h), np.int32(in_w), np.int32(c),
                   np.int32(out_h), np.int32(out_w), mean_t, std_t, np.int32(mode == "bicubic")))
    return out
