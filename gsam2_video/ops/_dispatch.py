"""Decide per call whether an op runs its CuPy kernel or its torch reference.

The kernel path is taken only when every tensor lives on a CUDA device, CuPy imports, and the user has not
set ``GSAM2_FORCE_TORCH=1``. Keeping the decision in one function means every op falls back the same way
and the reference stays the single oracle for CPU runs and tests.
"""

from __future__ import annotations

import os
from importlib.util import find_spec

import torch

FORCE_TORCH_ENV = "GSAM2_FORCE_TORCH"


def force_torch() -> bool:
    """True when the environment asks for the torch reference path everywhere."""
    return os.environ.get(FORCE_TORCH_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


def cupy_available() -> bool:
    """True when CuPy can be imported (it imports even without a GPU)."""
    return find_spec("cupy") is not None


def use_kernel(*tensors: torch.Tensor) -> bool:
    """Whether the CUDA kernel should handle these tensors."""
    if not tensors or force_torch():
        return False
    if not all(isinstance(t, torch.Tensor) and t.is_cuda for t in tensors):
        return False
    return cupy_available()
