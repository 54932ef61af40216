"""Synthetic FrameResults for the sink tests (no test functions here; imported by tests/test_sinks*.py).

The scripted run covers what writers must get right: tracks appearing and leaving, an empty frame, a
track present with an empty mask (invisible), a track changing class (majority vote), an id above 255,
and odd frame sizes (the video pads them). Masks are cut from a label map, so they never overlap.
"""

from __future__ import annotations

import numpy as np

from gsam2_video.types import FrameResult, VideoInfo

H, W = 37, 50
CATEGORIES = ["person", "car", "dog"]

# frame -> list of (track id, class id, score, (cy, cx, ry, rx) ellipse or None for an empty mask)
SCRIPT: list[list[tuple[int, int, float, tuple[int, int, int, int] | None]]] = [
    [(1, 0, 0.90, (10, 10, 6, 8)), (2, 1, 0.80, (25, 35, 8, 10))],
    [(1, 0, 0.91, (11, 12, 6, 8)), (2, 1, 0.82, (25, 33, 8, 10)), (3, 2, 0.55, (30, 8, 5, 6))],
    [],
    [(2, 1, 0.70, (24, 31, 8, 10)), (3, 0, 0.60, (29, 9, 5, 6)), (300, 2, 0.95, (8, 40, 5, 7))],
    [(3, 2, 0.65, (28, 10, 5, 6)), (300, 2, 0.93, (9, 39, 5, 7)), (1, 0, 0.50, None)],
    [(300, 2, 0.90, (10, 38, 5, 7)), (4, 1, 0.40, (20, 20, 3, 3))],
]
TIMESTAMPS = [0.0, 0.04, 0.08, 0.2, 0.24, 0.31]  # variable frame rate on purpose


def ellipse(cy: int, cx: int, ry: int, rx: int, h: int = H, w: int = W) -> np.ndarray:
    yy, xx = np.mgrid[:h, :w]
    return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0


def tight_xyxy(mask: np.ndarray) -> list[float]:
    if not mask.any():
        return [0.0, 0.0, 0.0, 0.0]
    ys, xs = np.nonzero(mask)
    return [float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)]


def make_image(index: int, h: int = H, w: int = W) -> np.ndarray:
    """A smooth RGB gradient that changes per frame (smooth, so H.264 keeps it close to lossless)."""
    yy, xx = np.mgrid[:h, :w]
    img = np.stack([xx * 200 // w + index * 5, yy * 200 // h, np.full_like(xx, 60 + index * 10)], -1)
    return img.astype(np.uint8)


def make_result(index: int, entries, timestamp: float, with_image: bool = True, scale: int = 1) -> FrameResult:
    """One frame of ``entries``; ``scale`` multiplies the frame size and every shape (for realistic sizes)."""
    h, w = H * scale, W * scale
    labels = np.zeros((h, w), np.int64)
    for tid, _, _, shape in entries:  # later entries win where shapes touch: masks stay disjoint
        if shape is not None:
            labels[ellipse(*(v * scale for v in shape), h=h, w=w)] = tid
    masks = np.stack([labels == tid for tid, *_ in entries]) if entries else np.zeros((0, h, w), bool)
    return FrameResult(
        frame_index=index, timestamp=timestamp, height=h, width=w,
        track_ids=np.array([e[0] for e in entries], np.int64),
        masks=masks,
        boxes=np.array([tight_xyxy(m) for m in masks], np.float32).reshape(-1, 4),
        scores=np.array([e[2] for e in entries], np.float32),
        class_ids=np.array([e[1] for e in entries], np.int64),
        class_names=[CATEGORIES[e[1]] for e in entries],
        image=make_image(index, h, w) if with_image else None,
    )


def scripted_results(script=SCRIPT, timestamps=TIMESTAMPS, with_image: bool = True,
                     scale: int = 1) -> list[FrameResult]:
    return [make_result(i, e, t, with_image=with_image, scale=scale)
            for i, (e, t) in enumerate(zip(script, timestamps))]


def video_info(fps: float | None = 25.0, frames: int | None = len(SCRIPT)) -> VideoInfo:
    return VideoInfo(name="synthetic", uri="memory://synthetic", width=W, height=H, fps=fps, frame_count=frames)
