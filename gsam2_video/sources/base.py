"""The one interface every source implements, and the reader thread that overlaps decoding with compute.

A subclass only knows how to produce frames (``_produce``: a generator run on a background thread); this
base owns the thread, the hand-off :class:`Channel` (bounded FIFO offline, newest-only slot live), the
``max_frames`` cut, statistics, and a prompt, idempotent ``close()``. Exceptions raised by the reader are
re-raised in the consumer, after the frames queued before them.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TypeVar

from ..errors import SourceError
from ..types import Frame, VideoInfo
from .channel import Channel, ChannelClosed

LOG = logging.getLogger("gsam2_video")

JOIN_TIMEOUT_S = 5.0
SourceT = TypeVar("SourceT", bound="FrameSource")


@dataclass(frozen=True)
class Selection:
    """Which decoded positions become frames: ``start``, then every ``stride``-th, at most ``max_frames``."""

    start: int = 0
    stride: int = 1
    max_frames: int | None = None

    def __post_init__(self) -> None:
        for name, value, low in (("start", self.start, 0), ("stride", self.stride, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise SourceError(f"{name} must be an integer >= {low}, got {value!r}")
        if self.max_frames is not None and (isinstance(self.max_frames, bool)
                                            or not isinstance(self.max_frames, int) or self.max_frames < 1):
            raise SourceError(f"max_frames must be an integer >= 1 or None, got {self.max_frames!r}")

    def wanted(self, position: int) -> bool:
        return position >= self.start and (position - self.start) % self.stride == 0

    @property
    def last_position(self) -> int | None:
        """Position of the last frame wanted, when ``max_frames`` bounds it (decoders stop after it)."""
        if self.max_frames is None:
            return None
        return self.start + (self.max_frames - 1) * self.stride

    def count(self, total: int | None) -> int | None:
        """How many frames a source of ``total`` positions yields under this selection (None if unknown)."""
        if total is None:
            return None
        n = max(0, math.ceil((total - self.start) / self.stride))
        return n if self.max_frames is None else min(n, self.max_frames)


def new_stats() -> dict[str, int]:
    return {"frames_read": 0, "frames_yielded": 0, "frames_dropped": 0, "frames_missing": 0,
            "reconnects": 0, "discontinuities": 0, "decode_errors": 0, "stream_lost": 0}


class FrameSource(ABC):
    """Iterable of :class:`~gsam2_video.types.Frame`; use as ``with open_source(...) as src: for f in src``.

    ``stats`` keys: frames_read (frames the reader produced after start/stride), frames_yielded (handed to
    the consumer), frames_dropped (live: replaced before being consumed), frames_missing (frames a file
    declares but that did not decode), reconnects, discontinuities (timestamp jumps a stream re-based),
    decode_errors, stream_lost (1 when a live input went away
    and could not be re-opened: iteration ended early).
    """

    def __init__(self, info: VideoInfo, selection: Selection, *, live: bool, prefetch: int,
                 paced: bool = False) -> None:
        if isinstance(prefetch, bool) or not isinstance(prefetch, int) or prefetch < 0:
            raise SourceError(f"{info.name}: prefetch must be an integer >= 0, got {prefetch!r}")
        self._info = info
        self.selection = selection
        self.live = live
        self.paced = paced  # replay a recorded source on its own clock (live simulation of a file)
        self.prefetch = prefetch
        self._stats = new_stats()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._channel: Channel[Frame] | None = None
        self._thread: threading.Thread | None = None
        self._closed = False
        self._iterating = False
        self._join_timeout = JOIN_TIMEOUT_S

    # -- what subclasses provide -------------------------------------------------------------------------
    @abstractmethod
    def _produce(self, stop: threading.Event) -> Iterator[Frame]:
        """Yield selected frames in order until the input ends or ``stop`` is set (checked per frame)."""

    def _release(self) -> None:
        """Free handles held since opening (called once, from close())."""

    # -- public interface --------------------------------------------------------------------------------
    @property
    def info(self) -> VideoInfo:
        return self._info

    @property
    def stats(self) -> dict[str, int]:
        stats = dict(self._stats)
        if self._channel is not None:
            stats["frames_dropped"] = self._channel.dropped
        return stats

    @property
    def stop_position(self) -> int | None:
        """Last position a reader must produce. Offline that is where ``max_frames`` ends; live, frames may
        be dropped, so the reader runs on and the consumer side counts ``max_frames`` delivered frames."""
        return None if self.live else self.selection.last_position

    @property
    def name(self) -> str:
        return self._info.name

    def __enter__(self: SourceT) -> SourceT:  # noqa: PYI019 - typing.Self needs Python 3.11
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:  # best effort: never leave a reader thread behind
        try:
            self.close()
        except Exception:  # noqa: BLE001, S110 - interpreter shutdown; nothing left to report to
            pass

    def __iter__(self) -> Iterator[Frame]:
        with self._lock:
            if self._closed:
                raise SourceError(f"{self.name}: source is closed")
            if self._iterating or self._thread is not None:
                raise SourceError(f"{self.name}: a source can be iterated only once; open it again")
            self._iterating = True
        return self._frames()

    def close(self) -> None:
        """Stop the reader thread and release the input. Safe to call any number of times."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._stop.set()
        if self._channel is not None:
            self._channel.close()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(self._join_timeout)
            if thread.is_alive():  # it still owns the handles; it releases them itself when it returns
                LOG.warning("%s: reader thread did not stop within %.0f s", self.name, self._join_timeout)
                return
        self._release()

    # -- machinery ---------------------------------------------------------------------------------------
    def _frames(self) -> Iterator[Frame]:
        limit = self.selection.max_frames
        if limit is not None and limit <= 0:
            return
        try:
            if self.prefetch == 0 and not self.live:
                source = self._produce(self._stop)
                try:
                    for frame in source:
                        self._stats["frames_read"] += 1
                        self._stats["frames_yielded"] += 1
                        yield frame
                        if limit is not None and self._stats["frames_yielded"] >= limit:
                            break
                finally:
                    source.close()
                return
            channel: Channel[Frame] = Channel(max(self.prefetch, 1), latest=self.live)
            self._channel = channel
            self._thread = threading.Thread(target=self._run_reader, args=(channel,),
                                            name=f"gsam2-source:{self.name}", daemon=True)
            self._thread.start()
            while True:
                ok, frame = channel.get()
                if not ok:
                    return
                self._stats["frames_yielded"] += 1
                yield frame  # type: ignore[misc]
                if limit is not None and self._stats["frames_yielded"] >= limit:
                    return
        finally:
            self.close()

    def _run_reader(self, channel: Channel[Frame]) -> None:
        error: BaseException | None = None
        source = self._produce(self._stop)
        origin: tuple[float, float] | None = None  # (wall clock, timestamp) of the first frame when paced
        try:
            for frame in source:
                if self.paced:
                    now = time.monotonic()
                    origin = origin or (now, frame.timestamp)
                    if self._stop.wait(max(0.0, origin[0] + frame.timestamp - origin[1] - now)):
                        return
                self._stats["frames_read"] += 1
                channel.put(frame)
        except ChannelClosed:
            pass
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, which re-raises it
            error = exc
        finally:
            try:
                source.close()
            except BaseException as exc:  # noqa: BLE001 - generator cleanup failing; surfaced the same way
                error = error or exc
            channel.finish(error)
