"""Plain data carried between stages: frames in, detections in the middle, one FrameResult per frame out.

Everything here is numpy so sinks and user code never need torch; the model layer converts at its edge.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Frame:
    """One decoded frame. ``index`` is the source's frame number (after ``start``, before ``stride``)."""

    index: int
    timestamp: float
    image: np.ndarray  # H x W x 3, RGB, uint8, C-contiguous

    @property
    def height(self) -> int:
        return int(self.image.shape[0])

    @property
    def width(self) -> int:
        return int(self.image.shape[1])


@dataclass(frozen=True)
class VideoInfo:
    """What a source knows about itself before decoding; unknown fields are None (live streams)."""

    name: str
    uri: str
    width: int | None = None
    height: int | None = None
    fps: float | None = None
    frame_count: int | None = None
    is_live: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "uri": self.uri,
            "width": self.width,
            "height": self.height,
            "fps": self.fps,
            "frame_count": self.frame_count,
            "is_live": self.is_live,
        }


@dataclass
class Detections:
    """Detector output for one frame, in pixel coordinates of that frame.

    ``class_ids`` index the prompt's class names (position in the prompt); ``labels`` are those names.
    """

    boxes: np.ndarray  # N x 4 float32, xyxy
    scores: np.ndarray  # N float32
    class_ids: np.ndarray  # N int64
    labels: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.boxes = np.asarray(self.boxes, dtype=np.float32).reshape(-1, 4)
        self.scores = np.asarray(self.scores, dtype=np.float32).reshape(-1)
        self.class_ids = np.asarray(self.class_ids, dtype=np.int64).reshape(-1)
        n = len(self.boxes)
        if not (len(self.scores) == len(self.class_ids) == n and len(self.labels) in (0, n)):
            raise ValueError("Detections fields disagree in length")

    def __len__(self) -> int:
        return len(self.boxes)

    @classmethod
    def empty(cls) -> Detections:
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64), [])

    def select(self, keep: np.ndarray) -> Detections:
        keep = np.asarray(keep)
        idx = np.flatnonzero(keep) if keep.dtype == bool else keep.astype(np.int64)
        return Detections(self.boxes[idx], self.scores[idx], self.class_ids[idx],
                          [self.labels[i] for i in idx] if self.labels else [])


class FrameResult:
    """Everything known about one decoded frame after tracking.

    The pipeline hands over the frame's label map (``labels``: track id per pixel, 0 = background, uint8 or
    uint16 above id 255) with small per-track arrays; per-track ``masks`` are derived from it on first
    access, so a consumer that only needs the label map (PNG masks, drawing, RLE) never builds N x H x W
    masks. Built from ``masks`` instead (user code, tests), the label map is derived on first access.

    Two optional extras come from the pipeline when it builds them on the GPU (``Tracker.track(...,
    extras=FrameExtras(...))``): ``overlay``, the frame with every track's mask blended in and outlined in
    :func:`gsam2_video.drawing.annotate`'s default look (no boxes or captions; ``annotate`` then only adds
    those), and ``label_changes``, the label map's column-major changes, from which writers encode COCO RLE
    without scanning the frame. Both describe ``labels`` exactly; None when not built.

    Invariants (kept by the pipeline, relied on by sinks): masks do not overlap, track ids are >= 1 and unique
    within the frame, arrays share their first dimension.
    """

    def __init__(self, frame_index: int, timestamp: float, height: int, width: int, track_ids: Any,
                 masks: np.ndarray | None = None, boxes: Any = None, scores: Any = None, class_ids: Any = None,
                 class_names: list[str] | None = None, image: np.ndarray | None = None,
                 is_keyframe: bool = False, *, labels: np.ndarray | None = None,
                 areas: np.ndarray | None = None, overlay: np.ndarray | None = None,
                 label_changes: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None) -> None:
        self.frame_index = frame_index
        self.timestamp = timestamp
        self.height = height
        self.width = width
        self.image = image  # the RGB frame, kept only when a sink needs pixels
        self.is_keyframe = is_keyframe
        self.track_ids = np.asarray(track_ids, dtype=np.int64).reshape(-1)
        n = len(self.track_ids)
        if (masks is None) == (labels is None):
            raise ValueError("FrameResult needs exactly one of masks= or labels=")
        self._masks = None if masks is None else np.asarray(masks, dtype=bool).reshape(n, height, width)
        if labels is not None and tuple(labels.shape) != (height, width):
            raise ValueError(f"FrameResult labels must be {height}x{width}, got {tuple(labels.shape)}")
        self._labels = labels
        if overlay is not None and tuple(overlay.shape) != (height, width, 3):
            raise ValueError(f"FrameResult overlay must be {height}x{width}x3, got {tuple(overlay.shape)}")
        if (overlay is not None or label_changes is not None) and labels is None:
            raise ValueError("FrameResult overlay= and label_changes= describe a label map: pass labels= too")
        self.overlay = overlay  # H x W x 3 uint8 RGB, masks drawn (see the class docstring) or None
        self.label_changes = label_changes  # ops.rle.unpack_changes of ``labels`` or None
        self._areas = None if areas is None else np.asarray(areas, dtype=np.int64).reshape(n)
        self.boxes = np.asarray(boxes if boxes is not None else np.zeros((n, 4)), dtype=np.float32).reshape(n, 4)
        self.scores = np.asarray(scores if scores is not None else np.zeros(n), dtype=np.float32).reshape(n)
        self.class_ids = np.asarray(class_ids if class_ids is not None else np.zeros(n),
                                    dtype=np.int64).reshape(n)
        self.class_names = list(class_names) if class_names is not None else []
        if len(self.class_names) != n:
            raise ValueError("FrameResult.class_names must have one entry per track")

    def __len__(self) -> int:
        return len(self.track_ids)

    def __repr__(self) -> str:
        return (f"FrameResult(frame_index={self.frame_index}, timestamp={self.timestamp}, "
                f"size={self.width}x{self.height}, track_ids={self.track_ids.tolist()}, "
                f"class_names={self.class_names}, is_keyframe={self.is_keyframe})")

    @property
    def masks(self) -> np.ndarray:
        """N x H x W bool, one per track (derived from the label map on first access, then kept)."""
        if self._masks is None:
            assert self._labels is not None
            self._masks = self._labels[None] == self.track_ids.astype(self._labels.dtype)[:, None, None]
        return self._masks

    @property
    def labels(self) -> np.ndarray:
        """H x W track id per pixel, 0 = background (shared, do not modify; ``label_map()`` gives a copy)."""
        if self._labels is None:
            top = int(self.track_ids.max(initial=0))
            dtype = np.uint8 if top <= 255 else np.uint16 if top <= 65535 else np.int32
            self._labels = self.label_map(dtype)
        return self._labels

    @property
    def areas(self) -> np.ndarray:
        """N int64 pixel counts of each track's mask."""
        if self._areas is None:
            self._areas = self.masks.reshape(len(self), -1).sum(axis=1).astype(np.int64)
        return self._areas

    @classmethod
    def empty(cls, frame_index: int, timestamp: float, height: int, width: int,
              image: np.ndarray | None = None) -> FrameResult:
        return cls(frame_index, timestamp, height, width, np.zeros(0, np.int64),
                   np.zeros((0, height, width), bool), np.zeros((0, 4), np.float32),
                   np.zeros(0, np.float32), np.zeros(0, np.int64), [], image)

    def label_map(self, dtype: np.dtype | type = np.int32) -> np.ndarray:
        """H x W array (a new one): track id per pixel, 0 for background (masks never overlap)."""
        if self._labels is not None:
            return self._labels.astype(dtype)
        out = np.zeros((self.height, self.width), dtype=dtype)
        for tid, mask in zip(self.track_ids, self.masks):
            out[mask] = tid
        return out

    def to_supervision(self) -> Any:
        """The frame as ``supervision.Detections`` (supervision is optional, imported only here)."""
        try:
            import supervision as sv
        except ImportError as exc:  # pragma: no cover - exercised only without supervision
            raise ImportError("to_supervision() needs supervision: pip install supervision") from exc
        return sv.Detections(
            xyxy=self.boxes.astype(np.float32),
            mask=self.masks,
            confidence=self.scores,
            class_id=self.class_ids,
            tracker_id=self.track_ids,
            data={"class_name": np.array(self.class_names, dtype=object).astype(str)},
        )
