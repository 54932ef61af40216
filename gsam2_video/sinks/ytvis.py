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

Memory stays small on long or live runs: each visible track-frame (compressed RLE, box, area) is appended
to a hidden temporary file as it arrives; only per-track counters and the byte offsets of its lines (8 bytes
per track-frame) stay in memory. At close the JSON is streamed out one annotation at a time, reading each
track's lines back by offset, then renamed into place. Masks are never kept.
"""

from __future__ import annotations

import json
import os
from array import array
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

from ..errors import OutputError
from ..types import VideoInfo
from .atomic import AtomicFile
from .base import FrameView, Sink, category_id


@dataclass
class _TrackRecord:
    """What stays in memory per track: where its lines are in the spill file, its classes and scores."""

    offsets: array = field(default_factory=lambda: array("q"))
    classes: Counter = field(default_factory=Counter)
    score_sum: float = 0.0


def _package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("gsam2-video")
    except PackageNotFoundError:
        return "unknown"


class YtvisSink(Sink):
    """Spills compressed RLE per visible track-frame to a temporary file; streams ``tracks.json`` at close."""

    kind = "json"
    needs_image = False

    def __init__(self, out_dir: str | os.PathLike[str], file_name: str = "tracks.json") -> None:
        self.final = Path(out_dir) / file_name
        self._info: VideoInfo | None = None
        self._categories: list[str] = []
        self._tracks: dict[int, _TrackRecord] = {}
        self._frame_indices = array("q")
        self._timestamps = array("d")
        self._size: tuple[int, int] | None = None
        self._spill: AtomicFile | None = None

    @property
    def outputs(self) -> list[str]:
        return [str(self.final)]

    def open(self, info: VideoInfo, categories: list[str]) -> None:
        self._reset()
        self._info = info
        self._categories = list(categories)
        # per track-frame lines, never committed: "pos x y w h area counts\n"
        self._spill = AtomicFile(self.final.with_name(self.final.name + ".spill"), "wb")

    def write_view(self, view: FrameView) -> None:
        result = view.result
        if self._info is None or self._spill is None:
            raise OutputError("json output: write() called before open() or after close()")
        size = (result.height, result.width)
        if self._size is None:
            self._size = size
        elif size != self._size:
            raise OutputError(f"json output: frame {result.frame_index} is {size[1]}x{size[0]}, but the video "
                              f"started at {self._size[1]}x{self._size[0]}")
        tracks = view.tracks(self.kind)
        for cls in tracks.class_ids.tolist():
            category_id(cls, self._categories, self.kind)
        pos = len(self._frame_indices)
        self._frame_indices.append(int(result.frame_index))
        self._timestamps.append(float(result.timestamp))
        fh = self._spill.handle
        for tid, counts, (x, y, w, h), area, score, cls in zip(
                tracks.track_ids.tolist(), view.rles(self.kind), tracks.boxes_xywh.tolist(),
                tracks.areas.tolist(), tracks.scores.tolist(), tracks.class_ids.tolist()):
            rec = self._tracks.get(tid)
            if rec is None:
                rec = self._tracks[tid] = _TrackRecord()
            rec.offsets.append(fh.tell())
            fh.write(f"{pos} {x} {y} {w} {h} {area} {counts}\n".encode("ascii"))
            rec.classes[cls] += 1
            rec.score_sum += score

    def _header(self, height: int, width: int) -> dict[str, Any]:
        assert self._info is not None
        info = self._info
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
                "length": len(self._frame_indices),
                "file_names": [f"{info.name}/{i:05d}.jpg" for i in self._frame_indices],
                "frame_indices": self._frame_indices.tolist(),
                "timestamps": self._timestamps.tolist(),
            }],
            "categories": [{"id": i + 1, "name": name} for i, name in enumerate(self._categories)],
        }

    def _annotation(self, ann_id: int, tid: int, spill: IO[bytes], height: int, width: int) -> dict[str, Any]:
        rec = self._tracks[tid]
        length = len(self._frame_indices)
        segs: list[dict[str, Any] | None] = [None] * length
        boxes: list[list[int] | None] = [None] * length
        areas: list[int | None] = [None] * length
        for offset in rec.offsets:
            spill.seek(offset)
            pos_s, x, y, w, h, area, counts = spill.readline().decode("ascii").split()
            pos = int(pos_s)
            segs[pos] = {"size": [height, width], "counts": counts}
            boxes[pos] = [int(x), int(y), int(w), int(h)]
            areas[pos] = int(area)
        return {
            "id": ann_id,
            "video_id": 1,
            "track_id": tid,
            "category_id": rec.classes.most_common(1)[0][0] + 1,
            "iscrowd": 0,
            "height": height,
            "width": width,
            "segmentations": segs,
            "bboxes": boxes,
            "areas": areas,
            "score": rec.score_sum / len(rec.offsets),
        }

    def close(self) -> None:
        spill, info = self._spill, self._info
        if spill is None or info is None:
            return
        height, width = self._size if self._size is not None else (info.height or 0, info.width or 0)
        header = json.dumps(self._header(height, width), separators=(",", ":"))
        out: AtomicFile | None = None
        try:
            spill.handle.flush()
            assert spill.tmp is not None
            out = AtomicFile(self.final, "w")
            out.write(header[:-1] + ',"annotations":[')
            with open(spill.tmp, "rb") as src:
                for ann_id, tid in enumerate(sorted(self._tracks), start=1):
                    if ann_id > 1:
                        out.write(",")
                    out.write(json.dumps(self._annotation(ann_id, tid, src, height, width),
                                         separators=(",", ":")))
            out.write("]}")
        except (OSError, ValueError) as err:
            if out is not None:
                out.discard()
            self._reset()
            raise OutputError(f"cannot write {self.final}: {err}") from err
        out.commit()
        self._reset()

    def abort(self) -> None:
        self._reset()

    def _reset(self) -> None:
        if self._spill is not None:
            self._spill.discard()
            self._spill = None
        self._info = None
        self._tracks = {}
        self._frame_indices = array("q")
        self._timestamps = array("d")
        self._size = None
