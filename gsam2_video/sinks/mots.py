"""``mots.txt``: instance masks per frame in the MOTS text format read by TrackEval.

One line per visible track per frame, space separated (TrackEval ``docs/MOTS-format.txt``)::

    time_frame obj_id class_id img_height img_width rle

* ``rle`` is the COCO compressed RLE string of the mask (pycocotools); masks in a frame never overlap
  (TrackEval rejects overlapping masks), see :mod:`.base`.
* ``class_id`` is the 1-based category id (prompt position + 1). KITTI-MOTS / MOTSChallenge use 1 = car,
  2 = pedestrian, so the prompt "car. person." yields ids those benchmarks evaluate directly. In ground truth
  class 10 / id 10000 means "ignore region"; keep that in mind when using a 10-class prompt as labels.
* ``obj_id = class_id * 1000 + track_id`` (the KITTI-MOTS convention: class = id // 1000, instance = id %
  1000). The class of a track is its most frequent class over the run (ties: the class seen first), so the
  id of a track never changes. If a track id reaches 1000 the multiplier becomes the next power of ten
  (10000, ...) for the whole file, so ids stay unique and ``class = id // multiplier`` still holds; the
  multiplier used is logged.
* ``time_frame`` is the source frame index plus ``frame_base``. The default 1 matches TrackEval's
  MOTSChallenge reader (time keys ``1..seqLength``) and mot.txt; pass ``frame_base=0`` for TrackEval's
  KITTI-MOTS reader (time keys ``0..seqLength-1``).

The majority class is known only at the end, so lines are streamed to a hidden temporary file as frames
arrive (constant memory) and the final file is produced from it in one pass at close, then renamed into place.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from pathlib import Path

from ..errors import OutputError
from ..types import VideoInfo
from .atomic import AtomicFile
from .base import FrameView, Sink, category_id

log = logging.getLogger(__name__)

KITTI_ID_MULTIPLIER = 1000


def id_multiplier(max_track_id: int) -> int:
    """1000, or the smallest larger power of ten that exceeds every track id."""
    m = KITTI_ID_MULTIPLIER
    while max_track_id >= m:
        m *= 10
    return m


class MotsSink(Sink):
    """Streams ``frame track class h w rle`` to a temporary file; writes the MOTS file at close."""

    kind = "mots"
    needs_image = False

    def __init__(self, out_dir: str | os.PathLike[str], file_name: str = "mots.txt", frame_base: int = 1) -> None:
        if frame_base not in (0, 1):
            raise OutputError(f"mots output: frame base must be 0 (KITTI-MOTS) or 1 (MOTSChallenge), "
                              f"got {frame_base}")
        self.final = Path(out_dir) / file_name
        self.frame_base = frame_base
        self._raw: AtomicFile | None = None
        self._categories: list[str] = []
        self._classes: dict[int, Counter] = {}

    @property
    def outputs(self) -> list[str]:
        return [str(self.final)]

    def open(self, info: VideoInfo, categories: list[str]) -> None:
        self._categories = list(categories)
        self._classes = {}
        # the raw stream lives next to the final file under a hidden temporary name; it is never committed
        self._raw = AtomicFile(self.final.with_name(self.final.name + ".raw"), "w")

    def write_view(self, view: FrameView) -> None:
        result = view.result
        if self._raw is None:
            raise OutputError("mots output: write() called before open() or after close()")
        tracks = view.tracks(self.kind)
        frame = int(result.frame_index) + self.frame_base
        lines = []
        for tid, cls, counts in zip(tracks.track_ids.tolist(), tracks.class_ids.tolist(),
                                    view.rles(self.kind)):
            category_id(cls, self._categories, self.kind)
            self._classes.setdefault(tid, Counter())[cls] += 1
            lines.append(f"{frame} {tid} {result.height} {result.width} {counts}\n")
        self._raw.write("".join(lines))

    def close(self) -> None:
        raw, self._raw = self._raw, None
        if raw is None:
            return
        track_class = {tid: c.most_common(1)[0][0] + 1 for tid, c in self._classes.items()}
        mult = id_multiplier(max(track_class, default=0))
        if mult != KITTI_ID_MULTIPLIER:
            log.warning("mots.txt: track ids reach %d, object ids use class_id * %d + track_id",
                     max(track_class), mult)
        out: AtomicFile | None = None
        try:
            raw.handle.flush()
            assert raw.tmp is not None
            out = AtomicFile(self.final, "w")
            with open(raw.tmp, encoding="utf-8") as src:
                for line in src:
                    frame, tid_s, rest = line.split(" ", 2)
                    cls = track_class[int(tid_s)]
                    out.write(f"{frame} {cls * mult + int(tid_s)} {cls} {rest}")
        except OSError as err:
            if out is not None:
                out.discard()
            raise OutputError(f"cannot write {self.final}: {err.strerror or err}") from err
        finally:
            raw.discard()
        out.commit()
        self._classes = {}

    def abort(self) -> None:
        raw, self._raw = self._raw, None
        if raw is not None:
            raw.discard()
        self._classes = {}

