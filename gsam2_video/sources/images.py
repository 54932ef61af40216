"""Image folders, globs and single images as a frame sequence.

Order is natural ("2.jpg" before "10.jpg", case-insensitive), because numbered frame dumps rarely zero-pad
and a plain string sort would shuffle them. Images are read with OpenCV at their own bit depth and colour
mode (gray, alpha, 16-bit included) and normalised to RGB uint8 by :mod:`.convert`. There is no clock in a
folder, so frame ``i`` is stamped ``i / fps`` with a configurable rate (30 by default).
"""

from __future__ import annotations

import glob as globlib
import logging
import re
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from ..errors import SourceError
from ..types import Frame, VideoInfo
from .base import FrameSource, Selection
from .convert import to_rgb
from .spec import IMAGE_EXTENSIONS, is_image_file

LOG = logging.getLogger("gsam2_video")

DEFAULT_IMAGE_FPS = 30.0
_DIGITS = re.compile(r"(\d+)")


def natural_key(text: str) -> tuple:
    """Sort key treating digit runs as numbers: a2 < a10 < b1; ties broken by the raw text."""
    parts = _DIGITS.split(text.lower())
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in parts if p != "") + (text,)


def list_folder(folder: Path) -> list[Path]:
    """Image files directly inside ``folder`` (not recursive, hidden files skipped), natural order."""
    files = [p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".") and is_image_file(p)]
    return sorted(files, key=lambda p: natural_key(p.name))


def list_glob(pattern: str) -> list[Path]:
    """Image files matched by ``pattern`` (``**`` recurses), natural order of the full path."""
    matches = [Path(p) for p in globlib.glob(str(Path(pattern).expanduser()), recursive=True)]
    files = [p for p in matches if p.is_file() and is_image_file(p)]
    return sorted(files, key=lambda p: natural_key(str(p)))


def read_image(path: Path) -> np.ndarray:
    """Read one image as RGB uint8 (raises SourceError naming the file when it cannot be decoded)."""
    import cv2

    try:
        data = np.fromfile(str(path), dtype=np.uint8)
    except OSError as exc:
        raise SourceError(f"{path}: cannot read image ({exc.strerror or exc})") from None
    # ANYDEPTH keeps 16-bit, ANYCOLOR keeps gray as gray; unlike UNCHANGED both honour EXIF orientation.
    array = cv2.imdecode(data, cv2.IMREAD_ANYDEPTH | cv2.IMREAD_ANYCOLOR) if data.size else None
    if array is None:
        raise SourceError(f"{path}: not a readable image")
    return to_rgb(array, "BGR")


class ImageSequenceSource(FrameSource):
    """Frames from a list of image files; all images must share the first image's size.

    ``live=True`` replays the sequence at ``fps`` in real time, newest frame only (see VideoFileSource).
    An unreadable file after the first is skipped with a warning and counted in ``stats['decode_errors']``
    (its index is not reused, so the gap stays visible); an image of another size is an error.
    """

    def __init__(self, files: Sequence[Path], *, name: str, uri: str, fps: float = DEFAULT_IMAGE_FPS,
                 selection: Selection | None = None, prefetch: int = 8, live: bool = False) -> None:
        selection = selection or Selection()
        if not files:
            raise SourceError(f"{name}: no images found (extensions: "
                              f"{', '.join(sorted(e.lstrip('.') for e in IMAGE_EXTENSIONS))})")
        if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not fps > 0:
            raise SourceError(f"{name}: image fps must be a number > 0, got {fps!r}")
        self.files = list(files)
        self.image_fps = float(fps)
        first = read_image(self.files[0])
        self._first = (0, first)
        height, width = first.shape[:2]
        info = VideoInfo(name=name, uri=uri, width=int(width), height=int(height),
                         fps=self.image_fps / selection.stride,
                         frame_count=selection.count(len(self.files)), is_live=live)
        super().__init__(info, selection, live=live, prefetch=prefetch, paced=live)

    def _produce(self, stop: threading.Event) -> Iterator[Frame]:
        sel = self.selection
        last = self.stop_position
        end = len(self.files) if last is None else min(len(self.files), last + 1)
        for position in range(sel.start, end, sel.stride):
            if stop.is_set():
                return
            path = self.files[position]
            try:
                image = self._first[1] if position == self._first[0] else read_image(path)
            except SourceError as exc:  # one bad file does not end a long sequence; it is counted
                self._stats["decode_errors"] += 1
                LOG.warning("%s: skipping frame %d: %s", self.name, position, exc)
                continue
            if image.shape[:2] != (self.info.height, self.info.width):
                raise SourceError(f"{path}: image is {image.shape[1]}x{image.shape[0]}, expected "
                                  f"{self.info.width}x{self.info.height} like the first image of {self.name}")
            yield Frame(position, position / self.image_fps, image)
