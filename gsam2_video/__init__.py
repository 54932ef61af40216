"""gsam2-video: track text-specified objects through video.

Heavy modules (torch, transformers) load on first use so ``import gsam2_video`` stays cheap.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from .config import (
    AssociationConfig,
    DetectorConfig,
    FrameExtras,
    KeyframeConfig,
    PropagatorConfig,
    TrackerConfig,
)
from .errors import Gsam2Error
from .types import Detections, Frame, FrameResult, VideoInfo

__version__ = "0.1.0"

_LAZY = {
    "Tracker": "gsam2_video.pipeline",
    "open_source": "gsam2_video.sources",
}

__all__ = [
    "AssociationConfig",
    "Detections",
    "DetectorConfig",
    "Frame",
    "FrameExtras",
    "FrameResult",
    "Gsam2Error",
    "KeyframeConfig",
    "PropagatorConfig",
    "Tracker",
    "TrackerConfig",
    "VideoInfo",
    "__version__",
    "open_source",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'gsam2_video' has no attribute {name!r}")
