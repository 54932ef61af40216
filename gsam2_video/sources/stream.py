"""Network streams (rtsp, rtmp, http(s), udp, tcp, srt) through PyAV, read on a background thread.

Connecting happens in the constructor with bounded timeouts, so an unreachable URL fails fast with one line.
On UDP, where only silence tells a dead sender, "no data" is FFmpeg's inactivity timeout, so probing a slow
stream is never cut short while datagrams arrive.
The reader then demuxes and decodes packet by packet (a bad packet is counted, not fatal). When the stream
ends or breaks in live mode it is re-opened with exponential backoff (:mod:`.reconnect`); a non-live read
ends at the stream's end (a server closing the connection, which FFmpeg reports as EOF or, for HTTP bodies
of unknown length, as EIO) and reconnects only after real failures (reset, read timeout, decode collapse).
Timestamps are pts * time_base relative to the first frame, re-based by :class:`SessionClock` after a
reconnect or a discontinuity (pts going backwards, MPEG-TS restart or wrap-around, a large forward jump) so
they stay strictly increasing across the whole session; each reconnect and discontinuity is counted in
``stats`` and listed in :attr:`StreamSource.events` (run.json ``source_events``). A stop asked for by the
consumer ends the reader quietly (no "reconnecting" message). Frame ``index`` counts every frame received since opening, so gaps show dropped frames.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np

from ..errors import SourceError
from ..types import Frame, VideoInfo
from .base import FrameSource, Selection
from .reconnect import ReconnectPolicy, reconnect

LOG = logging.getLogger("gsam2_video")

MAX_CONSECUTIVE_DECODE_ERRORS = 50
# UDP: how long opening may take while data is arriving (the probe needs up to a GOP plus ~20 frames of a
# stream that may be slow); silence is detected separately, by FFmpeg's inactivity timeout
UDP_PROBE_SECONDS = 10.0
MAX_EVENTS = 1000  # reconnect / discontinuity records kept for run.json (a soak must not grow memory)


@dataclass
class _Connection:
    """One open container plus the frames decoded while checking it delivers pictures."""

    container: Any
    stream: Any
    packets: Iterator[Any]
    held: list[Any] = field(default_factory=list)

    def close(self) -> None:
        try:
            self.container.close()
        except Exception:  # noqa: BLE001, S110 - closing a broken connection must not mask the real problem
            pass


@dataclass(frozen=True)
class _Failure:
    """Why a connection ended, as text. Never the exception itself: its traceback holds the reader's frames
    and through them the connection (container, decoder, buffers), and an exception kept past its ``except``
    block sits in a reference cycle that only a full garbage collection frees, rarely in a process holding
    models: every reconnect of a long live run kept about 1 MiB (a soak's RSS rose 4% in 19 reconnects)."""

    reason: str
    end_of_body: bool


def _reason(exc: BaseException, open_timeout: float, *, udp: bool = False) -> str:
    """One line saying why a connection failed; on UDP an I/O error is FFmpeg's inactivity timeout."""
    import errno

    import av

    if isinstance(exc, av.error.ExitError) or (udp and isinstance(exc, OSError) and exc.errno == errno.EIO):
        return f"no data within {open_timeout:g} s"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    text = getattr(exc, "strerror", None) or str(exc)
    return str(text).split(": '", 1)[0].strip() or type(exc).__name__


class StreamSource(FrameSource):
    """A network stream; ``live`` keeps only the newest frame (see :class:`FrameSource`)."""

    def __init__(self, url: str, *, name: str, uri: str, live: bool, selection: Selection | None = None,
                 prefetch: int = 8, open_timeout: float = 10.0, read_timeout: float = 10.0,
                 reconnect_policy: ReconnectPolicy | None = None,
                 av_options: dict[str, str] | None = None) -> None:
        selection = selection or Selection()
        for label, value in (("open timeout", open_timeout), ("read timeout", read_timeout)):
            if not value > 0:
                raise SourceError(f"{name}: {label} must be > 0 s, got {value!r}")
        self.url = url
        self.open_timeout = float(open_timeout)
        self.read_timeout = float(read_timeout)
        self.reconnect_policy = reconnect_policy or ReconnectPolicy()
        options = dict(av_options or {})
        if url.lower().startswith("rtsp") and "rtsp_transport" not in options:
            options["rtsp_transport"] = "tcp"  # UDP RTP loses packets on busy links; TCP is the safe default
        self._udp = url.lower().startswith("udp")
        self._open_budget = self.open_timeout
        if self._udp and "overrun_nonfatal" not in options:
            # datagrams keep arriving while the models load: a full receive buffer must drop old packets,
            # not end the connection
            options["overrun_nonfatal"] = "1"
        if self._udp:
            # Silence is detected by FFmpeg's inactivity timeout (microseconds without a datagram: EIO), not by
            # PyAV's, which bounds a whole call: probing a slow stream (a GOP, then ~20 frames to measure the
            # frame rate) can outlast the timeout while data flows, and a probe cut short leaves FFmpeg's
            # reader failing at its first real read, after the probed frames: a false "no data" outage and a
            # reconnect after every (re)connect. PyAV's open bound then only caps a probe that never ends.
            options.setdefault("timeout", str(int(max(self.open_timeout, self.read_timeout) * 1e6)))
            self._open_budget = self.open_timeout + UDP_PROBE_SECONDS
        self.av_options = options
        self._display = name
        self._connection: _Connection | None = self._connect()
        stream = self._connection.stream
        first = self._connection.held[0]
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        fps = float(rate) / selection.stride if rate else None
        frames = int(stream.frames or 0)
        info = VideoInfo(name=name, uri=uri, width=int(first.width), height=int(first.height), fps=fps,
                         frame_count=selection.count(frames) if (frames and not live) else None,
                         is_live=live)
        super().__init__(info, selection, live=live, prefetch=prefetch)
        self._events: list[dict[str, Any]] = []
        self._join_timeout = self.read_timeout + 2.0

    # -- connecting --------------------------------------------------------------------------------------
    def _connect(self) -> _Connection:
        """Open the URL and decode up to the first frame; SourceError with one line if that fails."""
        import av

        # errors are raised after their except blocks (see _Failure): a failed attempt must not keep its
        # container and decoder alive in a cycle through the exception it caught
        reason = None
        try:
            container = av.open(self.url, options=self.av_options,
                                timeout=(self._open_budget, self.read_timeout), metadata_errors="ignore")
        except (av.error.FFmpegError, OSError) as exc:
            reason = _reason(exc, self.open_timeout, udp=self._udp)
        if reason is not None:
            raise SourceError(f"{self._display}: cannot open stream ({reason})")
        try:
            return self._first_frame(container)
        except (av.error.FFmpegError, OSError) as exc:
            reason = _reason(exc, self.read_timeout, udp=self._udp)
        except BaseException:
            container.close()
            raise
        container.close()
        raise SourceError(f"{self._display}: stream delivered no frame ({reason})")

    def _first_frame(self, container: Any) -> _Connection:
        """The connection of ``container`` with its first decoded frame held; SourceError when it has none."""
        import av

        if not container.streams.video:
            raise SourceError(f"{self._display}: stream has no video")
        stream = container.streams.video[0]
        connection = _Connection(container, stream, container.demux(stream))
        deadline = time.monotonic() + self.open_timeout + self.read_timeout
        for packet in connection.packets:
            if packet.size == 0 and packet.dts is None:
                break
            try:
                connection.held.extend(stream.decode(packet))
            except av.error.InvalidDataError:
                if time.monotonic() > deadline:
                    raise SourceError(f"{self._display}: no decodable frame within "
                                      f"{self.open_timeout + self.read_timeout:g} s") from None
                continue  # joined mid-GOP: wait for a decodable picture
            if connection.held:
                return connection
        raise SourceError(f"{self._display}: stream ended before its first frame")

    def _release(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    # -- reading -----------------------------------------------------------------------------------------
    def _decoded(self, connection: _Connection, stop: threading.Event,
                 outcome: list[_Failure | None]) -> Iterator[Any]:
        """PyAV frames of one connection, decoder drained at the end; ``outcome[0]`` = why it ended early."""
        import av

        yield from connection.held
        connection.held.clear()
        consecutive = 0
        try:
            for packet in connection.packets:
                if stop.is_set():
                    return
                try:
                    frames = connection.stream.decode(packet)
                    consecutive = 0
                except av.error.InvalidDataError as exc:
                    self._stats["decode_errors"] += 1
                    consecutive += 1
                    if consecutive > MAX_CONSECUTIVE_DECODE_ERRORS:
                        raise SourceError(f"{self.name}: {consecutive} packets in a row failed to decode "
                                          f"({_reason(exc, self.read_timeout, udp=self._udp)})") from None
                    continue
                yield from frames
        except (av.error.FFmpegError, OSError, SourceError) as exc:
            outcome[0] = _Failure(_reason(exc, self.read_timeout, udp=self._udp),
                                  not self._udp and _is_end_of_body(exc))
        try:  # frames still inside the decoder (reordering delay) belong to the stream too
            yield from connection.stream.decode(None)
        except (av.error.FFmpegError, OSError):
            pass

    def _produce(self, stop: threading.Event) -> Iterator[Frame]:
        sel = self.selection
        step = 1.0 / self.info.fps / sel.stride if self.info.fps else 1.0 / 30.0
        clock = SessionClock(step, wall_gaps=self.live)
        position = 0
        connection = self._connection
        while connection is not None and not stop.is_set():
            self._connection = connection
            clock.new_connection()
            outcome: list[_Failure | None] = [None]
            try:
                for frame in self._decoded(connection, stop, outcome):
                    seconds = None if frame.pts is None else \
                        float(frame.pts * (frame.time_base or Fraction(1, 90000)))
                    timestamp, jump = clock.stamp(seconds)
                    if jump is not None:
                        self._stats["discontinuities"] += 1
                        self._event("discontinuity", position, timestamp, pts_jump_s=round(jump, 6))
                        LOG.info("%s: timestamps jumped %+.3f s at frame %d; re-based", self.name, jump, position)
                    if sel.wanted(position):
                        yield Frame(position, timestamp, np.ascontiguousarray(frame.to_ndarray(format="rgb24")))
                    position += 1
                    last = self.stop_position
                    if (last is not None and position > last) or stop.is_set():
                        return
            finally:
                connection.close()
                self._connection = None
            if stop.is_set():
                return  # the consumer stopped the run (Ctrl-C, --max-frames, close): a normal end, not an outage
            failure = outcome[0]
            if not self.live and (failure is None or failure.end_of_body):
                return  # a finite stream ended (FFmpeg reports an HTTP body without length ending as EIO)
            what = f"broke ({failure.reason})" if failure is not None else "ended"
            LOG.warning("%s: stream %s after %d frames; reconnecting", self.name, what, position)
            began = time.monotonic()
            connection = reconnect(self._connect, self.reconnect_policy, stop, self.name)
            if connection is not None:
                self._stats["reconnects"] += 1
                self._event("reconnect", position, clock.last, outage_s=round(time.monotonic() - began, 3),
                            cause=what)
            elif not stop.is_set():
                self._stats["stream_lost"] = 1
                self._event("stream_lost", position, clock.last, cause=what)
                LOG.warning("%s: stream lost: could not reconnect (%d attempts, %.0f s budget); ending after "
                            "%d frames", self.name, self.reconnect_policy.max_attempts,
                            self.reconnect_policy.max_total_s, position)

    def _event(self, kind: str, position: int, timestamp: float, **details: Any) -> None:
        """Remember a reconnect / discontinuity for run.json (the first MAX_EVENTS; the stats count all)."""
        if len(self._events) < MAX_EVENTS:
            self._events.append({"event": kind, "frame": position, "timestamp": round(timestamp, 6), **details})

    @property
    def events(self) -> list[dict[str, Any]]:
        """Reconnects, timestamp discontinuities and a lost stream, in order (at most MAX_EVENTS kept)."""
        return list(self._events)


class SessionClock:
    """Turns each connection's pts into one strictly increasing session timeline.

    Why: a stream's pts restart when its server restarts (a new MPEG-TS muxer starts near 1.4 s), wrap around
    (MPEG-TS pts are 33-bit: every 26.5 h) or jump when a camera resets. Downstream, the video encoder and
    every output need increasing times. Rule: within a run of continuous pts, timestamp = offset + (pts -
    origin), so real timing (variable frame rate, dropped frames) is kept. The timeline is re-based (a new
    origin at the next frame slot) on a new connection, on a pts that goes backwards, and on a forward
    jump above ``max_jump_s``; an equal pts is not a jump, it is moved a millisecond-step later (a restarted source far ahead). On a live source the slot is placed after the
    wall-clock time that really passed since the last frame (an outage shows as the gap it was); reading a
    recording as fast as possible it is one frame step.
    """

    def __init__(self, step: float, *, wall_gaps: bool, max_jump_s: float = 10.0) -> None:
        self.step = step
        self.wall_gaps = wall_gaps
        self.max_jump_s = max_jump_s
        self.last = -step  # so the first frame of the session is stamped 0.0
        self._origin: float | None = None
        self._offset = 0.0
        self._prev_pts: float | None = None
        self._last_wall: float | None = None

    def new_connection(self) -> None:
        self._origin = None
        self._prev_pts = None

    def _next_slot(self, now: float) -> float:
        gap = self.step
        if self.wall_gaps and self._last_wall is not None:
            gap = max(gap, now - self._last_wall)
        return self.last + gap

    def stamp(self, pts_seconds: float | None) -> tuple[float, float | None]:
        """(session timestamp, pts jump in seconds when this frame re-based a running connection, else None)."""
        now = time.monotonic()
        jump: float | None = None
        if pts_seconds is None:
            timestamp = self.last + self.step
        else:
            if self._origin is None:
                self._origin, self._offset = pts_seconds, self._next_slot(now)
            elif self._prev_pts is not None and not 0 <= pts_seconds - self._prev_pts <= self.max_jump_s:
                jump = pts_seconds - self._prev_pts
                self._origin, self._offset = pts_seconds, self._next_slot(now)
            self._prev_pts = pts_seconds
            timestamp = self._offset + pts_seconds - self._origin
        if timestamp <= self.last:  # equal pts, or a frame without pts after a re-base: never go back
            timestamp = self.last + self.step / 1000.0
        self.last = timestamp
        self._last_wall = now
        return timestamp, jump


def _is_end_of_body(exc: BaseException) -> bool:
    """EOF-like errors: the server closed the connection (EIO from FFmpeg's http/tcp protocols)."""
    import errno

    return isinstance(exc, OSError) and getattr(exc, "errno", None) == errno.EIO
