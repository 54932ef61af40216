"""Launch the label-change kernel (``cuda/rle.cu``) behind ``ops.rle_from_label_map``."""

from __future__ import annotations

import numpy as np
import torch

from ..errors import ModelError
from .runtime import BLOCK, Runner, cuda_runner, grid_for

_ENTRY = {torch.uint8: "rle_label_changes_u8", torch.uint16: "rle_label_changes_u16",
          torch.int16: "rle_label_changes_u16", torch.int32: "rle_label_changes_i32"}


def label_changes_cuda(labels: torch.Tensor, runner: Runner | None = None) -> torch.Tensor:
    """H*W uint8 column-major change flags of an H x W label map (see ``ops.rle.change_flags_reference``).

    uint8, uint16 and int32 maps are read as they are; int64 maps are narrowed to int32 first (ids fit).
    """
    if labels.dim() != 2:
        raise ModelError(f"label map must be H x W, got {tuple(labels.shape)}")
    if labels.dtype == torch.int64:
        labels = labels.to(torch.int32)
    if labels.dtype not in _ENTRY:
        raise ModelError(f"label map dtype {labels.dtype} is not supported by the RLE kernel")
    runner = runner or cuda_runner(labels.device)
    h, w = labels.shape
    flags = torch.empty(h * w, dtype=torch.uint8, device=labels.device)
    if flags.numel():
        src = labels.contiguous()
        if src.dtype == torch.uint16:
            src = src.view(torch.int16)  # same bits; DLPack and CuPy handle int16 everywhere
        runner.launch("rle.cu", _ENTRY[labels.dtype], grid_for(flags.numel()), (BLOCK, 1, 1),
                      (src, flags, np.int32(h), np.int32(w)))
    return flags
