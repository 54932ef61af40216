"""Local cameras by index through OpenCV, read on a background thread.

The camera is opened (and one frame read) in the constructor, so a missing or busy device fails at once.
Cameras have no usable pts through OpenCV, so timestamps are monotonic-clock seconds since the first frame.
A read failure (unplugged, driver hiccup) closes the device and re-opens it with backoff. How a device is
opened is injectable (``capture_factory``), which also lets tests drive this reader with a recorded clip.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from ..errors import SourceError
from ..types import Frame, VideoInfo
from .base import FrameSource, Selection
from .convert import to_rgb
from .reconnect import ReconnectPolicy, reconnect

LOG = logging.getLogger("gsam2_video")

CaptureFactory = Callable[[int], Any]


def open_camera(index: int) -> Any:
    """Default factory: ``cv2.VideoCapture(index)`` with OpenCV's default backend."""
    import cv2

    return cv2.VideoCapture(index)


class WebcamSource(FrameSource):
    """Camera ``index``; in live mode only the newest frame is kept (see :class:`FrameSource`)."""

    def __init__(self, index: int, *, name: str, uri: str, live: bool = True,
                 selection: Selection | None = None, prefetch: int = 8,
                 reconnect_policy: ReconnectPolicy | None = None,
                 capture_factory: CaptureFactory = open_camera) -> None:
        selection = selection or Selection()
        self.index = index
        self.reconnect_policy = reconnect_policy or ReconnectPolicy()
        self._factory = capture_factory
        self._display = name
        self._capture, first = self._open()
        self._held: Any = first
        import cv2

        fps = float(self._capture.get(cv2.CAP_PROP_FPS) or 0.0)
        info = VideoInfo(name=name, uri=uri, width=int(first.shape[1]), height=int(first.shape[0]),
                         fps=fps / selection.stride if fps > 0 else None, frame_count=None, is_live=live)
        super().__init__(info, selection, live=live, prefetch=prefetch)

    def _open(self) -> tuple[Any, Any]:
        capture = self._factory(self.index)
        if capture is None or not capture.isOpened():
            if capture is not None:
                capture.release()
            raise SourceError(f"{self._display}: cannot open camera {self.index} (no such device, or busy)")
        ok, image = capture.read()
        if not ok or image is None:
            capture.release()
            raise SourceError(f"{self._display}: camera {self.index} opened but delivered no frame")
        return capture, image

    def _release(self) -> None:
        if self._capture is not None:
            self._capture.release()
            self._capture = None

    def _produce(self, stop: threading.Event) -> Iterator[Frame]:
        sel = self.selection
        position = 0
        t0: float | None = None
        last_ts = -1.0
        capture, image = self._capture, self._held
        self._held = None
        try:
            while not stop.is_set():
                if image is None:
                    ok, image = capture.read()
                    if not ok or image is None:
                        capture.release()
                        LOG.warning("%s: camera read failed after %d frames; reconnecting", self.name, position)
                        opened = reconnect(self._open, self.reconnect_policy, stop, self.name)
                        if opened is None:
                            if not stop.is_set():
                                self._stats["stream_lost"] = 1
                                LOG.warning("%s: camera lost: could not reopen it; ending after %d frames",
                                            self.name, position)
                            return
                        self._stats["reconnects"] += 1
                        capture, image = opened
                        self._capture = capture
                now = time.monotonic()
                t0 = now if t0 is None else t0
                timestamp = max(now - t0, last_ts + 1e-6)  # strictly increasing even at clock resolution
                last_ts = timestamp
                if sel.wanted(position):
                    yield Frame(position, timestamp, to_rgb(image, "BGR"))
                image = None
                position += 1
                last = self.stop_position
                if last is not None and position > last:
                    return
        finally:
            capture.release()
            self._capture = None
