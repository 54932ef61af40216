"""AsyncWriter: background threads feed every sink, so PNG/H.264/RLE encoding overlaps model compute.

Parallel sinks: a worker thread takes each result from the queue, builds the frame's shared
:class:`~.base.FrameView` and hands it to every sink at once, one thread per sink ("lanes"), then waits for
all of them before taking the next frame. Each sink therefore still sees every frame in order, from one
thread, and a frame costs the time of the slowest sink instead of the sum of all of them: drawing and
H.264 encoding (OpenCV, FFmpeg), PNG compression (zlib in Pillow) and most of the label-map work (numpy,
OpenCV) release the GIL, so on a multi-core machine the sinks run side by side. The shared derivations
(label map, boxes, RLE) are computed once, under the view's lock, by the first sink that asks. Waiting for
the frame to finish everywhere keeps the queue's meaning unchanged: at most ``max_queue`` results wait,
plus the one being written. ``parallel=False`` (or a single sink) runs every sink on the worker thread,
one after the other.

Why a bounded queue: results carry full-size masks (and the RGB frame for the video sink). If the writers
fall behind, an unbounded queue would grow without limit; with ``max_queue`` slots, :meth:`AsyncWriter.write`
blocks once the queue is full (back-pressure) and memory stays O(max_queue frames). The time the pipeline
spends blocked is reported as ``blocked_seconds`` so a slow disk shows up in run.json.

Errors: the first exception raised by a sink stops all writing; later :meth:`write` calls raise it at once (so
the pipeline stops early) and :meth:`close` re-raises it after aborting every sink. An ``OSError`` (disk full,
permission) is re-raised as :class:`~gsam2_video.errors.OutputError` naming the sink. Used as a context
manager, an exception in the ``with`` body aborts the sinks (no final-named output appears), a clean exit
closes them.

After a failure (a sink's own error, or one elsewhere in the run) :meth:`finish` keeps what was done instead:
it closes every sink for the frames written so far and aborts only the outputs that cannot be finished, so a
failed run still leaves complete files for every finished frame (``abort`` is for "publish nothing").
"""

from __future__ import annotations

import contextvars
import logging
import queue
import threading
import time
from collections.abc import Iterable
from types import TracebackType

from ..errors import ConfigError, OutputError
from ..types import FrameResult, VideoInfo
from .base import FrameView, Sink

log = logging.getLogger(__name__)

_STOP = object()
_POLL_SECONDS = 0.05


def _as_output_error(sink: Sink, err: BaseException) -> BaseException:
    if isinstance(err, OSError) and not isinstance(err, OutputError):
        wrapped = OutputError(f"{sink.kind} output ({', '.join(sink.outputs)}): {err.strerror or err}")
        wrapped.__cause__ = err
        return wrapped
    return err


class _Lane:
    """One sink's thread: writes the views it is handed, in order, and reports each frame done."""

    def __init__(self, sink: Sink, writer: AsyncWriter) -> None:
        self.sink = sink
        self._writer = writer
        self._inbox: queue.Queue = queue.Queue(maxsize=1)
        # every writer thread runs in a copy of the opener's context, so the run's kernel record counts its ops
        self.thread = threading.Thread(target=contextvars.copy_context().run, args=(self._run,),
                                       name=f"gsam2-writer:{sink.kind}", daemon=True)

    def submit(self, item: object) -> None:
        self._inbox.put(item)

    def _run(self) -> None:
        while True:
            item = self._inbox.get()
            if item is _STOP:
                return
            assert isinstance(item, FrameView)
            try:
                self._writer._write_one(self.sink, item)
            finally:
                self._writer._lane_done.release()


class AsyncWriter:
    """Runs ``sinks`` on background threads behind a queue of at most ``max_queue`` results.

    ``parallel`` (default): with several sinks each runs on its own thread and a frame is written by all of
    them at once (see the module docstring); False writes them one after the other on one thread.
    """

    def __init__(self, sinks: Iterable[Sink], max_queue: int = 32, *, parallel: bool = True) -> None:
        if max_queue < 1:
            raise ConfigError(f"writer queue size must be >= 1, got {max_queue}")
        self.sinks: list[Sink] = list(sinks)
        self.max_queue = max_queue
        self.parallel = parallel and len(self.sinks) > 1
        self._lanes: list[_Lane] = []
        self._lane_done = threading.Semaphore(0)
        self._error_lock = threading.Lock()
        self._queue: queue.Queue = queue.Queue(maxsize=max_queue)
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._discarding = threading.Event()
        self._state = "new"  # new -> open -> closed | aborted
        self.frames_written = 0
        self.blocked_seconds = 0.0
        self.sink_seconds: dict[str, float] = {s.kind: 0.0 for s in self.sinks}

    @property
    def needs_image(self) -> bool:
        """True when some sink draws on the frame, so results must carry ``image``."""
        return any(s.needs_image for s in self.sinks)

    @property
    def outputs(self) -> list[str]:
        return [p for s in self.sinks for p in s.outputs]

    @property
    def queue_depth(self) -> int:
        return self._queue.qsize()

    # -- lifecycle -------------------------------------------------------------------------------------------
    def open(self, info: VideoInfo, categories: list[str]) -> None:
        """Open every sink in the caller's thread (so a bad output fails before any frame), then start."""
        if self._state != "new":
            raise OutputError(f"writer cannot be opened twice (state: {self._state})")
        opened: list[Sink] = []
        for sink in self.sinks:
            try:
                sink.open(info, list(categories))
            except BaseException as err:
                for done in opened:
                    done.abort()
                sink.abort()
                self._state = "aborted"
                wrapped = _as_output_error(sink, err)
                if wrapped is err:
                    raise
                raise wrapped from err
            opened.append(sink)
        self._state = "open"
        if self.parallel:
            self._lanes = [_Lane(sink, self) for sink in self.sinks]
            for lane in self._lanes:
                lane.thread.start()
        self._thread = threading.Thread(target=contextvars.copy_context().run, args=(self._run,),
                                        name="gsam2-writer", daemon=True)
        self._thread.start()

    def write(self, result: FrameResult) -> None:
        """Queue one result; blocks while the queue is full; raises a sink's earlier error at once."""
        if self._state != "open":
            raise OutputError(f"writer is not open (state: {self._state}); call open() first")
        self._raise_if_failed()
        start = time.perf_counter()
        while True:
            try:
                self._queue.put(result, timeout=_POLL_SECONDS)
                break
            except queue.Full:
                self._raise_if_failed()
        self.blocked_seconds += time.perf_counter() - start

    def close(self) -> None:
        """Flush the queue, join the thread, finish every sink; re-raise the first sink error, if any."""
        if self._state != "open":
            return
        self._stop_thread()
        if self._error is not None:
            self._abort_sinks()
            self._state = "aborted"
            raise self._error
        first: BaseException | None = None
        for sink in self.sinks:
            start = time.perf_counter()
            try:
                sink.close()
            except BaseException as err:  # noqa: BLE001 - re-raised below after the other sinks finish
                sink.abort()
                first = first or _as_output_error(sink, err)
            self.sink_seconds[sink.kind] += time.perf_counter() - start
        self._state = "closed"
        if first is not None:
            raise first

    @property
    def error(self) -> BaseException | None:
        """The first sink error (as raised to the caller), or None while every sink is healthy."""
        return self._error

    def finish(self) -> dict[str, str]:
        """Close every sink for the frames written so far, even after a sink error; never raises a sink error.

        Why: a run that fails mid-way (encoder error, disk full, source gone) must not throw away the frames it
        finished. Results still queued are written unless a sink already failed (then the worker skipped them,
        so every kept output ends at the same frame, give or take the one the failing sink was writing). The
        failed sink is closed too when it still can be (a PNG folder keeps its earlier frames, a video its
        earlier packets); an output whose close fails is aborted. Returns ``{output path: reason}`` for the
        outputs that could not be kept.
        """
        if self._state != "open":
            return {}
        self._stop_thread()
        lost: dict[str, str] = {}
        for sink in self.sinks:
            start = time.perf_counter()
            try:
                sink.close()
            except Exception as err:  # noqa: BLE001 - reported per output; the run's own failure matters more
                try:
                    sink.abort()
                except Exception as again:  # noqa: BLE001 - abort is best effort
                    log.debug("aborting %s output failed: %s", sink.kind, again)
                reason = str(_as_output_error(sink, err))
                lost.update({path: reason for path in sink.outputs})
            self.sink_seconds[sink.kind] += time.perf_counter() - start
        self._state = "closed"
        return lost

    def abort(self) -> None:
        """Stop without finishing: queued results are dropped and every sink deletes its partial output."""
        if self._state != "open":
            if self._state == "new":
                self._state = "aborted"
            return
        self._discarding.set()
        self._drain()
        self._stop_thread()
        self._abort_sinks()
        self._state = "aborted"

    def __enter__(self) -> AsyncWriter:  # noqa: PYI034 - typing.Self needs Python 3.11
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    # -- worker ----------------------------------------------------------------------------------------------
    def _run(self) -> None:
        try:
            while True:
                item = self._queue.get()
                if item is _STOP:
                    return
                if self._error is not None or self._discarding.is_set():
                    continue  # keep draining so the producer never blocks on a dead consumer
                view = FrameView(item)
                if self._lanes:
                    for lane in self._lanes:
                        lane.submit(view)
                    for _ in self._lanes:  # every sink finishes this frame before the next one starts
                        self._lane_done.acquire()
                else:
                    for sink in self.sinks:
                        if not self._write_one(sink, view):
                            break
                if self._error is None:
                    self.frames_written += 1
        finally:
            for lane in self._lanes:
                lane.submit(_STOP)

    def _write_one(self, sink: Sink, view: FrameView) -> bool:
        """One sink writes one frame; its time is counted and its error kept (the first one wins)."""
        start = time.perf_counter()
        try:
            sink.write_view(view)
            return True
        except BaseException as err:  # noqa: BLE001 - handed to the caller's thread
            with self._error_lock:
                if self._error is None:
                    self._error = _as_output_error(sink, err)
            return False
        finally:
            self.sink_seconds[sink.kind] += time.perf_counter() - start

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise self._error
        if self._thread is not None and not self._thread.is_alive():
            raise OutputError("writer thread stopped unexpectedly")

    def _stop_thread(self) -> None:
        assert self._thread is not None
        while self._thread.is_alive():
            try:
                self._queue.put(_STOP, timeout=_POLL_SECONDS)
                break
            except queue.Full:
                continue
        self._thread.join()
        for lane in self._lanes:
            lane.thread.join()

    def _drain(self) -> None:
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                return

    def _abort_sinks(self) -> None:
        for sink in self.sinks:
            try:
                sink.abort()
            except Exception as err:  # noqa: BLE001 - abort is best effort; the original error matters
                log.debug("aborting %s output failed: %s", sink.kind, err)
