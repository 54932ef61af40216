"""``yolo/``: an Ultralytics YOLO segmentation dataset of the run, ready for ``yolo segment train data=...``.

Layout::

    yolo/data.yaml                 train / val image folders and the class names (prompt order, ids from 0)
    yolo/images/<frame:05d>.jpg    each frame once (JPEG)
    yolo/labels/<frame:05d>.txt    one line per visible object: ``class x1 y1 x2 y2 ...`` (normalised)

Each object is one polygon; holes and separate parts are joined into that one ring as Ultralytics' converter
does (see :mod:`.polygons`, which also states the rasterisation tolerance). A frame without objects gets an
empty label file (Ultralytics treats it as a background image). Class ids are the prompt positions.

One run is one video, and a training split must never put frames of one video on both sides (neighbouring
frames are near-duplicates), so ``data.yaml`` of a single run names the same folder for ``train`` and
``val``; the ``dataset`` command splits by video (:func:`split_videos`). ``data.yaml`` has no ``path`` key,
so Ultralytics resolves the folders relative to the yaml file itself, wherever the folder is moved.

Atomic like the other folders: built in a hidden temporary folder and renamed to ``yolo/`` at close.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import OutputError
from ..types import VideoInfo
from .atomic import make_partial_dir, remove_quietly, replace_dir
from .base import FrameView, Sink, category_id
from .polygons import yolo_line

JPEG_QUALITY = 95
#: videos held out for validation by the dataset command (by video, never by frame)
VAL_FRACTION = 0.2
SPLIT_SEED = "gsam2-video"


def frame_file_stem(frame_index: int) -> str:
    return f"{frame_index:05d}"


def label_text(masks: np.ndarray, class_ids: Sequence[int]) -> str:
    """The label file of one frame: a line per (non-empty) mask, in the order given."""
    return "".join(yolo_line(int(c), m) + "\n" for m, c in zip(masks, class_ids))


def encode_jpeg(image: np.ndarray, quality: int = JPEG_QUALITY) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image)).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def data_yaml(names: Sequence[str], train: str | Sequence[str], val: str | Sequence[str]) -> str:
    """``data.yaml`` text. Values are JSON literals, which YAML reads as they are (names may hold any
    character); ``names`` maps class id to name as Ultralytics documents."""
    lines = ["# written by gsam2-video: Ultralytics YOLO segmentation dataset",
             f"train: {json.dumps(train if isinstance(train, str) else list(train))}",
             f"val: {json.dumps(val if isinstance(val, str) else list(val))}",
             f"nc: {len(names)}",
             "names:"]
    lines += [f"  {i}: {json.dumps(name)}" for i, name in enumerate(names)]
    return "\n".join(lines) + "\n"


def split_videos(names: Sequence[str], fraction: float = VAL_FRACTION, seed: str = SPLIT_SEED
                 ) -> tuple[list[str], list[str]]:
    """(train, val) video names: videos ranked by a hash of the seed and their name, the first
    ``round(fraction * n)`` (at least one when there are two or more videos) held out for validation.

    Why a hash rank instead of a shuffled list: a video's rank does not depend on the other videos, so adding
    videos to a dataset moves few of the old ones between train and val; the seed makes it reproducible.
    A single video goes to both (there is nothing to hold out).
    """
    ordered = sorted(names, key=lambda n: hashlib.sha256(f"{seed}:{n}".encode()).hexdigest())
    if len(ordered) < 2:
        return list(ordered), list(ordered)
    n_val = min(len(ordered) - 1, max(1, round(fraction * len(ordered))))
    val = set(ordered[:n_val])
    return [n for n in sorted(names) if n not in val], [n for n in sorted(names) if n in val]


class YoloSink(Sink):
    """Writes ``<out_dir>/yolo/`` (see the module docstring)."""

    kind = "yolo"
    needs_image = True

    def __init__(self, out_dir: str | os.PathLike[str], folder: str = "yolo",
                 jpeg_quality: int = JPEG_QUALITY) -> None:
        self.final = Path(out_dir) / folder
        self.jpeg_quality = jpeg_quality
        self._tmp: Path | None = None
        self._categories: list[str] = []

    @property
    def outputs(self) -> list[str]:
        return [str(self.final)]

    def open(self, info: VideoInfo, categories: list[str]) -> None:
        self._tmp = make_partial_dir(self.final)
        self._categories = list(categories)
        try:
            (self._tmp / "images").mkdir()
            (self._tmp / "labels").mkdir()
        except OSError as err:
            raise OutputError(f"cannot create {self.final}: {err.strerror or err}") from err

    def write_view(self, view: FrameView) -> None:
        result = view.result
        if self._tmp is None:
            raise OutputError("yolo output: write() called before open() or after close()")
        if result.image is None:
            raise OutputError(f"yolo output: frame {result.frame_index} carries no image (the tracker must "
                              f"keep images for this output)")
        tracks = view.tracks(self.kind)
        classes = [category_id(int(c), self._categories, self.kind) - 1 for c in tracks.class_ids.tolist()]
        stem = frame_file_stem(result.frame_index)
        try:
            (self._tmp / "images" / f"{stem}.jpg").write_bytes(encode_jpeg(result.image, self.jpeg_quality))
            (self._tmp / "labels" / f"{stem}.txt").write_text(label_text(tracks.masks, classes), encoding="utf-8")
        except OSError as err:
            raise OutputError(f"cannot write {self.final}: {err.strerror or err}") from err

    def close(self) -> None:
        tmp, self._tmp = self._tmp, None
        if tmp is None:
            return
        try:
            (tmp / "data.yaml").write_text(data_yaml(self._categories, "images", "images"), encoding="utf-8")
            replace_dir(tmp, self.final)
        except (OutputError, OSError) as err:
            remove_quietly(tmp)
            if isinstance(err, OutputError):
                raise
            raise OutputError(f"cannot finish {self.final}: {err.strerror or err}") from err

    def abort(self) -> None:
        tmp, self._tmp = self._tmp, None
        remove_quietly(tmp)
