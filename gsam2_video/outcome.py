"""How a run ended, in one place: completed, interrupted or failed, and why, for run.json and the exit code.

Why a module of its own: ``track`` and the dataset job both promise the same thing to users: a run that
stops early (Ctrl-C, an encoder error, a full disk, a source that dies) keeps every frame it finished, says
in run.json how it ended, prints one line and exits non-zero. Keeping the classification here means both
report a failure the same way (``"status": "failed"``, the reason, the stage it came from, frames done).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .errors import Gsam2Error, OutputError, SourceError

COMPLETED, INTERRUPTED, FAILED = "completed", "interrupted", "failed"


def describe(exc: BaseException) -> str:
    """The one line a user sees: our errors carry their own message; anything else gets its type name."""
    if isinstance(exc, Gsam2Error):
        return str(exc)
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def stage_of(exc: BaseException, output_failed: bool) -> str:
    """Which part of the run failed: ``output`` (a sink), ``source`` (decoding / the stream) or ``tracking``."""
    if output_failed or isinstance(exc, OutputError):
        return "output"
    if isinstance(exc, SourceError):
        return "source"
    return "tracking"


@dataclass
class RunOutcome:
    """The end state of one run. Starts as completed; the first failure wins (later ones are consequences)."""

    status: str = COMPLETED
    reason: str | None = None
    stage: str | None = None
    error_type: str | None = None
    user_error: bool = True  # a Gsam2Error (exit 2) rather than an unexpected exception (exit 1)
    lost_outputs: dict[str, str] = field(default_factory=dict)

    def interrupt(self) -> None:
        if self.status == COMPLETED:
            self.status = INTERRUPTED

    def fail(self, exc: BaseException, *, output_failed: bool = False) -> None:
        """Record ``exc`` as the failure unless an earlier one is already recorded."""
        if self.status == FAILED:
            return
        self.status = FAILED
        self.reason = describe(exc)
        self.stage = stage_of(exc, output_failed)
        self.error_type = type(exc).__name__
        self.user_error = isinstance(exc, Gsam2Error)

    def lose(self, lost: dict[str, str]) -> None:
        """Outputs that could not be finished; losing one makes a completed run a failed one."""
        self.lost_outputs.update(lost)
        if lost and self.status != FAILED:
            first = next(iter(lost.values()))
            self.status, self.reason, self.stage = FAILED, first, "output"
            self.error_type, self.user_error = "OutputError", True

    @property
    def exit_code(self) -> int:
        if self.status == COMPLETED:
            return 0
        if self.status == INTERRUPTED:
            return 130
        return 2 if self.user_error else 1

    def to_json(self, frames_done: int) -> dict[str, Any]:
        """The run.json fields: ``status`` and, for a failure, ``failure`` with the reason and frames done."""
        doc: dict[str, Any] = {"status": self.status, "interrupted": self.status == INTERRUPTED}
        if self.status == FAILED:
            doc["failure"] = {"reason": self.reason, "stage": self.stage, "error": self.error_type,
                              "frames_done": frames_done, "outputs_lost": dict(self.lost_outputs)}
        return doc
