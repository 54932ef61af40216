"""``coco.json``: COCO instance segmentation, one image per frame, one annotation per object per frame.

Layout (what ``pycocotools.coco.COCO`` loads; Detectron2 / MMDetection read it with mask format "bitmask")::

    {"info": {...}, "licenses": [],
     "videos": [{"id": 1, "name", "width", "height", "length"}],
     "images": [{"id", "file_name": "<video>/<frame:05d>.jpg", "width", "height", "video_id", "frame_id",
                 "frame_index"}],
     "categories": [{"id": 1, "name": "person", "supercategory": "object"}, ...],     # prompt order
     "annotations": [{"id", "image_id", "category_id", "segmentation": {"size": [h, w], "counts": "<RLE>"},
                      "area", "bbox": [x, y, w, h], "iscrowd": 0, "score", "track_id", "video_id"}]}

* ``segmentation`` is compressed COCO RLE (a string), which ``pycocotools`` decodes as it is; ``iscrowd`` is
  0 because every annotation is one object instance (COCO's evaluation ignores crowd regions).
* ``track_id`` is the object's id (the pixel value in ``masks/``) and ``video_id`` the video's, so the same
  object can be followed from image to image (the TAO / YouTube-VIS convention); ``frame_id`` is the image's
  position in its video, ``frame_index`` the source frame number (they differ with ``--start``/``--stride``).
* ``category_id`` is the class of the object *in that frame* (prompt position + 1); ``bbox`` is the tight box
  of the written mask and ``area`` its pixel count (see :mod:`.base`).
* ``file_name`` names the frame as ``tracks.json`` and the dataset's ``JPEGImages/`` do; frames themselves are
  written by the ``yolo`` output (track) or ``--save-frames`` (dataset).

Memory stays flat on long runs: annotations are appended to a hidden temporary file as frames arrive and the
JSON is streamed out at close, then renamed into place. :class:`CocoWriter` is the part shared with the
``dataset`` command, which writes many videos into one file.
"""

from __future__ import annotations

import json
import os
from array import array
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from ..errors import OutputError
from ..types import VideoInfo
from .atomic import AtomicFile, publish_from_spill
from .base import FrameView, Sink, category_id


def coco_categories(names: Sequence[str]) -> list[dict[str, Any]]:
    return [{"id": i + 1, "name": n, "supercategory": "object"} for i, n in enumerate(names)]


class CocoWriter:
    """Streams a COCO file: videos and frames are added in order; annotations are spilled to a temporary file
    and copied into the final JSON by :meth:`commit`."""

    def __init__(self, final: Path, categories: Sequence[str], description: str) -> None:
        self.final = final
        self.categories = list(categories)
        self.description = description
        self._videos: list[dict[str, Any]] = []
        self._image_video = array("q")  # per image: video id
        self._image_frame = array("q")  # per image: source frame index
        self._image_pos = array("q")  # per image: position in its video
        self._image_size: list[tuple[int, int]] = []
        self._spill = AtomicFile(final.with_name(final.name + ".spill"), "w")
        self._annotations = 0

    @property
    def images(self) -> int:
        return len(self._image_frame)

    def add_video(self, name: str, width: int, height: int) -> int:
        """Start a video; returns its id (1, 2, ...)."""
        self._videos.append({"id": len(self._videos) + 1, "name": name, "width": width, "height": height,
                             "length": 0})
        return len(self._videos)

    def add_frame(self, frame_index: int, height: int, width: int, objects: Sequence[tuple[int, int, str,
                  Sequence[int], int, float]]) -> int:
        """Add one image of the current video with ``objects`` = (track id, category id, RLE counts, box xywh,
        area, score) each; returns the image id."""
        video = self._videos[-1]
        image_id = self.images + 1
        self._image_video.append(video["id"])
        self._image_frame.append(int(frame_index))
        self._image_pos.append(video["length"])
        self._image_size.append((height, width))
        video["length"] += 1
        fh = self._spill.handle
        for tid, cat, counts, box, area, score in objects:
            self._annotations += 1
            fh.write(json.dumps({
                "id": self._annotations, "image_id": image_id, "category_id": int(cat),
                "segmentation": {"size": [height, width], "counts": counts}, "area": int(area),
                "bbox": [int(v) for v in box], "iscrowd": 0, "score": round(float(score), 6),
                "track_id": int(tid), "video_id": video["id"]}, separators=(",", ":")) + "\n")
        return image_id

    def _image(self, k: int) -> dict[str, Any]:
        video = self._videos[self._image_video[k] - 1]
        h, w = self._image_size[k]
        frame = self._image_frame[k]
        return {"id": k + 1, "file_name": f"{video['name']}/{frame:05d}.jpg", "width": w, "height": h,
                "video_id": video["id"], "frame_id": self._image_pos[k], "frame_index": frame}

    def commit(self, info: dict[str, Any] | None = None) -> Path:
        """Write the final JSON (atomically) and drop the spill."""
        head = {"info": {"description": self.description, **(info or {})}, "licenses": [],
                "videos": self._videos}

        def write(src: IO[str], out: AtomicFile) -> None:
            out.write(json.dumps(head, separators=(",", ":"))[:-1] + ',"images":[')
            for k in range(self.images):
                out.write(("," if k else "") + json.dumps(self._image(k), separators=(",", ":")))
            out.write('],"categories":' + json.dumps(coco_categories(self.categories), separators=(",", ":")))
            out.write(',"annotations":[')
            _copy_lines(src, out)
            out.write("]}")

        return publish_from_spill(self.final, self._spill, write)

    def discard(self) -> None:
        self._spill.discard()


def _copy_lines(src: IO[str], out: AtomicFile) -> None:
    first = True
    for line in src:
        out.write(("" if first else ",") + line.rstrip("\n"))
        first = False


class CocoSink(Sink):
    """Writes ``<out_dir>/coco.json`` for one run (see the module docstring)."""

    kind = "coco"
    needs_image = False

    def __init__(self, out_dir: str | os.PathLike[str], file_name: str = "coco.json") -> None:
        self.final = Path(out_dir) / file_name
        self._writer: CocoWriter | None = None
        self._info: VideoInfo | None = None
        self._size: tuple[int, int] | None = None

    @property
    def outputs(self) -> list[str]:
        return [str(self.final)]

    def open(self, info: VideoInfo, categories: list[str]) -> None:
        self.abort()
        self._info = info
        self._writer = CocoWriter(self.final, categories, "gsam2-video tracks")

    def write_view(self, view: FrameView) -> None:
        result = view.result
        writer, info = self._writer, self._info
        if writer is None or info is None:
            raise OutputError("coco output: write() called before open() or after close()")
        size = (result.height, result.width)
        if self._size is None:
            self._size = size
            writer.add_video(info.name, result.width, result.height)
        elif size != self._size:
            raise OutputError(f"coco output: frame {result.frame_index} is {size[1]}x{size[0]}, but the video "
                              f"started at {self._size[1]}x{self._size[0]}")
        tracks = view.tracks(self.kind)
        cats = [category_id(int(c), writer.categories, self.kind) for c in tracks.class_ids.tolist()]
        writer.add_frame(result.frame_index, result.height, result.width, list(zip(
            tracks.track_ids.tolist(), cats, view.rles(self.kind), tracks.boxes_xywh.tolist(),
            tracks.areas.tolist(), tracks.scores.tolist())))

    def close(self) -> None:
        writer, info = self._writer, self._info
        self._writer = self._info = None
        self._size = None
        if writer is None or info is None:
            return
        writer.commit({"source": info.to_json(), "fps": info.fps})

    def abort(self) -> None:
        if self._writer is not None:
            self._writer.discard()
        self._writer = self._info = None
        self._size = None
