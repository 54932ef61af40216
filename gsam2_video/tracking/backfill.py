"""Offline back-fill: hold the last few frames so a track born at a keyframe can start where it really did.

A detector only runs every K frames, so an object that walks in at frame t-7 is first seen at keyframe t.
In offline mode results leave with a lag of up to K frames; when a track is born, the propagator runs it
backwards through the frames still held here and those frames gain its mask. Memory is bounded by the lag:
each held frame keeps its features (for the backwards pass) and one label map (masks are already
non-overlapping), never per-object logits.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..transfer import HostFrame


@dataclass
class PendingFrame:
    """A committed frame waiting for its lag to expire."""

    index: int
    timestamp: float
    image: np.ndarray | None
    features: Any  # the session's FrameFeatures, kept for backwards passes
    host: HostFrame  # the frame's label map and per-track arrays, as copied from the device
    scores: dict[int, tuple[int, float]] = field(default_factory=dict)  # track -> (class id, score) at commit
    is_keyframe: bool = False
    overlay_ranking: tuple[int, ...] = ()  # ids the GPU overlay drew, lowest score first (outline order)


class BackfillBuffer:
    """FIFO of pending frames; ``lag`` frames stay held, older ones are released in order."""

    def __init__(self, lag: int) -> None:
        if lag < 0:
            raise ValueError("lag must be >= 0")
        self.lag = lag
        self._frames: deque[PendingFrame] = deque()

    def __len__(self) -> int:
        return len(self._frames)

    def push(self, frame: PendingFrame) -> Iterator[PendingFrame]:
        """Add the newest frame and yield every frame whose lag has expired, oldest first."""
        self._frames.append(frame)
        while len(self._frames) > self.lag:
            yield self._frames.popleft()

    def drain(self) -> Iterator[PendingFrame]:
        while self._frames:
            yield self._frames.popleft()

    def newest_first(self, exclude_newest: int = 0) -> list[PendingFrame]:
        """Held frames from newest to oldest, skipping the ``exclude_newest`` most recent ones."""
        frames = list(reversed(self._frames))
        return frames[exclude_newest:]

    def paint(self, frame: PendingFrame, track_id: int, mask: np.ndarray, meta: tuple[int, float]) -> int:
        """Give ``track_id`` the pixels of ``mask`` (H x W bool) that no other track holds; returns pixels gained.

        Tracks that already own a pixel keep it: they were followed through this frame with more evidence
        than a backwards pass from a later birth.
        """
        host = frame.host
        free = mask & (host.labels == 0)
        gained = int(free.sum())
        if not gained:
            return 0
        if track_id > np.iinfo(host.labels.dtype).max:
            host.labels = host.labels.astype(np.uint16 if track_id <= 65535 else np.int32)
        host.labels[free] = track_id
        host.invalidate_derived()  # the overlay and RLE changes describe the map before this paint
        ys, xs = np.flatnonzero(free.any(axis=1)), np.flatnonzero(free.any(axis=0))
        box = np.array([xs[0], ys[0], xs[-1] + 1, ys[-1] + 1], np.float32)
        if track_id in host.obj_ids:
            k = host.obj_ids.index(track_id)
            old = host.boxes[k]
            if host.areas[k] > 0:
                box = np.concatenate([np.minimum(old[:2], box[:2]), np.maximum(old[2:], box[2:])])
            host.boxes[k] = box
            host.areas[k] += gained
        else:
            host.obj_ids.append(int(track_id))
            host.boxes = np.concatenate([host.boxes, box[None]])
            host.areas = np.append(host.areas, np.int64(gained))
            host.scores = np.append(host.scores, np.float32(0.0))
        frame.scores[track_id] = meta
        return gained
