"""FrameResults on real clip frames with N object-like shapes (no test functions; imported by the writer tests
and benchmarks/writers.py).

Frames come from the shared clips decoded with PyAV and resized to the requested size. Each object is a
blob whose radius wobbles with the angle (so outlines are curved and irregular, not ellipses), moving a little
per frame; blobs are painted into one label map in order, a later one covering an earlier one, so masks
never overlap but often touch, as SAM 2's composed masks do. Scores are fixed per object. Everything is
seeded: the same arguments give the same results.
"""

from __future__ import annotations

from pathlib import Path

import av
import cv2
import numpy as np

from gsam2_video.types import FrameResult

CLASSES = ["person", "bicycle", "car"]


def clip_frames(path: Path, count: int, size: tuple[int, int] | None = None) -> list[np.ndarray]:
    """The first ``count`` frames of ``path`` as RGB uint8, resized to ``size`` = (height, width) if given."""
    frames = []
    with av.open(str(path)) as container:
        for frame in container.decode(container.streams.video[0]):
            rgb = frame.to_ndarray(format="rgb24")
            if size is not None and rgb.shape[:2] != size:
                rgb = cv2.resize(rgb, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)
            frames.append(np.ascontiguousarray(rgb))
            if len(frames) == count:
                break
    return frames


def blob_labels(height: int, width: int, objects: int, frame: int, seed: int = 0,
                first_id: int = 1) -> np.ndarray:
    """H x W int64 label map with ``objects`` wobbly blobs (ids ``first_id``...); some may be fully covered."""
    rng = np.random.default_rng(seed)
    labels = np.zeros((height, width), np.int64)
    short = min(height, width)
    angles = np.linspace(0, 2 * np.pi, 48, endpoint=False)
    for k in range(objects):
        cy, cx = rng.uniform(0.15, 0.85) * height, rng.uniform(0.1, 0.9) * width
        vy, vx = rng.uniform(-2, 2, size=2) * short / 360
        radius = rng.uniform(0.04, 0.16) * short
        wobble = rng.uniform(0.1, 0.35, size=3)
        phase = rng.uniform(0, 2 * np.pi, size=3)
        r = radius * (1 + sum(wobble[j] * np.sin((j + 2) * angles + phase[j] + 0.05 * frame) for j in range(3)))
        pts = np.stack([cx + vx * frame + r * np.cos(angles), cy + vy * frame + r * np.sin(angles)], -1)
        poly = np.zeros((height, width), np.uint8)
        cv2.fillPoly(poly, [np.rint(pts).astype(np.int32)], 1)
        labels[poly.astype(bool)] = first_id + k
    return labels


def tight_xyxy(mask: np.ndarray) -> list[float]:
    """Tight box of a mask as x1, y1, x2, y2 with exclusive x2, y2 (zeros for an empty mask)."""
    if not mask.any():
        return [0.0, 0.0, 0.0, 0.0]
    ys, xs = np.nonzero(mask)
    return [float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)]


def clip_results(frames: list[np.ndarray], objects: int, seed: int = 0, first_id: int = 1,
                 start_index: int = 0) -> list[FrameResult]:
    """One FrameResult per frame with ``objects`` tracks (ids ``first_id``...), image attached."""
    rng = np.random.default_rng(seed + 1000)
    scores = rng.uniform(0.3, 0.99, size=objects).astype(np.float32)
    class_ids = rng.integers(0, len(CLASSES), size=objects)
    out = []
    for i, image in enumerate(frames):
        h, w = image.shape[:2]
        labels = blob_labels(h, w, objects, i, seed, first_id)
        ids = np.arange(first_id, first_id + objects)
        masks = labels[None] == ids[:, None, None]
        out.append(FrameResult(
            frame_index=start_index + i, timestamp=(start_index + i) / 25.0, height=h, width=w,
            track_ids=ids, masks=masks,
            boxes=np.array([tight_xyxy(m) for m in masks], np.float32).reshape(-1, 4),
            scores=scores, class_ids=class_ids, class_names=[CLASSES[c] for c in class_ids], image=image))
    return out
