"""Whether the kernel path can run here, with the reason when it cannot (for logs and ``--info`` output)."""

from __future__ import annotations

import torch

from ..ops._dispatch import FORCE_TORCH_ENV, cupy_available, force_torch


def kernels_available() -> tuple[bool, str]:
    """(True, "") when CUDA ops will use the kernels, else (False, reason)."""
    if force_torch():
        return False, f"{FORCE_TORCH_ENV} is set: torch reference ops are forced"
    if not torch.cuda.is_available():
        return False, "no CUDA device: torch reference ops run on CPU"
    if not cupy_available():
        return False, "CuPy is not installed (pip install 'gsam2-video[cuda]'): torch reference ops run"
    return True, ""
