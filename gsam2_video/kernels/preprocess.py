"""Launch SAM 2's frame preprocessing kernels (``cuda/preprocess.cu``): PIL's bicubic resize, then normalise.

The semantics are ``gsam2_video.ops.pil_resize`` (the numpy reference, pixel for pixel what PIL gives) and
``gsam2_video.models.sam2_preprocess.preprocess_frame`` (the normalisation). Per resized axis one small
launch computes the fixed-point filter taps on the device (nothing is uploaded per frame), then one launch
per pass resamples, in the order the installed Pillow uses; a last launch normalises into the planar
float32 tensor the image encoder takes.
"""

from __future__ import annotations

import numpy as np
import torch

from ..errors import ModelError
from ..ops.pil_resize import kernel_size, vertical_first
from .runtime import BLOCK, Runner, cuda_runner, grid_for

SOURCE = "preprocess.cu"


def _coefficients(runner: Runner, in_size: int, out_size: int, device: torch.device) -> tuple:
    ksize = kernel_size(in_size, out_size)
    bounds = torch.empty(2 * out_size, dtype=torch.int32, device=device)
    kk = torch.empty(out_size * ksize, dtype=torch.int32, device=device)
    runner.launch(SOURCE, "pp_coeffs", grid_for(out_size), (BLOCK, 1, 1),
                  (np.int32(in_size), np.int32(out_size), np.int32(ksize), bounds, kk))
    return bounds, kk, ksize


def _horizontal(runner: Runner, image: torch.Tensor, out_w: int) -> torch.Tensor:
    rows, in_w, c = image.shape
    bounds, kk, ksize = _coefficients(runner, in_w, out_w, image.device)
    out = torch.empty((rows, out_w, c), dtype=torch.uint8, device=image.device)
    runner.launch(SOURCE, "pp_resample_horizontal", grid_for(out.numel()), (BLOCK, 1, 1),
                  (image, out, np.int32(rows), np.int32(in_w), np.int32(out_w), np.int32(c), bounds, kk,
                   np.int32(ksize)))
    return out


def _vertical(runner: Runner, image: torch.Tensor, out_h: int) -> torch.Tensor:
    in_h, width, c = image.shape
    bounds, kk, ksize = _coefficients(runner, in_h, out_h, image.device)
    out = torch.empty((out_h, width, c), dtype=torch.uint8, device=image.device)
    runner.launch(SOURCE, "pp_resample_vertical", grid_for(out.numel()), (BLOCK, 1, 1),
                  (image, out, np.int32(out_h), np.int32(width), np.int32(c), bounds, kk, np.int32(ksize)))
    return out


def resize_bicubic_cuda(image: torch.Tensor, height: int, width: int, runner: Runner | None = None) -> torch.Tensor:
    """H x W x C uint8 (contiguous, on the runner's device) -> height x width x C uint8, as PIL resizes."""
    if image.dtype != torch.uint8 or image.dim() != 3 or min(image.shape) < 1:
        raise ModelError(f"resize kernel needs a non-empty H x W x C uint8 image, got {image.dtype} "
                         f"{tuple(image.shape)}")
    if height < 1 or width < 1:
        raise ModelError(f"resize target must be positive, got {height}x{width}")
    runner = runner or cuda_runner(image.device)
    out = image.contiguous()
    in_h, in_w = out.shape[:2]
    if (in_h, in_w) == (height, width):
        return out.clone()
    passes = [(_horizontal, width, 1), (_vertical, height, 0)]
    if vertical_first(in_h, in_w, height, width):
        passes.reverse()
    for run, size, axis in passes:
        if out.shape[axis] != size:
            out = run(runner, out, size)
    return out


def normalize_cuda(resized: torch.Tensor, mean: tuple[float, float, float], std: tuple[float, float, float],
                   runner: Runner | None = None) -> torch.Tensor:
    """H x W x 3 uint8 -> 3 x H x W float32: ``(float32(v / 255.0) - mean) / std`` rounded as torch does."""
    if resized.dtype != torch.uint8 or resized.dim() != 3 or resized.shape[2] != 3:
        raise ModelError(f"normalise kernel needs an H x W x 3 uint8 image, got {resized.dtype} "
                         f"{tuple(resized.shape)}")
    runner = runner or cuda_runner(resized.device)
    h, w, _ = resized.shape
    out = torch.empty((3, h, w), dtype=torch.float32, device=resized.device)
    m = [np.float32(v) for v in mean]
    s = [np.float32(v) for v in std]
    runner.launch(SOURCE, "pp_normalize", grid_for(3 * h * w), (BLOCK, 1, 1),
                  (resized.contiguous(), out, np.int32(h * w), *m, *s))
    return out
