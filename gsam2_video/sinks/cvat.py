"""``cvat.xml``: the run as "CVAT for video 1.1" annotations, to upload into a CVAT task for correction.

How to use it: create a CVAT task from the same video (same start frame and frame step as the run, see
``<start_frame>``, ``<frame_filter>`` in the file), then *Upload annotations* with format "CVAT 1.1". Labels are
the prompt's classes in prompt order (``<labels>``, type ``mask``).

Masks follow CVAT's XML: ``<mask rle="..." left top width height>``, where ``rle`` is CVAT's own run-length
code, not COCO's: run lengths over the mask's tight box, row by row, starting with a (possibly 0) run of
background, written ``"3, 5, 7"`` (exactly what CVAT writes, and what ``cvat_sdk.masks.decode_mask`` reads
after CVAT's importer turns ``left top width height`` into a box). ``frame`` is the source frame index.

One object per frame is one ``<track>``: a keyframe ``<mask>`` on the frame and an ``outside="1"`` keyframe on
the next written frame (none after the last frame). Why not one ``<track>`` per object with a mask on every
frame: CVAT has no mask tracks; its importer (``cvat/apps/dataset_manager/formats/cvat.py``, ``load_anno``)
turns a track of masks into a single mask shape from the track's *first* keyframe, so every later frame of
the object would be lost on upload. The form written here is the one CVAT itself exports for mask shapes in
this format, and every mask imports. The object's id is kept as the track's ``group_id`` (CVAT's importer
does not keep it, but scripts reading the file can) and tracks are ordered by object, then frame.

Written like ``tracks.json``: visible track-frames are spilled to a hidden temporary file as they arrive, the
XML is streamed out at close and renamed into place.
"""

from __future__ import annotations

import itertools
import os
from array import array
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import IO
from xml.sax.saxutils import escape, quoteattr

import numpy as np

from ..errors import OutputError
from ..types import VideoInfo
from .atomic import AtomicFile, publish_from_spill
from .base import FrameView, Sink, category_id


def cvat_rle(mask: np.ndarray, box_xywh: Sequence[int]) -> list[int]:
    """CVAT's run lengths of ``mask`` inside its box ``x, y, w, h``: row-major, background run first."""
    x, y, w, h = (int(v) for v in box_xywh)
    flat = np.ascontiguousarray(mask[y:y + h, x:x + w]).reshape(-1)
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    runs = np.diff(np.concatenate(([0], change, [flat.size]))).tolist()
    return ([0] + runs) if flat[0] else runs


def _frame_filter(frame_indices: Sequence[int]) -> str:
    """``step=S`` when the written frames are evenly spaced by S > 1, else empty (CVAT's task setting)."""
    steps = {b - a for a, b in itertools.pairwise(frame_indices)}
    step = steps.pop() if len(steps) == 1 else 1
    return f"step={step}" if step > 1 else ""


class CvatWriter:
    """Collects one video's visible track-frames and writes the CVAT XML at :meth:`commit`."""

    def __init__(self, final: Path, categories: Sequence[str], name: str) -> None:
        self.final = final
        self.categories = list(categories)
        self.name = name
        self.frame_indices = array("q")
        self.size: tuple[int, int] | None = None
        self._offsets: dict[int, array] = defaultdict(lambda: array("q"))
        self._spill = AtomicFile(final.with_name(final.name + ".spill"), "w")

    def add_frame(self, frame_index: int, height: int, width: int,
                  objects: Sequence[tuple[int, int, np.ndarray, Sequence[int]]]) -> None:
        """One written frame with ``objects`` = (track id, 0-based class, mask H x W bool, tight box xywh)."""
        if self.size is None:
            self.size = (height, width)
        elif self.size != (height, width):
            raise OutputError(f"cvat output: frame {frame_index} is {width}x{height}, but the video started at "
                              f"{self.size[1]}x{self.size[0]}")
        pos = len(self.frame_indices)
        self.frame_indices.append(int(frame_index))
        fh = self._spill.handle
        for tid, cls, mask, box in objects:
            self._offsets[int(tid)].append(fh.tell())
            x, y, w, h = (int(v) for v in box)
            runs = ",".join(map(str, cvat_rle(mask, box)))
            fh.write(f"{pos} {int(cls)} {x} {y} {w} {h} {runs}\n")

    def _meta(self) -> str:
        now = datetime.now(timezone.utc).isoformat(timespec="seconds")
        height, width = self.size if self.size is not None else (0, 0)
        frames = self.frame_indices.tolist()
        labels = "".join(f"<label><name>{escape(n)}</name><type>mask</type><attributes></attributes></label>"
                         for n in self.categories)
        return (f"<meta><task><id>0</id><name>{escape(self.name)}</name><size>{len(frames)}</size>"
                f"<mode>interpolation</mode><overlap>0</overlap><bugtracker></bugtracker>"
                f"<created>{now}</created><updated>{now}</updated>"
                f"<start_frame>{frames[0] if frames else 0}</start_frame>"
                f"<stop_frame>{frames[-1] if frames else 0}</stop_frame>"
                f"<frame_filter>{_frame_filter(frames)}</frame_filter>"
                f"<labels>{labels}</labels>"
                f"<original_size><width>{width}</width><height>{height}</height></original_size>"
                f"</task><dumped>{now}</dumped></meta>")

    def _tracks(self, src: IO[str], out: AtomicFile) -> None:
        frames = self.frame_indices
        track_no = 0
        for tid in sorted(self._offsets):
            for offset in self._offsets[tid]:
                src.seek(offset)
                pos_s, cls_s, x, y, w, h, runs = src.readline().split()
                pos = int(pos_s)
                label = quoteattr(self.categories[int(cls_s)])
                rle = quoteattr(runs.replace(",", ", "))
                box = f'left="{x}" top="{y}" width="{w}" height="{h}"'
                out.write(f'<track id="{track_no}" label={label} source="auto" group_id="{tid}">\n'
                          f'  <mask frame="{frames[pos]}" keyframe="1" outside="0" occluded="0" rle={rle} '
                          f'{box} z_order="0"></mask>\n')
                if pos + 1 < len(frames):
                    out.write(f'  <mask frame="{frames[pos + 1]}" keyframe="1" outside="1" occluded="0" '
                              f'rle={rle} {box} z_order="0"></mask>\n')
                out.write("</track>\n")
                track_no += 1

    def commit(self) -> Path:
        def write(src: IO[str], out: AtomicFile) -> None:
            out.write('<?xml version="1.0" encoding="utf-8"?>\n<annotations>\n<version>1.1</version>\n')
            out.write(self._meta() + "\n")
            self._tracks(src, out)
            out.write("</annotations>\n")

        return publish_from_spill(self.final, self._spill, write)

    def discard(self) -> None:
        self._spill.discard()


class CvatSink(Sink):
    """Writes ``<out_dir>/cvat.xml`` for one run (see the module docstring)."""

    kind = "cvat"
    needs_image = False

    def __init__(self, out_dir: str | os.PathLike[str], file_name: str = "cvat.xml") -> None:
        self.final = Path(out_dir) / file_name
        self._writer: CvatWriter | None = None

    @property
    def outputs(self) -> list[str]:
        return [str(self.final)]

    def open(self, info: VideoInfo, categories: list[str]) -> None:
        self.abort()
        self._writer = CvatWriter(self.final, categories, info.name)

    def write_view(self, view: FrameView) -> None:
        writer = self._writer
        if writer is None:
            raise OutputError("cvat output: write() called before open() or after close()")
        result = view.result
        tracks = view.tracks(self.kind)
        classes = [category_id(int(c), writer.categories, self.kind) - 1 for c in tracks.class_ids.tolist()]
        writer.add_frame(result.frame_index, result.height, result.width,
                         list(zip(tracks.track_ids.tolist(), classes, tracks.masks, tracks.boxes_xywh.tolist())))

    def close(self) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.commit()

    def abort(self) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.discard()
