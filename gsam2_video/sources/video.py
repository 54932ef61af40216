"""Video files through PyAV (default), decord or OpenCV, behind one FrameSource.

Frame ``index`` is the frame's position in decode (= presentation) order, 0-based, the same number for every
backend; ``timestamp`` is the frame's presentation time in seconds from the stream start: PyAV gives
pts * time_base exactly (variable frame rate safe), decord and OpenCV report the same pts through their own
APIs. Frames skipped by ``start``/``stride`` are decoded (inter-frame codecs need them) but never converted
to RGB. A file that stops decoding early yields what it has, then logs one warning with the counts.
"""

from __future__ import annotations

import logging
import math
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import numpy as np

from ..errors import ConfigError, SourceError
from ..types import Frame, VideoInfo
from .base import FrameSource, Selection
from .convert import to_rgb
from .probe import ProbedFile, probe_file

LOG = logging.getLogger("gsam2_video")

Decoder = Literal["av", "decord", "opencv"]
DECODERS: tuple[str, ...] = ("av", "decord", "opencv")
MAX_CONSECUTIVE_DECODE_ERRORS = 25


class _Clock:
    """Keeps timestamps strictly increasing even when a file repeats or omits pts."""

    def __init__(self, fps: float | None) -> None:
        self.step = 1.0 / fps if fps else 1.0 / 30.0
        self.last = -math.inf

    def __call__(self, seconds: float | None) -> float:
        if seconds is None or not math.isfinite(seconds):
            seconds = 0.0 if self.last == -math.inf else self.last + self.step
        if seconds <= self.last:
            seconds = self.last + self.step
        self.last = seconds
        return seconds


class VideoFileSource(FrameSource):
    """A local video file; ``decoder`` picks the backend (see module docstring).

    ``live=True`` replays the file in real time on its timestamps and keeps only the newest frame, so a
    slow consumer drops frames exactly as it would on a camera (for trying live settings on recordings).
    """

    def __init__(self, path: Path, *, name: str | None = None, decoder: str = "av",
                 selection: Selection | None = None, prefetch: int = 8, live: bool = False) -> None:
        selection = selection or Selection()
        if decoder not in DECODERS:
            raise ConfigError(f"unknown decoder {decoder!r}: choose one of {', '.join(DECODERS)}")
        self.path = Path(path)
        self.decoder = decoder
        display = name or self.path.name
        self.probe: ProbedFile = probe_file(self.path, display)
        if decoder == "decord":
            _check_decord(self.path, display)
        fps = self.probe.fps / selection.stride if self.probe.fps else None
        info = VideoInfo(name=display, uri=str(self.path), width=self.probe.width, height=self.probe.height,
                         fps=fps, frame_count=selection.count(self.probe.frame_count), is_live=live)
        super().__init__(info, selection, live=live, prefetch=prefetch, paced=live)

    def _produce(self, stop: threading.Event) -> Iterator[Frame]:
        reader = {"av": self._read_av, "decord": self._read_decord, "opencv": self._read_opencv}[self.decoder]
        return reader(stop)

    # -- end of file bookkeeping -------------------------------------------------------------------------
    def _finish(self, decoded: int, ran_to_end: bool) -> None:
        """After the last frame: warn once if fewer frames decoded than the file should hold.

        A reader stopped by its consumer (Ctrl-C, an error downstream, ``close()``) did not run to the end: the
        frames it never reached are not missing. Missing frames are counted against what was asked (up to the
        ``max_frames`` cut), not against the whole file.
        """
        stopped = self._stop.is_set() or isinstance(sys.exc_info()[1], GeneratorExit)
        if not ran_to_end or stopped:
            return
        expected = self.probe.expected_frames
        last = self.selection.last_position
        if last is not None:
            expected = min(expected, last + 1)
        if decoded < expected:
            missing = expected - decoded
            self._stats["frames_missing"] = missing
            LOG.warning("%s: video is truncated or corrupt: decoded %d of %d frames (%d missing, %d decode "
                        "errors)", self.name, decoded, expected, missing, self._stats["decode_errors"])
        elif self._stats["decode_errors"]:
            LOG.warning("%s: %d packets failed to decode; %d frames decoded", self.name,
                        self._stats["decode_errors"], decoded)

    def _done(self, position: int) -> bool:
        last = self.stop_position
        return last is not None and position > last

    # -- PyAV --------------------------------------------------------------------------------------------
    def _read_av(self, stop: threading.Event) -> Iterator[Frame]:
        import av

        sel = self.selection
        clock = _Clock(self.probe.fps)
        position = 0
        ran_to_end = True
        try:
            container = av.open(str(self.path), metadata_errors="ignore")
        except (av.error.FFmpegError, OSError) as exc:
            raise SourceError(f"{self.name}: cannot reopen video ({exc})") from None
        try:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            time_base, start_pts = self.probe.time_base, self.probe.start_pts
            packets = container.demux(stream)
            consecutive = 0
            flushed = False
            while not flushed:
                try:
                    packet = next(packets)
                except StopIteration:
                    break
                except av.error.FFmpegError as exc:  # unreadable container data: decode what is buffered
                    self._stats["decode_errors"] += 1
                    LOG.debug("%s: demux error after %d frames: %s", self.name, position, exc)
                    packet = None
                try:
                    frames = stream.decode(packet)
                    consecutive = 0
                except av.error.FFmpegError as exc:
                    self._stats["decode_errors"] += 1
                    consecutive += 1
                    LOG.debug("%s: decode error near frame %d: %s", self.name, position, exc)
                    if consecutive > MAX_CONSECUTIVE_DECODE_ERRORS:
                        break
                    continue
                flushed = packet is None
                for frame in frames:
                    seconds = None if frame.pts is None else float((frame.pts - start_pts) * time_base)
                    timestamp = clock(seconds)
                    if sel.wanted(position):
                        image = np.ascontiguousarray(frame.to_ndarray(format="rgb24"))
                        yield Frame(position, timestamp, image)
                    position += 1
                    if self._done(position) or stop.is_set():
                        ran_to_end = False
                        return
        finally:
            container.close()
            self._finish(position, ran_to_end)

    # -- decord ------------------------------------------------------------------------------------------
    def _read_decord(self, stop: threading.Event) -> Iterator[Frame]:
        import decord

        sel = self.selection
        clock = _Clock(self.probe.fps)
        reader = decord.VideoReader(str(self.path), ctx=decord.cpu(0))
        total = len(reader)
        position = sel.start
        ran_to_end = True
        decoded = min(sel.start, total)
        try:
            if sel.start >= total:
                return
            if sel.start:
                reader.seek_accurate(sel.start)
            consecutive = 0
            while position < total:
                try:
                    array = reader.next().asnumpy()
                    consecutive = 0
                except StopIteration:
                    break
                except decord.DECORDError as exc:  # damaged packet: skip to the next wanted frame
                    self._stats["decode_errors"] += 1
                    consecutive += 1
                    LOG.debug("%s: decord error at frame %d: %s", self.name, position, exc)
                    position += sel.stride
                    decoded = min(position, total)
                    if consecutive > MAX_CONSECUTIVE_DECODE_ERRORS or self._done(position):
                        break
                    try:
                        if position < total:
                            reader.seek_accurate(position)
                    except decord.DECORDError:
                        pass  # the next read reports it
                    continue
                decoded = position + 1
                seconds = float(reader.get_frame_timestamp(position)[0])
                yield Frame(position, clock(seconds), to_rgb(_unpad_decord(array, self.probe.width), "RGB"))
                position += sel.stride
                decoded = min(position, total)
                if self._done(position) or stop.is_set():
                    ran_to_end = False
                    return
                if sel.stride > 1 and position < total:
                    reader.skip_frames(sel.stride - 1)
        finally:
            del reader
            # decord keeps packet numbering across damaged frames, so those positions decoded nothing
            self._finish(decoded - self._stats["decode_errors"], ran_to_end)

    # -- OpenCV ------------------------------------------------------------------------------------------
    def _read_opencv(self, stop: threading.Event) -> Iterator[Frame]:
        import cv2

        sel = self.selection
        clock = _Clock(self.probe.fps)
        capture = cv2.VideoCapture(str(self.path), cv2.CAP_FFMPEG)
        if not capture.isOpened():
            raise SourceError(f"{self.name}: OpenCV cannot open the video")
        position = 0
        ran_to_end = True
        failures = 0  # consecutive failed grabs: a damaged packet, or the end of a truncated file
        try:
            while True:
                if not capture.grab():
                    # OpenCV reports a damaged packet and the end alike; retry (bounded) while frames are due
                    if position >= self.probe.expected_frames or failures >= MAX_CONSECUTIVE_DECODE_ERRORS:
                        break
                    failures += 1
                    continue
                if failures:
                    self._stats["decode_errors"] += failures
                    failures = 0
                seconds = capture.get(cv2.CAP_PROP_POS_MSEC) / 1000.0
                timestamp = clock(seconds)
                if sel.wanted(position):
                    ok, array = capture.retrieve()
                    if ok and array is not None:
                        yield Frame(position, timestamp, to_rgb(array, "BGR"))
                    else:
                        self._stats["decode_errors"] += 1
                position += 1
                if self._done(position) or stop.is_set():
                    ran_to_end = False
                    return
        finally:
            capture.release()
            self._finish(position, ran_to_end)


def _unpad_decord(array: np.ndarray, width: int) -> np.ndarray:
    """Undo decord 0.6's row-padding bug.

    decord infers the channel count from the padded row size, so for widths whose RGB row (width * 3 bytes)
    is padded to a multiple of the width (e.g. 48 px: 144 -> 192 bytes) it returns H x W x 4 holding
    padded rows, not RGBA. The bytes are still rows of ``linesize``; cut each to width * 3.
    """
    if array.ndim == 3 and array.shape[2] == 3:
        return array
    rows = array.reshape(array.shape[0], -1)
    if rows.shape[1] < width * 3:
        raise SourceError(f"decord returned a frame of unexpected shape {array.shape}")
    return rows[:, : width * 3].reshape(array.shape[0], width, 3)


def _check_decord(path: Path, name: str) -> None:
    try:
        import decord
    except ImportError:
        raise SourceError(f"{name}: decoder 'decord' is not installed (pip install 'gsam2-video[decord]')") \
            from None
    try:
        reader = decord.VideoReader(str(path), ctx=decord.cpu(0))
        n = len(reader)
        del reader
    except (decord.DECORDError, RuntimeError) as exc:
        raise SourceError(f"{name}: decord cannot open the video ({str(exc).splitlines()[0][:120]})") from None
    if n == 0:
        raise SourceError(f"{name}: decord finds no frames in the video")
