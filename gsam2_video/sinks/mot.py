"""``mot.txt``: boxes per frame in the MOTChallenge result format (TrackEval, py-motmetrics).

One line per visible track per frame, comma separated::

    frame,id,bb_left,bb_top,bb_width,bb_height,conf,-1,-1,-1

``frame`` is the source frame index + 1 (MOTChallenge frames are 1-based), ``id`` the track id, the box the
tight box of the written mask in 0-based pixel units (see :mod:`.base`), ``conf`` the track's score in that
frame; the last three fields are the unused 3-D position. Lines are streamed to a hidden temporary file as
frames arrive (constant memory) and renamed into place at close.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import OutputError
from ..types import VideoInfo
from .atomic import AtomicFile
from .base import FrameView, Sink


class MotSink(Sink):
    """Writes ``mot.txt`` line by line."""

    kind = "mot"
    needs_image = False

    def __init__(self, out_dir: str | os.PathLike[str], file_name: str = "mot.txt") -> None:
        self.final = Path(out_dir) / file_name
        self._file: AtomicFile | None = None

    @property
    def outputs(self) -> list[str]:
        return [str(self.final)]

    def open(self, info: VideoInfo, categories: list[str]) -> None:
        self._file = AtomicFile(self.final, "w")

    def write_view(self, view: FrameView) -> None:
        result = view.result
        if self._file is None:
            raise OutputError("mot output: write() called before open() or after close()")
        tracks = view.tracks(self.kind)
        frame = int(result.frame_index) + 1
        self._file.write("".join(
            f"{frame},{tid},{x},{y},{w},{h},{score:.4f},-1,-1,-1\n"
            for tid, (x, y, w, h), score in zip(tracks.track_ids.tolist(), tracks.boxes_xywh.tolist(),
                                                tracks.scores.tolist())))

    def close(self) -> None:
        f, self._file = self._file, None
        if f is not None:
            f.commit()

    def abort(self) -> None:
        f, self._file = self._file, None
        if f is not None:
            f.discard()
