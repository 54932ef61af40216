"""The Sink interface every output writer implements, and the per-frame view all writers share.

Why one shared view: the formats must agree with each other. Every mask writer (DAVIS PNGs, YouTube-VIS RLE,
MOTS) and the box writer take a frame's tracks from :func:`visible_tracks`, so they all apply the same rules:

* masks are made non-overlapping: a pixel claimed by several tracks goes to the highest score (ties: the
  lower track id), the invariant the pipeline already promises, enforced again here so a file can never
  break a reader such as TrackEval that rejects overlaps;
* a track is *visible* in a frame iff its (non-overlapping) mask has at least one pixel; invisible tracks are
  written nowhere for that frame (null in tracks.json, no line in mots.txt / mot.txt, 0 in the PNG);
* a box is the tight box of the written mask, ``x, y, w, h`` in 0-based pixel units (COCO convention:
  ``w = last column - first column + 1``), so a box never disagrees with its mask.

Category ids in files are 1-based (``class_id + 1``), as in COCO, YouTube-VIS and MOTS, where 0 means
background.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod

import numpy as np

from ..errors import OutputError
from ..labelmap import resolved_label_map, track_boxes
from ..types import FrameResult, VideoInfo


class Sink(ABC):
    """One output format. Called from a single thread: open, write once per frame in order, close or abort."""

    #: short name used by ``make_sinks`` and in messages ("video", "masks", ...)
    kind: str = ""
    #: True when :meth:`write` needs ``FrameResult.image`` (only the annotated video)
    needs_image: bool = False

    @abstractmethod
    def open(self, info: VideoInfo, categories: list[str]) -> None:
        """Start a run; ``categories[i]`` is the name of class id ``i`` (position in the prompt)."""

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if cls.write is Sink.write and cls.write_view is Sink.write_view:
            raise TypeError(f"{cls.__name__} must implement write() or write_view()")

    def write(self, result: FrameResult) -> None:
        """Add one frame's result."""
        self.write_view(FrameView(result))

    def write_view(self, view: FrameView) -> None:
        """Add one frame given as a shared :class:`FrameView` (what AsyncWriter calls); defaults to write()."""
        self.write(view.result)

    @abstractmethod
    def close(self) -> None:
        """Finish: move the complete output into its final name (atomic rename)."""

    @abstractmethod
    def abort(self) -> None:
        """Drop partial output; afterwards no file with a final name exists from this run."""

    @property
    @abstractmethod
    def outputs(self) -> list[str]:
        """Final paths this sink writes (existing only after a successful close)."""


class VisibleTracks:
    """The tracks of one frame that have at least one pixel after overlap resolution.

    ``masks`` (K x H x W bool, pairwise disjoint, none empty) are made from the label map only when asked
    for: the writers read the label map and the boxes, which cost one pass over the frame instead of K.
    """

    def __init__(self, track_ids: np.ndarray, masks: np.ndarray | None, boxes_xywh: np.ndarray,
                 areas: np.ndarray, scores: np.ndarray, class_ids: np.ndarray,
                 labels: np.ndarray | None = None) -> None:
        if masks is None and labels is None:
            raise ValueError("VisibleTracks needs masks or a label map")
        self.track_ids = track_ids  # K int64
        self.boxes_xywh = boxes_xywh  # K x 4 int64, tight boxes of the masks
        self.areas = areas  # K int64 pixel counts
        self.scores = scores  # K float32
        self.class_ids = class_ids  # K int64 (0-based, position in the prompt)
        self._masks = masks
        self._labels = labels
        self._lock = threading.Lock()  # sinks on parallel lanes may ask at the same time: derive once

    @property
    def masks(self) -> np.ndarray:
        """K x H x W bool masks (derived from the label map on first use)."""
        with self._lock:
            if self._masks is None:
                assert self._labels is not None
                self._masks = self._labels[None] == self.track_ids.astype(self._labels.dtype)[:, None, None]
            return self._masks

    def __len__(self) -> int:
        return len(self.track_ids)


def _overlaps(masks: np.ndarray, counts: np.ndarray) -> bool:
    """True when some pixel is in two masks: the union is smaller than the sum of the areas."""
    if len(masks) < 2:
        return False
    return int(np.count_nonzero(np.logical_or.reduce(masks, axis=0))) != int(counts.sum())


def _areas(masks: np.ndarray) -> np.ndarray:
    # one whole-array count per mask is several times faster than count_nonzero(..., axis=1)
    return np.array([np.count_nonzero(m) for m in masks], dtype=np.int64)


def exclusive_masks(masks: np.ndarray, scores: np.ndarray, track_ids: np.ndarray) -> np.ndarray:
    """Masks with every pixel owned by at most one track: highest score first, ties to the lower id."""
    masks = np.asarray(masks, dtype=bool)
    if not _overlaps(masks, _areas(masks)):
        return masks
    order = np.lexsort((track_ids, -scores.astype(np.float64)))
    out = np.zeros_like(masks)
    taken = np.zeros(masks.shape[1:], dtype=bool)
    for i in order:
        out[i] = masks[i] & ~taken
        taken |= out[i]
    return out


def tight_boxes_xywh(masks: np.ndarray) -> np.ndarray:
    """K x 4 int64 ``x, y, w, h`` of non-empty masks."""
    boxes = np.zeros((len(masks), 4), dtype=np.int64)
    for k, m in enumerate(masks):
        rows = np.flatnonzero(m.any(axis=1))
        cols = np.flatnonzero(m[rows[0]:rows[-1] + 1].any(axis=0))
        boxes[k] = (cols[0], rows[0], cols[-1] - cols[0] + 1, rows[-1] - rows[0] + 1)
    return boxes


def check_result(result: FrameResult, kind: str) -> None:
    """Reject results the formats cannot represent, with one line naming the frame and the problem."""
    if len(result) and int(result.track_ids.min()) < 1:
        raise OutputError(f"{kind} output: frame {result.frame_index} has track id "
                          f"{int(result.track_ids.min())}; track ids must be >= 1 (0 is background)")
    if len(np.unique(result.track_ids)) != len(result):
        raise OutputError(f"{kind} output: frame {result.frame_index} repeats a track id")
    if len(result) and int(result.class_ids.min()) < 0:
        raise OutputError(f"{kind} output: frame {result.frame_index} has negative class id "
                          f"{int(result.class_ids.min())}")


def visible_tracks(result: FrameResult, kind: str = "sink") -> VisibleTracks:
    """The frame's non-overlapping, non-empty tracks with their tight boxes (see the module docstring)."""
    check_result(result, kind)
    masks = result.masks
    areas = _areas(masks)
    if _overlaps(masks, areas):
        masks = exclusive_masks(masks, result.scores, result.track_ids)
        areas = _areas(masks)
    keep = areas > 0
    if not keep.all():
        masks = masks[keep]
    return VisibleTracks(
        track_ids=result.track_ids[keep],
        masks=masks,
        boxes_xywh=tight_boxes_xywh(masks),
        areas=areas[keep],
        scores=result.scores[keep],
        class_ids=result.class_ids[keep],
    )


def visible_tracks_from_labels(result: FrameResult, labels: np.ndarray, kind: str = "sink",
                               boxes_areas: tuple[np.ndarray, np.ndarray] | None = None) -> VisibleTracks:
    """:func:`visible_tracks` read off ``labels``, the result's score-resolved label map
    (:func:`gsam2_video.labelmap.resolved_label_map`): the same tracks, boxes and areas, at the cost of one
    pass over the frame plus each track's box instead of several passes per track. ``boxes_areas`` are
    :func:`~gsam2_video.labelmap.track_boxes` of ``labels`` when the caller has them already."""
    check_result(result, kind)
    boxes, areas = boxes_areas if boxes_areas is not None else track_boxes(labels, result.track_ids,
                                                                            result.boxes)
    keep = areas > 0
    return VisibleTracks(
        track_ids=result.track_ids[keep],
        masks=None,
        boxes_xywh=boxes[keep],
        areas=areas[keep],
        scores=result.scores[keep],
        class_ids=result.class_ids[keep],
        labels=labels,
    )


class FrameView:
    """One result plus what several sinks derive from it, each computed once on first use.

    The AsyncWriter builds one view per frame and hands it to every sink, so the label map, overlap
    resolution and RLE encoding are not repeated per format. Sinks may run on parallel threads: each
    derivation is computed under a lock by the first sink that asks, the others wait for it.
    """

    def __init__(self, result: FrameResult) -> None:
        self.result = result
        self._lock = threading.RLock()
        self._labels: np.ndarray | None = None
        self._boxes: tuple[np.ndarray, np.ndarray] | None = None
        self._tracks: VisibleTracks | None = None
        self._rles: list[str] | None = None

    def label_map(self, kind: str = "sink") -> np.ndarray:
        """H x W label map of the visible tracks (overlaps resolved by score), uint8 / uint16 / int32."""
        with self._lock:
            if self._labels is None:
                check_result(self.result, kind)  # a bad id is reported, never painted
                self._labels = resolved_label_map(self.result)
            return self._labels

    def boxes(self, kind: str = "sink") -> tuple[np.ndarray, np.ndarray]:
        """``(boxes_xywh, areas)`` of every track of the result, in its order, read off :meth:`label_map`
        (a track without pixels has area 0 and a zero box)."""
        with self._lock:
            if self._boxes is None:
                self._boxes = track_boxes(self.label_map(kind), self.result.track_ids, self.result.boxes)
            return self._boxes

    def tracks(self, kind: str = "sink") -> VisibleTracks:
        """:func:`visible_tracks` of the result (errors name ``kind``, the first sink that asked)."""
        with self._lock:
            if self._tracks is None:
                boxes_areas = self.boxes(kind)
                self._tracks = visible_tracks_from_labels(self.result, self.label_map(kind), kind, boxes_areas)
            return self._tracks

    def rles(self, kind: str = "sink") -> list[str]:
        """Compressed COCO RLE counts of :meth:`tracks`' masks, in the same order."""
        with self._lock:
            if self._rles is None:
                from . import rle

                t = self.tracks(kind)
                changes = self.result.label_changes
                if changes is not None:  # the device scanned the label map: runs come from its changes
                    self._rles = rle.encode_from_changes(changes, t.track_ids, self.result.height,
                                                         self.result.width)
                else:
                    self._rles = rle.encode_label_strips(self.label_map(), t.track_ids, t.boxes_xywh)
            return self._rles


def category_id(class_id: int, categories: list[str], kind: str) -> int:
    """1-based category id of a 0-based class id, checked against the run's categories."""
    if not 0 <= class_id < len(categories):
        raise OutputError(f"{kind} output: class id {class_id} is not one of the {len(categories)} "
                          f"categories given at open ({', '.join(categories) or 'none'})")
    return class_id + 1
