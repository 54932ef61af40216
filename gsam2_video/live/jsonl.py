"""``--jsonl PATH|-``: one JSON line per frame, written and flushed the moment the frame is final.

Why JSON lines: a consumer (``gsam2-video track 0 ... --jsonl - | consumer``) can act on each frame while the
run goes on, with nothing but a line reader and a JSON parser. Line layout::

    {"frame": 12, "timestamp": 0.4, "width": 768, "height": 576,
     "tracks": [{"id": 1, "class_id": 0, "class": "person", "score": 0.61,
                 "box": [x, y, w, h], "area": 5120,
                 "mask": {"size": [576, 768], "counts": "<COCO compressed RLE>"}}]}

``box`` is the tight box of the mask in COCO ``x, y, w, h`` pixels and ``mask`` decodes with
``pycocotools.mask.decode``; tracks follow the same visibility and non-overlap rules as every other output
(:mod:`gsam2_video.sinks.base`), and the RLE is the one the other sinks share (computed once per frame).

Unlike the other outputs this file is not published by an atomic rename: it is meant to be read while it is
written, and every line in it is complete (one ``write`` + flush per line). A stopped or failed run keeps
the lines of the frames done.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import IO

from ..errors import OutputError
from ..sinks.base import FrameView, Sink
from ..types import VideoInfo


class JsonlSink(Sink):
    """Per-frame JSON lines to a file or, for ``"-"``, to standard output."""

    kind = "jsonl"
    needs_image = False

    def __init__(self, target: str) -> None:
        self.target = target
        self._fh: IO[str] | None = None
        self._owned = False
        self._categories: list[str] = []

    @property
    def outputs(self) -> list[str]:
        return [] if self.target == "-" else [str(Path(self.target))]

    def open(self, info: VideoInfo, categories: list[str]) -> None:
        self._categories = list(categories)
        if self.target == "-":
            self._fh, self._owned = sys.stdout, False
            return
        try:
            self._fh = open(self.target, "w", encoding="utf-8", newline="\n")  # noqa: SIM115 - closed in close()
        except OSError as err:
            raise OutputError(f"cannot create {self.target}: {err.strerror or err}") from err
        self._owned = True

    def write_view(self, view: FrameView) -> None:
        if self._fh is None:
            raise OutputError("jsonl output: write() called before open() or after close()")
        result = view.result
        tracks = view.tracks(self.kind)
        rles = view.rles(self.kind)
        size = [int(result.height), int(result.width)]
        items = []
        for tid, cls, score, box, area, counts in zip(tracks.track_ids.tolist(), tracks.class_ids.tolist(),
                                                      tracks.scores.tolist(), tracks.boxes_xywh.tolist(),
                                                      tracks.areas.tolist(), rles):
            name = self._categories[cls] if 0 <= cls < len(self._categories) else None
            items.append({"id": tid, "class_id": cls, "class": name, "score": round(float(score), 4),
                          "box": box, "area": area, "mask": {"size": size, "counts": counts}})
        line = json.dumps({"frame": int(result.frame_index), "timestamp": round(float(result.timestamp), 6),
                           "width": size[1], "height": size[0], "tracks": items}, separators=(",", ":"))
        self._fh.write(line + "\n")
        self._fh.flush()

    def close(self) -> None:
        fh, self._fh = self._fh, None
        if fh is None:
            return
        try:
            fh.flush()
        finally:
            if self._owned:
                fh.close()

    def abort(self) -> None:
        """The lines written are complete and may already be consumed: keep them, just close."""
        try:
            self.close()
        except OSError:
            pass
