"""Hand-off between a reader thread and the consumer: a bounded FIFO, or a newest-only slot for live input.

Why a small class of its own instead of ``queue.Queue``: the reader must (1) block while the consumer is
busy (offline: backpressure, nothing lost), or (2) overwrite the unread frame (live: latency stays one
frame, replaced frames are counted as dropped), and in both cases (3) wake up at once when the consumer
closes the source, and (4) carry the reader's exception to the consumer so it is re-raised there.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Generic, TypeVar

T = TypeVar("T")


class ChannelClosed(Exception):
    """Raised in the reader when the consumer has closed the channel (the reader should just return)."""


class Channel(Generic[T]):
    """Single-producer single-consumer channel.

    ``latest=False``: FIFO holding at most ``capacity`` items; ``put`` blocks while full.
    ``latest=True``: holds at most one item; ``put`` replaces an unread item and counts it in ``dropped``.
    """

    def __init__(self, capacity: int = 8, latest: bool = False) -> None:
        if capacity < 1:
            raise ValueError("channel capacity must be >= 1")
        self._items: deque[T] = deque()
        self._capacity = 1 if latest else capacity
        self._latest = latest
        self._cond = threading.Condition()
        self._finished = False  # producer is done (normally or with an error)
        self._closed = False  # consumer is gone
        self._error: BaseException | None = None
        self.dropped = 0

    def put(self, item: T) -> None:
        """Producer side. Raises ChannelClosed once the consumer closed the channel."""
        with self._cond:
            if self._latest:
                if self._closed:
                    raise ChannelClosed
                if self._items:
                    self._items.popleft()
                    self.dropped += 1
            else:
                while len(self._items) >= self._capacity and not self._closed:
                    self._cond.wait()
                if self._closed:
                    raise ChannelClosed
            self._items.append(item)
            self._cond.notify_all()

    def finish(self, error: BaseException | None = None) -> None:
        """Producer side: no more items; ``error`` (if any) is raised in the consumer after the queued items."""
        with self._cond:
            self._finished = True
            self._error = error
            self._cond.notify_all()

    def get(self) -> tuple[bool, T | None]:
        """Consumer side: ``(True, item)``, or ``(False, None)`` at the end. Re-raises the producer's error."""
        with self._cond:
            while not self._items and not self._finished and not self._closed:
                self._cond.wait()
            if self._items:
                item = self._items.popleft()
                self._cond.notify_all()
                return True, item
            if self._error is not None:
                err, self._error = self._error, None
                raise err
            return False, None

    def close(self) -> None:
        """Consumer side: discard queued items and unblock the producer."""
        with self._cond:
            self._closed = True
            self._items.clear()
            self._cond.notify_all()
