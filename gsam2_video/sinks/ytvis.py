"""``tracks.json``: the whole run as one YouTube-VIS style video-instance file.

Layout (YouTube-VIS 2019/2021 ground-truth schema, plus a few fields that keep the link to the source)::

    {"info": {...generator, source VideoInfo, fps...},
     "videos": [{"id": 1, "name", "width", "height", "length",
                 "file_names": ["<name>/00000.jpg", ...], "frame_indices": [...], "timestamps": [...]}],
     "categories": [{"id": 1, "name": "person"}, ...],          # id = prompt position + 1
     "annotations": [{"id", "video_id": 1, "track_id", "category_id", "iscrowd": 0, "height", "width",
                      "segmentations": [{"size": [h, w], "counts": "<COCO compressed RLE>"} | null, ...],
                      "bboxes": [[x, y, w, h] | null, ...], "areas": [int | null, ...],
                      "score": mean score over visible frames}]}

The per-frame lists have ``length`` entries, one per written frame in order; entry ``k`` belongs to source
frame ``frame_indices[k]`` (with a stride the two differ). ``file_names`` follow YouTube-VIS's
``<video>/<frame>.jpg`` naming with the source frame index, matching ``masks/<frame>.png``. A track is null
where it is invisible (see :mod:`.base`); ``category_id`` is the track's most frequent class over its
visible frames (ties: the class seen first). ``counts`` are strings, so
``pycocotools.mask.decode(segmentation)`` reads them directly.

Evaluation: ``doc["annotations"]`` is itself a valid YouTube-VIS *results* list (each entry has
``video_id``, ``category_id``, ``score``, ``segmentations``); TrackEval's YouTubeVIS reader loads it as a
tracker result. Its *ground-truth* reader (like the official YouTube-VIS annotation files) expects
uncompressed counts (integer lists), so using tracks.json as ground truth there needs the counts
decompressed first.

Memory: only the compressed RLE string, box, area and score of each visible track-frame are kept, never
masks; the file is assembled at close and written atomically.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..errors import OutputError
from ..types import VideoInfo
from .atomic import AtomicFile
from .base import FrameView, Sink, category_id


@dataclass
class _TrackRecord:
    """Everything kept for one track: sparse per-frame entries keyed by frame position."""

    frames: dict[int, tuple[str, list[int], int]] = field(default_factory=dict)  # pos -> (rle, bbox, area)
    classes: Counter = field(default_factory=Counter)
    score_sum: float = 0.0


def _package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("gsam2-video")
    except PackageNotFoundError:
        return "unknown"


class YtvisSink(Sink):
    """Accumulates compressed RLE per visible track-frame; writes ``tracks.json`` at close."""

    kind = "json"
    needs_image = False

    def __init__(self, out_dir: str | os.PathLike[str], file_name: str = "tracks.json") -> None:
        self.final = Path(out_dir) / file_name
        self._info: VideoInfo | None = None
        self._categories: list[str] = []
        self._tracks: dict[int, _TrackRecord] = {}
        self._frame_indices: list[int] = []
        self._timestamps: list[float] = []
        self._size: tuple[int, int] | None = None

    @property
    def outputs(self) -> list[str]:
        return [str(self.final)]

    def open(self, info: VideoInfo, categories: list[str]) -> None:
        self._info = info
        self._categories = list(categories)
        self._tracks = {}
        self._frame_indices = []
        self._timestamps = []
        self._size = None

    def write_view(self, view: FrameView) -> None:
        result = view.result
        if self._info is None:
            raise OutputError("json output: write() called before open() or after close()")
        size = (result.height, result.width)
        if self._size is None:
            self._size = size
        elif size != self._size:
            raise OutputError(f"json output: frame {result.frame_index} is {size[1]}x{size[0]}, but the video "
                              f"started at {self._size[1]}x{self._size[0]}")
        pos = len(self._frame_indices)
        self._frame_indices.append(int(result.frame_index))
        self._timestamps.append(float(result.timestamp))
        tracks = view.tracks(self.kind)
        for tid, counts, box, area, score, cls in zip(
                tracks.track_ids.tolist(), view.rles(self.kind), tracks.boxes_xywh.tolist(),
                tracks.areas.tolist(), tracks.scores.tolist(), tracks.class_ids.tolist()):
            category_id(cls, self._categories, self.kind)
            rec = self._tracks.setdefault(tid, _TrackRecord())
            rec.frames[pos] = (counts, box, area)
            rec.classes[cls] += 1
            rec.score_sum += score

    def build(self) -> dict[str, Any]:
        """The tracks.json document for everything written so far."""
        if self._info is None:
            raise OutputError("json output: build() called before open()")
        info = self._info
        length = len(self._frame_indices)
        height, width = self._size if self._size is not None else (info.height or 0, info.width or 0)
        annotations = []
        for ann_id, tid in enumerate(sorted(self._tracks), start=1):
            rec = self._tracks[tid]
            segs: list[dict[str, Any] | None] = [None] * length
            boxes: list[list[int] | None] = [None] * length
            areas: list[int | None] = [None] * length
            for pos, (counts, box, area) in rec.frames.items():
                segs[pos] = {"size": [height, width], "counts": counts}
                boxes[pos] = box
                areas[pos] = area
            majority_class = rec.classes.most_common(1)[0][0]
            annotations.append({
                "id": ann_id,
                "video_id": 1,
                "track_id": tid,
                "category_id": majority_class + 1,
                "iscrowd": 0,
                "height": height,
                "width": width,
                "segmentations": segs,
                "bboxes": boxes,
                "areas": areas,
                "score": rec.score_sum / len(rec.frames),
            })
        return {
            "info": {
                "description": "gsam2-video tracks",
                "generator": f"gsam2-video {_package_version()}",
                "date_created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "source": info.to_json(),
                "fps": info.fps,
            },
            "videos": [{
                "id": 1,
                "name": info.name,
                "width": width,
                "height": height,
                "length": length,
                "file_names": [f"{info.name}/{i:05d}.jpg" for i in self._frame_indices],
                "frame_indices": list(self._frame_indices),
                "timestamps": list(self._timestamps),
            }],
            "categories": [{"id": i + 1, "name": name} for i, name in enumerate(self._categories)],
            "annotations": annotations,
        }

    def close(self) -> None:
        if self._info is None:
            return
        doc = self.build()
        out = AtomicFile(self.final, "w")
        try:
            json.dump(doc, out.handle, separators=(",", ":"))
        except (OSError, ValueError) as err:
            out.discard()
            raise OutputError(f"cannot write {self.final}: {err}") from err
        out.commit()
        self._reset()

    def abort(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self._info = None
        self._tracks = {}
        self._frame_indices = []
        self._timestamps = []
