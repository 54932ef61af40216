"""``--stream-out URL``: the annotated frames re-encoded to a network stream while the run goes on.

Formats: ``udp://`` / ``tcp://`` / ``rtp://`` / ``srt://`` carry MPEG-TS, ``rtsp://`` pushes RTSP (needs an
RTSP server that accepts publishing, e.g. MediaMTX) and ``rtmp(s)://`` FLV, as far as the FFmpeg build
behind PyAV supports each protocol. Video: H.264 (libx264, ultrafast, zerolatency, a keyframe every second so
a viewer joining late gets a picture within a second), yuv420p, odd sizes padded by one edge row/column.

Pace: frames go out at the source's pace. Each frame's presentation time is its source timestamp (relative
to the first frame, strictly increasing), and a frame is not sent before that time has passed on the wall
clock since the first one was sent. A live source arrives at its own pace anyway; a file processed faster
than real time is slowed to real time (the writer's bounded queue then holds the pipeline back), so a
viewer sees it play, not rush.

UDP never reports a missing receiver; a TCP / RTMP receiver that goes away raises, which ends the run as a
failure with every other output kept (see :mod:`gsam2_video.outcome`).
"""

from __future__ import annotations

import math
import time
from fractions import Fraction
from typing import Any

import numpy as np

from ..errors import OutputError
from ..sinks.base import FrameView, Sink
from ..types import VideoInfo
from .annotated import annotated_frame
from .options import stream_out_format

CLOCK = Fraction(1, 90000)
DEFAULT_FPS = 30.0


class StreamOutSink(Sink):
    """Encodes each annotated frame and sends it to ``url``; see the module docstring."""

    kind = "stream-out"
    needs_image = True

    def __init__(self, url: str, *, paced: bool = True) -> None:
        self.url = url
        self.format = stream_out_format(url)
        self.paced = paced
        self._container: Any = None
        self._stream: Any = None
        self._fps = DEFAULT_FPS
        self._t0: float | None = None
        self._wall0 = 0.0
        self._last_pts = -1
        self.frames_sent = 0

    @property
    def outputs(self) -> list[str]:
        return []  # nothing on disk

    def open(self, info: VideoInfo, categories: list[str]) -> None:
        fps = info.fps
        self._fps = fps if fps is not None and math.isfinite(fps) and fps > 0 else DEFAULT_FPS
        self._t0 = None
        self._last_pts = -1
        self.frames_sent = 0

    def _start(self, height: int, width: int) -> None:
        import av

        target = self.url
        if self.format == "mpegts" and target.lower().startswith("udp://") and "pkt_size" not in target:
            target += ("&" if "?" in target else "?") + "pkt_size=1316"  # 7 TS packets per datagram
        try:
            self._container = av.open(target, mode="w", format=self.format)
            stream = self._container.add_stream("libx264", rate=Fraction(self._fps).limit_denominator(1001))
            stream.width, stream.height = width + width % 2, height + height % 2
            stream.pix_fmt = "yuv420p"
            stream.time_base = CLOCK
            stream.codec_context.time_base = CLOCK
            gop = str(max(1, round(self._fps)))
            stream.options = {"preset": "ultrafast", "tune": "zerolatency", "g": gop, "keyint_min": gop}
            self._stream = stream
        except (OSError, av.FFmpegError) as err:
            self._discard()
            raise OutputError(f"--stream-out {self.url}: cannot start the stream: {err}") from err

    def _pts(self, timestamp: float) -> int:
        if self._t0 is None:
            self._t0 = timestamp if math.isfinite(timestamp) else 0.0
            self._wall0 = time.monotonic()
        if math.isfinite(timestamp):
            pts = round((timestamp - self._t0) / CLOCK)
        else:
            pts = self._last_pts + round(1 / (self._fps * CLOCK))
        pts = max(pts, self._last_pts + 1)
        self._last_pts = pts
        return pts

    def write_view(self, view: FrameView) -> None:
        import av

        rgb = annotated_frame(view)
        if rgb is None:
            raise OutputError(f"stream-out: frame {view.result.frame_index} carries no image")
        if self._container is None:
            self._start(rgb.shape[0], rgb.shape[1])
        height, width = self._stream.height, self._stream.width
        pad_h, pad_w = height - rgb.shape[0], width - rgb.shape[1]
        if pad_h in (0, 1) and pad_w in (0, 1):
            if pad_h or pad_w:  # odd size: repeat the edge row / column
                rgb = np.pad(rgb, ((0, pad_h), (0, pad_w), (0, 0)), mode="edge")
        else:  # a source that changed size mid-run: fit the stream's size
            import cv2

            rgb = cv2.resize(rgb, (width, height), interpolation=cv2.INTER_AREA)
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        frame.pts = self._pts(float(view.result.timestamp))
        frame.time_base = CLOCK
        if self.paced:
            wait = self._wall0 + float(frame.pts * CLOCK) - time.monotonic()
            if wait > 0:
                time.sleep(min(wait, 10.0))
        try:
            for packet in self._stream.encode(frame):
                self._container.mux(packet)
        except (OSError, av.FFmpegError) as err:
            raise OutputError(f"--stream-out {self.url}: sending frame {view.result.frame_index} failed: "
                              f"{err}") from err
        self.frames_sent += 1

    def close(self) -> None:
        import av

        if self._container is None:
            return
        try:
            for packet in self._stream.encode(None):
                self._container.mux(packet)
            self._container.close()
        except (OSError, av.FFmpegError) as err:
            raise OutputError(f"--stream-out {self.url}: ending the stream failed: {err}") from err
        finally:
            self._container = None
            self._stream = None

    def abort(self) -> None:
        self._discard()

    def _discard(self) -> None:
        if self._container is not None:
            try:
                self._container.close()
            except Exception:  # noqa: BLE001, S110 - a broken connection may fail to close; it goes anyway
                pass
        self._container = None
        self._stream = None
