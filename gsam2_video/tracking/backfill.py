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
import torch


@dataclass
class PendingFrame:
    """A committed frame waiting for its lag to expire."""

    index: int
    timestamp: float
    image: np.ndarray | None
    features: Any  # the propagator's FrameFeatures, kept for backwards passes
    labels: torch.Tensor  # H x W int32 track id per pixel (0 = background), CPU
    scores: dict[int, tuple[int, float]] = field(default_factory=dict)  # track -> (class id, score) at commit
    is_keyframe: bool = False


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

    def paint(self, frame: PendingFrame, track_id: int, mask: torch.Tensor, meta: tuple[int, float]) -> int:
        """Give ``track_id`` the pixels of ``mask`` that no other track holds; returns pixels gained.

        Tracks that already own a pixel keep it: they were followed through this frame with more evidence
        than a backwards pass from a later birth.
        """
        free = mask.to(frame.labels.device) & (frame.labels == 0)
        gained = int(free.sum())
        if gained:
            frame.labels[free] = track_id
            frame.scores[track_id] = meta
        return gained
