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
    """H x W x 3 uint8 RGB with the result drawn on it, or None when the result carries no image."""
    cached = getattr(view, _ATTR, None)
    if cached is None and view.result.image is not None:
        cached = annotate(view.result.image, view.result)
        setattr(view, _ATTR, cached)
    return cached
