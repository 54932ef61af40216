"""The annotated picture of a frame, drawn once however many live outputs show it.

Why: ``--stream-out`` and ``--preview`` both show the frame with its masks, boxes and captions; drawing is
the costly part at full resolution, so the first of them to ask draws it and caches it on the frame's
:class:`~gsam2_video.sinks.base.FrameView` (one view per frame, used by one writer thread).
"""

from __future__ import annotations

import numpy as np

from ..drawing import annotate
from ..sinks.base import FrameView

_ATTR = "_live_annotated"


def annotated_frame(view: FrameView) -> np.ndarray | None:
    """H x W x 3 uint8 RGB with the result drawn on it, or None when the result carries no image (nor an
    overlay the pipeline drew on the GPU)."""
    cached = getattr(view, _ATTR, None)
    result = view.result
    if cached is None and (result.image is not None or result.overlay is not None):
        cached = annotate(result.image, result, label_map=view.label_map(), boxes_xywh=view.boxes()[0])
        setattr(view, _ATTR, cached)
    return cached
