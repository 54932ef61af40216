"""CuPy/NVRTC kernels for the hot paths, loaded at run time from the ``cuda/`` folder
(installed as package data ``gsam2_video._cuda``; no build step).

The ops in ``gsam2_video.ops`` call into here for CUDA tensors; this package holds the loader (compile
options, caches), the runners (CuPy on torch's stream, host emulation for CPU verification) and one
launcher per kernel. Names load lazily so importing it never needs CuPy.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_LAZY = {
    "patch_grounding_dino": "gsam2_video.kernels.grounding_dino",
    "KernelDeformableAttention": "gsam2_video.kernels.grounding_dino",
    "compile_ptx": "gsam2_video.kernels.compile",
    "nvrtc_options": "gsam2_video.kernels.compile",
    "build_emulation_library": "gsam2_video.kernels.runtime",
    "EmulationRunner": "gsam2_video.kernels.runtime",
    "CupyRunner": "gsam2_video.kernels.runtime",
    "kernels_available": "gsam2_video.kernels.status",
}

__all__ = [
    "CupyRunner", "EmulationRunner", "KernelDeformableAttention", "build_emulation_library", "compile_ptx",
    "kernels_available", "nvrtc_options", "patch_grounding_dino",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'gsam2_video.kernels' has no attribute {name!r}")
