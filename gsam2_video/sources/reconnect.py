"""How a live input is re-opened after it drops: exponential backoff, bounded in attempts and in time.

Kept apart from the readers so the webcam and the network stream follow one policy and so the policy can be
tested on its own. Waiting uses the source's stop event, so closing a source interrupts a backoff at once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

from ..errors import SourceError

LOG = logging.getLogger("gsam2_video")
T = TypeVar("T")


@dataclass(frozen=True)
class ReconnectPolicy:
    """``max_attempts`` re-opens per outage, waiting initial_delay * factor**k (capped at ``max_delay``)
    before attempt k, and giving up once ``max_total_s`` has passed since the outage began. Set
    ``max_attempts=0`` to never reconnect."""

    max_attempts: int = 8
    initial_delay: float = 0.5
    factor: float = 2.0
    max_delay: float = 10.0
    max_total_s: float = 60.0

    def __post_init__(self) -> None:
        if self.max_attempts < 0 or self.initial_delay < 0 or self.factor < 1 or self.max_delay < 0 \
                or self.max_total_s < 0:
            raise SourceError(f"invalid reconnect policy {self}: counts and delays must be >= 0, factor >= 1")

    def delays(self) -> Iterator[float]:
        """The wait before each attempt, in order."""
        delay = self.initial_delay
        for _ in range(self.max_attempts):
            yield min(delay, self.max_delay)
            delay *= self.factor


def reconnect(open_fn: Callable[[], T], policy: ReconnectPolicy, stop: threading.Event, name: str) -> T | None:
    """Call ``open_fn`` with backoff until it succeeds; None when attempts/time run out or ``stop`` is set.

    ``open_fn`` signals failure by raising SourceError (or OSError); other exceptions propagate.
    """
    began = time.monotonic()
    attempt = 0
    for delay in policy.delays():
        remaining = policy.max_total_s - (time.monotonic() - began)
        if remaining <= 0 or stop.wait(min(delay, remaining)):
            return None
        attempt += 1
        try:
            result = open_fn()
        except (SourceError, OSError) as exc:
            LOG.info("%s: reconnect attempt %d/%d failed: %s", name, attempt, policy.max_attempts, exc)
            continue
        LOG.info("%s: reconnected after %d attempt(s)", name, attempt)
        return result
    return None
