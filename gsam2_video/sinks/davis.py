"""``masks/00000.png, ...``: one DAVIS-style label PNG per frame.

Format: the file name is the frame's source index zero-padded to 5 digits; pixel value = track id, 0 =
background; masks are non-overlapping (see :mod:`.base`). Every decoded frame gets a file, empty frames an
all-zero one, as DAVIS expects. PNGs are indexed-colour (mode "P") with the DAVIS palette (the PASCAL VOC
colour map), so they open coloured in any viewer and ``np.array(Image.open(p))`` gives the ids.

Track ids above 255 do not fit a palette PNG. Rule: **per run, one format.** While every id seen is <= 255
the run is written as palette PNGs. From the first frame with an id > 255 on, frames are written as 16-bit
grayscale PNGs (PIL mode "I;16"), and at close the palette PNGs written before that frame (still in the
hidden temporary folder) are rewritten as 16-bit too. A finished ``masks/`` folder therefore holds one
format only, and ``np.array(Image.open(p))`` returns exact ids in both. Why not switch per frame: a folder
mixing uint8 and uint16 files surprises tools that read the first file to decide the dtype. Why at close:
the rewrite costs one PNG decode + encode per earlier frame, which must not
stall a live run in the middle; it happens once, only in runs that pass id 255. Ids above 65535 cannot be
stored and raise OutputError.

The folder is built as a hidden temporary folder next to ``masks/`` and renamed into place by
:meth:`DavisSink.close`; :meth:`DavisSink.abort` deletes it, so an interrupted run leaves no ``masks/``.
"""

from __future__ import annotations

import os
from array import array
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import OutputError
from ..types import VideoInfo
from .atomic import make_partial_dir, remove_quietly, replace_dir
from .base import FrameView, Sink

MAX_PALETTE_ID = 255
MAX_16BIT_ID = 65535


def davis_palette() -> list[int]:
    """The DAVIS / PASCAL VOC palette as 768 ints (r, g, b per index): bits of the index spread over the
    high bits of the three channels, so nearby ids get clearly different colours and 0 is black."""
    pal: list[int] = []
    for index in range(256):
        r = g = b = 0
        code = index
        for shift in range(7, -1, -1):
            r |= (code & 1) << shift
            g |= ((code >> 1) & 1) << shift
            b |= ((code >> 2) & 1) << shift
            code >>= 3
        pal += [r, g, b]
    return pal


def mask_file_name(frame_index: int) -> str:
    return f"{frame_index:05d}.png"


class DavisSink(Sink):
    """Writes ``<out_dir>/<folder>/<frame:05d>.png`` label maps; see the module docstring for the format."""

    kind = "masks"
    needs_image = False

    def __init__(self, out_dir: str | os.PathLike[str], folder: str = "masks", compress_level: int = 3) -> None:
        self.final = Path(out_dir) / folder
        self.compress_level = compress_level
        self._palette = davis_palette()
        self._tmp: Path | None = None
        self._sixteen_bit = False
        self._palette_frames = array("q")  # frame indices written as palette PNGs (for the 16-bit switch)
        self._to_convert = array("q")

    @property
    def outputs(self) -> list[str]:
        return [str(self.final)]

    @property
    def sixteen_bit(self) -> bool:
        """True once this run switched to 16-bit PNGs (an id above 255 appeared)."""
        return self._sixteen_bit

    def open(self, info: VideoInfo, categories: list[str]) -> None:
        self._tmp = make_partial_dir(self.final)
        self._sixteen_bit = False
        self._palette_frames = array("q")
        self._to_convert = array("q")

    def write_view(self, view: FrameView) -> None:
        result = view.result
        if self._tmp is None:
            raise OutputError("masks output: write() called before open() or after close()")
        tracks = view.tracks(self.kind)
        max_id = int(tracks.track_ids.max()) if len(tracks) else 0
        if max_id > MAX_16BIT_ID:
            raise OutputError(f"masks output: track id {max_id} in frame {result.frame_index} exceeds 65535, "
                              f"the largest value a 16-bit PNG can hold")
        if max_id > MAX_PALETTE_ID and not self._sixteen_bit:
            self._sixteen_bit = True  # from here on 16-bit; earlier palette files are converted at close
            self._to_convert, self._palette_frames = self._palette_frames, array("q")
        labels = view.label_map(self.kind)  # holds the visible tracks only; any dtype whose ids fit the file's
        want = np.uint16 if self._sixteen_bit else np.uint8
        if labels.dtype != want:
            labels = labels.astype(want)
        name = mask_file_name(result.frame_index)
        self._save(labels, self._tmp / name)
        if not self._sixteen_bit:
            self._palette_frames.append(int(result.frame_index))

    def _save(self, labels: np.ndarray, path: Path) -> None:
        if labels.dtype == np.uint8:
            img = Image.fromarray(labels)
            img.putpalette(self._palette)
        else:
            img = Image.fromarray(labels.astype(np.uint16))
        try:
            img.save(path, format="PNG", compress_level=self.compress_level)
        except BaseException:
            # a half-written PNG (disk full mid-file) must not be published when a failed run keeps its frames
            remove_quietly(path)
            raise

    def _convert_to_16_bit(self, folder: Path) -> None:
        for index in self._to_convert:
            path = folder / mask_file_name(index)
            with Image.open(path) as img:
                labels = np.array(img)
            self._save(labels.astype(np.uint16), path)
        self._to_convert = array("q")

    def close(self) -> None:
        if self._tmp is None:
            return
        tmp, self._tmp = self._tmp, None
        try:
            if self._to_convert:
                self._convert_to_16_bit(tmp)
            replace_dir(tmp, self.final)
        except (OutputError, OSError) as err:
            remove_quietly(tmp)
            if isinstance(err, OutputError):
                raise
            raise OutputError(f"cannot finish {self.final}: {err.strerror or err}") from err

    def abort(self) -> None:
        tmp, self._tmp = self._tmp, None
        remove_quietly(tmp)
