"""``run.json``: what produced the outputs next to it, so a result can be traced and reproduced.

The pipeline assembles the report (source description, settings, frames read / written / dropped, wall time
per stage); this module only adds the software versions when the report has none and writes the file
atomically. Values numpy, dataclasses or paths produce are converted to plain JSON.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import platform
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np

from .atomic import write_text_atomic

#: distributions whose versions describe a run (looked up without importing them)
VERSIONED_PACKAGES = ("gsam2-video", "torch", "transformers", "numpy", "av", "opencv-python-headless",
                      "pycocotools", "pillow", "decord", "cupy-cuda12x", "supervision", "sam2")


def collect_versions() -> dict[str, str | None]:
    """Python, platform and installed package versions (None for packages that are not installed)."""
    out: dict[str, str | None] = {"python": sys.version.split()[0], "platform": platform.platform()}
    for name in VERSIONED_PACKAGES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def to_jsonable(value: Any) -> Any:
    """Plain-JSON form of a report value (numpy scalars/arrays, dataclasses, paths, sets, non-finite floats)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return to_jsonable(dataclasses.asdict(value))
    if hasattr(value, "to_json") and callable(value.to_json):
        return to_jsonable(value.to_json())
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist())
    if isinstance(value, np.generic):
        return to_jsonable(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (os.PathLike,)):
        return os.fspath(value)
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def write_run_json(path: str | os.PathLike[str], report: dict[str, Any]) -> Path:
    """Write ``report`` (plus ``versions`` if absent) to ``path`` atomically; returns the path."""
    doc = dict(report)
    doc.setdefault("versions", collect_versions())
    return write_text_atomic(path, json.dumps(to_jsonable(doc), indent=2, allow_nan=False) + "\n")
