"""One video's labels as data: collected from FrameResults, filtered, stored as ``runs/<video>/objects.json``.

Why a record at all: the filters need the whole video (see :mod:`.filters`), and the set-wide files
(``meta.json``, ``instances.json``) are rebuilt from every finished video, including ones labelled by an
earlier, interrupted run. So each finished video leaves one deterministic file holding everything those need:
frame indices, size, and per object its category, mean score and per-frame compressed COCO RLE, box and area.
Only RLE strings are kept while tracking (never full masks), so memory grows with the masks' outlines, not
with H x W x frames.

The record carries no timestamps or timings (those go to ``run.json``), so the same video with the same
settings gives a byte-identical file on every run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import OutputError
from ..sinks.base import FrameView
from ..sinks.rle import decode_mask
from ..types import FrameResult
from .filters import DatasetObject, Filters, FrameEntry

RECORD_FORMAT = "gsam2-video/dataset-video/1"
SCORE_DECIMALS = 6


def frame_name(frame_index: int) -> str:
    """The file stem of a frame in Annotations/ and JPEGImages/: the source frame index, 5 digits."""
    return f"{frame_index:05d}"


@dataclass
class VideoRecord:
    """A finished, filtered video. ``objects[k].frames`` maps frame *position* (0..length-1) to its entry."""

    name: str
    width: int
    height: int
    frame_indices: list[int]
    objects: list[DatasetObject]
    settings: dict[str, Any] = field(default_factory=dict)
    filtered: dict[str, int] = field(default_factory=dict)

    @property
    def length(self) -> int:
        return len(self.frame_indices)

    @property
    def frame_names(self) -> list[str]:
        return [frame_name(i) for i in self.frame_indices]

    def frame_result(self, position: int) -> FrameResult:
        """The frame at ``position`` as a FrameResult with dataset object ids (what the PNG writer takes)."""
        present = [o for o in self.objects if position in o.frames]
        masks = np.zeros((len(present), self.height, self.width), bool)
        for k, obj in enumerate(present):
            masks[k] = decode_mask(obj.frames[position].counts, self.height, self.width)
        return FrameResult(
            frame_index=self.frame_indices[position], timestamp=0.0, height=self.height, width=self.width,
            track_ids=np.array([o.object_id for o in present], np.int64), masks=masks,
            boxes=np.array([_xyxy(o.frames[position].box) for o in present], np.float32).reshape(-1, 4),
            scores=np.array([o.frames[position].score for o in present], np.float32),
            class_ids=np.zeros(len(present), np.int64), class_names=[o.category for o in present])

    def to_json(self) -> dict[str, Any]:
        objects = []
        for obj in self.objects:
            segs: list[str | None] = [None] * self.length
            boxes: list[list[int] | None] = [None] * self.length
            areas: list[int | None] = [None] * self.length
            scores: list[float | None] = [None] * self.length
            for pos, e in obj.frames.items():
                segs[pos], boxes[pos], areas[pos] = e.counts, list(e.box), e.area
                scores[pos] = round(e.score, SCORE_DECIMALS)
            objects.append({"id": obj.object_id, "track_id": obj.track_id, "category": obj.category,
                            "score": round(obj.score, SCORE_DECIMALS), "segmentations": segs, "bboxes": boxes,
                            "areas": areas, "scores": scores})
        return {"format": RECORD_FORMAT, "name": self.name, "width": self.width, "height": self.height,
                "length": self.length, "frame_indices": list(self.frame_indices), "settings": self.settings,
                "filtered": dict(self.filtered), "objects": objects}

    @classmethod
    def from_json(cls, doc: dict[str, Any], where: str) -> VideoRecord:
        if not isinstance(doc, dict) or doc.get("format") != RECORD_FORMAT:
            raise OutputError(f"{where}: not a gsam2-video dataset video record")
        try:
            objects = []
            for o in doc["objects"]:
                frames = {}
                for pos, (c, b, a, s) in enumerate(zip(o["segmentations"], o["bboxes"], o["areas"], o["scores"])):
                    if c is not None:
                        frames[pos] = FrameEntry(c, tuple(b), int(a), float(s), o["category"])
                objects.append(DatasetObject(int(o["id"]), int(o["track_id"]), o["category"],
                                             float(o["score"]), frames))
            return cls(doc["name"], int(doc["width"]), int(doc["height"]), [int(i) for i in doc["frame_indices"]],
                       objects, doc.get("settings", {}), doc.get("filtered", {}))
        except (KeyError, TypeError, ValueError) as exc:
            raise OutputError(f"{where}: malformed video record ({type(exc).__name__}: {exc})") from None


def _xyxy(box: tuple[int, int, int, int]) -> list[float]:
    x, y, w, h = box
    return [float(x), float(y), float(x + w), float(y + h)]


class VideoCollector:
    """Accumulates a video's FrameResults as compressed RLE per track and frame position."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.frame_indices: list[int] = []
        self.size: tuple[int, int] | None = None
        self.tracks: dict[int, dict[int, FrameEntry]] = {}

    @property
    def frames(self) -> int:
        return len(self.frame_indices)

    def add(self, result: FrameResult) -> None:
        size = (result.height, result.width)
        if self.size is None:
            self.size = size
        elif size != self.size:
            raise OutputError(f"{self.name}: frame {result.frame_index} is {size[1]}x{size[0]} but the video "
                              f"started at {self.size[1]}x{self.size[0]}")
        if self.frame_indices and result.frame_index <= self.frame_indices[-1]:
            raise OutputError(f"{self.name}: frame index {result.frame_index} after {self.frame_indices[-1]}; "
                              f"results must arrive in order")
        pos = len(self.frame_indices)
        self.frame_indices.append(int(result.frame_index))
        names = dict(zip(result.track_ids.tolist(), result.class_names))
        view = FrameView(result)  # the sinks' overlap resolution and RLE (box-strip fast path)
        vis = view.tracks("dataset")
        for tid, counts, box, area, score in zip(vis.track_ids.tolist(), view.rles("dataset"),
                                                 vis.boxes_xywh.tolist(), vis.areas.tolist(), vis.scores.tolist()):
            self.tracks.setdefault(tid, {})[pos] = FrameEntry(counts, tuple(int(v) for v in box), int(area),
                                                              float(score), names[tid])

    def finish(self, filters: Filters, settings: dict[str, Any]) -> VideoRecord:
        """The filtered record (objects renumbered 1..K, see :mod:`.filters`)."""
        height, width = self.size if self.size is not None else (0, 0)
        kept, removed = filters.apply(self.tracks)
        return VideoRecord(self.name, width, height, list(self.frame_indices), kept, settings, removed)
