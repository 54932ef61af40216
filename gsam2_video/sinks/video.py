"""``video.mp4``: the annotated video (coloured masks, boxes, "id label score"), H.264 through PyAV.

Encoding: H.264 by default, through NVENC on an NVIDIA GPU that has it and libx264 otherwise; HEVC or AV1
on request (:mod:`.encoders` chooses and explains); yuv420p (plays everywhere), ``+faststart`` (playable
while downloading). The stream rate
is the source fps (30 when the source does not know it, e.g. some live streams); each frame's presentation
time is the result's own timestamp relative to the first frame, on a 1/90000 s clock, so variable-frame-rate
sources, strides and dropped live frames keep their real timing. A timestamp that does not increase is moved
one clock tick after the previous one (MP4 needs strictly increasing times). yuv420p needs even width and
height: an odd dimension is padded by one row/column repeating the edge pixels, nothing is cropped. If the
frame size changes mid-run (a live stream reconnecting at another resolution) later frames are resized to
the first frame's size, with one warning, rather than ending the run.

The file is written under a hidden temporary name and renamed to ``video.mp4`` at close; abort deletes it.
A run that produced no frame writes no video (an MP4 without frames is not a playable file).
"""

from __future__ import annotations

import logging
import math
import os
from fractions import Fraction
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ..drawing import annotate
from ..errors import OutputError
from ..types import VideoInfo
from .atomic import fsync_path, partial_path, remove_quietly
from .base import FrameView, Sink
from .encoders import Encoder, choose_encoder

log = logging.getLogger(__name__)

DEFAULT_FPS = 30.0
CLOCK = Fraction(1, 90000)


def _stream_rate(fps: float | None) -> Fraction:
    if fps is None or not math.isfinite(fps) or fps <= 0:
        fps = DEFAULT_FPS
    return Fraction(fps).limit_denominator(1001)


class VideoSink(Sink):
    """Draws each result on its frame and encodes it; ``needs_image`` asks the pipeline to keep pixels."""

    kind = "video"
    needs_image = True

    def __init__(self, out_dir: str | os.PathLike[str], file_name: str = "video.mp4", *, crf: int = 23,
                 preset: str = "veryfast", alpha: float = 0.5, draw_boxes: bool = True,
                 draw_labels: bool = True, codec: str = "auto", threads: int = 0,
                 encoder: Encoder | None = None) -> None:
        """``codec``: ``--video-codec`` (see :mod:`.encoders`), resolved here so a missing encoder fails
        before the run; ``encoder`` skips that choice (already made); ``threads``: encoder threads, 0 = auto."""
        self.final = Path(out_dir) / file_name
        self.crf = crf
        self.preset = preset
        self.encoder = encoder or choose_encoder(codec, crf=crf, preset=preset, threads=threads)
        self.alpha = alpha
        self.draw_boxes = draw_boxes
        self.draw_labels = draw_labels
        self._rate = Fraction(30)
        self._open = False
        self._tmp: Path | None = None
        self._container: Any = None
        self._stream: Any = None
        self._t0: float | None = None
        self._last_pts = -1
        self._frames = 0
        self._size = (0, 0)
        self._resize_warned = False

    @property
    def outputs(self) -> list[str]:
        return [str(self.final)]

    @property
    def frames_encoded(self) -> int:
        return self._frames

    def open(self, info: VideoInfo, categories: list[str]) -> None:
        self._rate = _stream_rate(info.fps)
        self._open = True
        self._t0 = None
        self._last_pts = -1
        self._frames = 0

    def _start(self, height: int, width: int) -> None:
        import av

        self._tmp = partial_path(self.final)
        try:
            self._container = av.open(str(self._tmp), mode="w", format="mp4",
                                      options={"movflags": "+faststart"})
            stream = self._container.add_stream(self.encoder.name, rate=self._rate)
            self._size = (height, width)
            stream.width = width + width % 2
            stream.height = height + height % 2
            stream.pix_fmt = "yuv420p"
            stream.time_base = CLOCK
            stream.codec_context.time_base = CLOCK
            stream.options = dict(self.encoder.options)
            if self.encoder.threads > 0:
                stream.codec_context.thread_count = self.encoder.threads
            self._stream = stream
        except (OSError, av.FFmpegError) as err:
            self._discard()
            raise OutputError(f"cannot start {self.final}: {err}") from err

    def _pts(self, timestamp: float) -> int:
        if self._t0 is None:
            self._t0 = timestamp if math.isfinite(timestamp) else 0.0
        if math.isfinite(timestamp):
            pts = round((timestamp - self._t0) / CLOCK)
        else:
            pts = self._last_pts + round(1 / (self._rate * CLOCK))
        pts = max(pts, self._last_pts + 1)
        self._last_pts = pts
        return pts

    def write_view(self, view: FrameView) -> None:
        import av

        result = view.result
        if not self._open:
            raise OutputError("video output: write() called before open() or after close()")
        if result.image is None and result.overlay is None:
            raise OutputError(f"video output: frame {result.frame_index} carries no image; the pipeline must "
                              f"keep frame pixels when the video sink is on")
        if self._container is None:
            self._start(result.height, result.width)
        boxes_xywh, _ = view.boxes(self.kind)
        # a pipeline that built the masks' overlay on the GPU hands it over as ``result.overlay``: annotate
        # then only adds boxes and captions
        rgb = annotate(result.image, result, alpha=self.alpha, boxes=self.draw_boxes, labels=self.draw_labels,
                       label_map=view.label_map(self.kind), boxes_xywh=boxes_xywh)
        if rgb.shape[:2] != self._size:
            if not self._resize_warned:
                log.warning("video output: frame %d is %dx%d, the video started at %dx%d; resizing frames to "
                            "the first size", result.frame_index, rgb.shape[1], rgb.shape[0], self._size[1],
                            self._size[0])
                self._resize_warned = True
            rgb = cv2.resize(rgb, (self._size[1], self._size[0]), interpolation=cv2.INTER_AREA)
        pad_h, pad_w = self._stream.height - rgb.shape[0], self._stream.width - rgb.shape[1]
        if pad_h or pad_w:
            rgb = np.pad(rgb, ((0, pad_h), (0, pad_w), (0, 0)), mode="edge")
        # RGB -> I420 in OpenCV: a third of FFmpeg's swscale time for the same BT.601 limited-range planes
        # (luma within 1 grey level, measured), and it releases the GIL
        frame = av.VideoFrame.from_ndarray(cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_I420), format="yuv420p")
        frame.pts = self._pts(float(result.timestamp))
        frame.time_base = CLOCK
        try:
            for packet in self._stream.encode(frame):
                self._container.mux(packet)
        except av.FFmpegError as err:
            raise OutputError(f"cannot encode frame {result.frame_index} into {self.final}: {err}") from err
        self._frames += 1

    def close(self) -> None:
        import av

        if not self._open:
            return
        self._open = False
        if self._container is None:
            log.warning("no frames were written; %s not created", self.final)
            return
        try:
            for packet in self._stream.encode(None):
                self._container.mux(packet)
            self._container.close()
            self._container = None
            assert self._tmp is not None
            fsync_path(self._tmp)
            os.replace(self._tmp, self.final)
            self._tmp = None
        except (OSError, av.FFmpegError) as err:
            self._discard()
            raise OutputError(f"cannot finish {self.final}: {err}") from err

    def abort(self) -> None:
        self._open = False
        self._discard()

    def _discard(self) -> None:
        if self._container is not None:
            try:
                self._container.close()
            except Exception as err:  # noqa: BLE001 - a half-written container may fail to close; it goes anyway
                log.debug("closing partial %s failed: %s", self._tmp, err)
            self._container = None
        self._stream = None
        remove_quietly(self._tmp)
        self._tmp = None
