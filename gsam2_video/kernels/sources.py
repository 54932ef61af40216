"""Where the kernel sources live and how they are turned into one self-contained NVRTC program.

The ``.cu`` files ship inside the package (``gsam2_video/cuda/``, declared as package data) so that an
editable install and a wheel find them the same way, next to this package; a symlink from the repository
root would not survive wheel building. Local ``#include "x.cuh"`` lines are inlined here, so the text handed
to NVRTC (and hashed by CuPy's on-disk compile cache) covers the headers too: editing a header recompiles.
"""

from __future__ import annotations

import re
from pathlib import Path

from ..errors import ModelError

CUDA_DIR = Path(__file__).resolve().parent.parent / "cuda"
EMULATION_HEADER = "host_emulation.h"

# Kernel entry points per source file (all ``extern "C" __global__``).
KERNELS: dict[str, tuple[str, ...]] = {
    "msda.cu": tuple(f"msda_forward_{t}_v{v}" for t, vs in (("f32", (1, 2, 4)), ("f16", (1, 2, 4, 8)),
                                                            ("bf16", (1, 2, 4, 8))) for v in vs),
    "connected_components.cu": ("ccl_init", "ccl_merge", "ccl_compress", "ccl_count", "ccl_finalize"),
    "mask_iou.cu": ("iou_pack_bits", "iou_row_popcount", "iou_pair_intersections"),
    "rle.cu": ("rle_run_starts",),
    "preprocess.cu": ("preprocess_resize_normalize",),
}

_INCLUDE = re.compile(r'^\s*#include\s+"([^"]+)"\s*$', re.MULTILINE)


def source_path(name: str) -> Path:
    """Path of a kernel source shipped with the package; ModelError if it is missing."""
    path = CUDA_DIR / name
    if not path.is_file():
        raise ModelError(f"CUDA kernel source {name} not found in {CUDA_DIR} (broken installation?)")
    return path


def expanded_source(name: str) -> str:
    """Source text with local includes inlined once each (``#pragma once`` semantics)."""
    seen: set[str] = set()

    def expand(file: str) -> str:
        if file in seen:
            return ""
        seen.add(file)
        text = source_path(file).read_text()
        return _INCLUDE.sub(lambda m: expand(m.group(1)), text)

    return expand(name)
