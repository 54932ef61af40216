"""Where the kernel sources live and how they are turned into one self-contained NVRTC program.

The ``.cu`` files live in the repository's top-level ``cuda/`` folder, the only copy. The build configuration
installs that folder as the data package ``gsam2_video._cuda`` (``pyproject.toml`` maps the name to
``cuda/``; ``setup.py`` lists it): a wheel holds ``gsam2_video/_cuda/*.cu``, an editable install maps the
name back to the checkout's ``cuda/``. Both are found through ``importlib.resources``.

One exception, checked first: when the imported ``gsam2_video`` is a source checkout (its parent has
``cuda/`` with our sources), that folder is used. A checkout on ``PYTHONPATH`` has no installed
``gsam2_video._cuda``, and if another checkout is installed editable in the same environment, its mapping
would otherwise hand this checkout the other one's kernels.

Local ``#include "x.cuh"`` lines are inlined here, so the text handed to NVRTC (and hashed by CuPy's on-disk
compile cache) covers the headers too: editing a header recompiles.
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources
from pathlib import Path

from ..errors import ModelError

DATA_PACKAGE = "gsam2_video._cuda"
EMULATION_HEADER = "host_emulation.h"
_MARKER = "gsam2_common.cuh"  # a file only our kernel folder has (site-packages may hold other "cuda" dirs)


def installed_cuda_dir() -> Path | None:
    """The kernel folder of the installed data package (wheel or editable install), or None."""
    try:
        marker = resources.files(DATA_PACKAGE) / _MARKER
    except ModuleNotFoundError:
        return None
    return Path(str(marker)).parent if marker.is_file() else None


@cache
def cuda_dir() -> Path:
    """The folder the kernel sources are read from (see the module docstring for the order).

    Resolved on first use, not at import, so a broken installation fails the kernel call with one line
    instead of every import of the package.
    """
    checkout = Path(__file__).resolve().parents[2] / "cuda"
    if (checkout / _MARKER).is_file():
        return checkout
    installed = installed_cuda_dir()
    if installed is None:
        raise ModelError(f"CUDA kernel sources not found: no {DATA_PACKAGE} package data and no {checkout} "
                         "(broken installation? reinstall gsam2-video)")
    return installed


# Kernel entry points per source file (all ``extern "C" __global__``).
KERNELS: dict[str, tuple[str, ...]] = {
    "msda.cu": tuple(f"msda_forward_{t}_v{v}" for t, vs in (("f32", (1, 2, 4)), ("f16", (1, 2, 4, 8)),
                                                            ("bf16", (1, 2, 4, 8))) for v in vs),
    "connected_components.cu": ("ccl_init", "ccl_merge", "ccl_compress", "ccl_count", "ccl_finalize"),
    "mask_iou.cu": ("iou_pack_bits", "iou_row_popcount", "iou_pair_intersections"),
    "rle.cu": ("rle_label_changes_u8", "rle_label_changes_u16", "rle_label_changes_i32"),
    "preprocess.cu": ("pp_coeffs", "pp_resample_horizontal", "pp_resample_vertical", "pp_normalize"),
}

_INCLUDE = re.compile(r'^\s*#include\s+"([^"]+)"\s*$', re.MULTILINE)


def source_path(name: str) -> Path:
    """Path of a kernel source shipped with the package; ModelError if it is missing."""
    folder = cuda_dir()
    path = folder / name
    if not path.is_file():
        raise ModelError(f"CUDA kernel source {name} not found in {folder} (broken installation?)")
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
