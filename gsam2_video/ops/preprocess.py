"""Fused frame preprocessing: uint8 H x W x C frames -> resized, normalised float C x H' x W'.

Decoders hand out uint8 HWC frames; the models want normalised float CHW at their own size. Doing
convert -> resize -> normalise as separate steps costs three full-size float passes per frame; the CUDA
kernel in ``cuda/preprocess.cu`` does it in one pass straight from the uint8 frame.

Semantics (the reference below, the kernel matches it to float rounding):
``F.interpolate(frames.float(), size, mode, align_corners=False, antialias=True)``, clamped to [0, 255],
then ``(x / 255 - mean) / std``. The antialiased filters are PIL's (bicubic with a = -0.5, triangle for
bilinear, support widened by the scale factor when shrinking), so "bicubic" tracks Meta's SAM 2 loader,
which resizes with PIL bicubic on uint8. PIL rounds to uint8 after each separable pass; this op does not,
so it differs from the PIL path: measured on a real 640x272 frame at 1024, 256 and 400x333, the largest
difference is 2.0/255 and the mean 0.15-0.21/255 (in 0-255 units before normalisation). Tests hold it to
max <= 2.5/255 and mean <= 0.3/255 (divided by std after normalisation).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F

from ..errors import ModelError
from ._dispatch import use_kernel

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
ResizeMode = Literal["bicubic", "bilinear"]


def _size(size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(size, int):
        size = (size, size)
    if len(size) != 2 or min(int(s) for s in size) < 1:
        raise ModelError(f"preprocess size must be a positive int or (height, width), got {size!r}")
    return int(size[0]), int(size[1])


def _stats(values: Sequence[float], channels: int, name: str) -> tuple[float, ...]:
    vals = tuple(float(v) for v in values)
    if len(vals) != channels:
        raise ModelError(f"preprocess {name} has {len(vals)} values but frames have {channels} channels")
    if name == "std" and min(vals) <= 0:
        raise ModelError(f"preprocess std values must be positive, got {vals}")
    return vals


def preprocess_frames_reference(frames: torch.Tensor, size: tuple[int, int], mean: tuple[float, ...],
                                std: tuple[float, ...], mode: ResizeMode) -> torch.Tensor:
    """Torch reference on a B x H x W x C uint8 batch -> B x C x h x w float32."""
    x = frames.permute(0, 3, 1, 2).float()
    x = F.interpolate(x, size=size, mode=mode, align_corners=False, antialias=True).clamp_(0, 255)
    m = torch.tensor(mean, dtype=torch.float32, device=x.device).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=torch.float32, device=x.device).view(1, -1, 1, 1)
    return (x / 255 - m) / s


def preprocess_frames(
    frames: torch.Tensor,
    size: int | Sequence[int],
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    mode: ResizeMode = "bicubic",
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Resize and normalise uint8 frames (H x W x C or B x H x W x C) to float (C x h x w or B x C x h x w).

    ``size`` is an int (square) or (height, width); ``mode`` is "bicubic" (PIL-like, the SAM 2 choice) or
    "bilinear". Values are ``(resized / 255 - mean) / std`` computed in float32 and returned as ``dtype``.
    """
    if not isinstance(frames, torch.Tensor) or frames.dtype != torch.uint8 or frames.dim() not in (3, 4):
        got = f"{frames.dtype} {tuple(frames.shape)}" if isinstance(frames, torch.Tensor) else type(frames).__name__
        raise ModelError(f"preprocess frames must be a uint8 H x W x C or B x H x W x C tensor, got {got}")
    if mode not in ("bicubic", "bilinear"):
        raise ModelError(f"preprocess mode must be 'bicubic' or 'bilinear', got {mode!r}")
    single = frames.dim() == 3
    batch = frames[None] if single else frames
    if min(batch.shape[1:3]) < 1:
        raise ModelError(f"preprocess frames are empty: shape {tuple(frames.shape)}")
    out_size = _size(size)
    c = batch.shape[3]
    mean_t, std_t = _stats(mean, c, "mean"), _stats(std, c, "std")
    if batch.shape[0] == 0:
        out = torch.empty((0, c, *out_size), dtype=torch.float32, device=batch.device)
    elif use_kernel(batch):
        from ..kernels.preprocess import preprocess_frames_cuda

        out = preprocess_frames_cuda(batch, out_size, mean_t, std_t, mode)
    else:
        out = preprocess_frames_reference(batch, out_size, mean_t, std_t, mode)
    out = out.to(dtype)
    return out[0] if single else out
