"""Decide per call whether an op runs its CuPy kernel or its torch reference, and record which one ran.

The kernel path is taken only when every tensor lives on a CUDA device, CuPy imports, and the user has not
set ``GSAM2_FORCE_TORCH=1``. Keeping the decision in one function means every op falls back the same way
and the reference stays the single oracle for CPU runs and tests.

A run can open a :class:`KernelRecord` (``with kernel_record() as record:``): every dispatching op then
counts, per op name, how many calls ran on a kernel and how many on torch, and ``record.report()`` goes to
run.json. The record lives in a ``ContextVar``, so two runs in one process (threads, or iterators
interleaved) each count their own calls; a thread that runs ops for a run (the sink writer) must run in a
copy of the run's context (``contextvars.copy_context().run``), as threads do not inherit it.

A CUDA device without CuPy is the one silent slowdown a user can fix: it logs one warning naming the
``cuda`` extra, once per record (so once per run), or once per call site through ``warnings`` when no
record is open.
"""

from __future__ import annotations

import logging
import os
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from importlib.util import find_spec

import torch

FORCE_TORCH_ENV = "GSAM2_FORCE_TORCH"
KERNEL = "kernel"
TORCH = "torch"
MISSING_CUPY_WARNING = ("CUDA device without CuPy: gsam2-video's CUDA kernels are off and their ops run the "
                        "slower torch references; install them with: pip install 'gsam2-video[cuda]'")

log = logging.getLogger("gsam2_video")


def force_torch() -> bool:
    """True when the environment asks for the torch reference path everywhere."""
    return os.environ.get(FORCE_TORCH_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


def cupy_available() -> bool:
    """True when CuPy can be imported (it imports even without a GPU)."""
    return find_spec("cupy") is not None


def decide(on_cuda: bool, cupy: bool, forced: bool) -> tuple[bool, bool]:
    """(run the kernel?, warn that CuPy is missing?) for inputs on CUDA or not, with or without CuPy."""
    if not on_cuda or forced:
        return False, False
    return cupy, not cupy


def use_kernel(*tensors: torch.Tensor) -> bool:
    """Whether the CUDA kernel should handle these tensors (the decision only: nothing is recorded)."""
    if not tensors or not all(isinstance(t, torch.Tensor) and t.is_cuda for t in tensors):
        return False
    return decide(True, cupy_available(), force_torch())[0]


class KernelRecord:
    """Per-op counts of kernel and torch calls during one run (thread-safe; see the module docstring)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, dict[str, int]] = {}
        self._warned = False

    def add(self, op: str, kernel: bool) -> None:
        """Count one call of ``op`` on the kernel (True) or the torch reference (False)."""
        with self._lock:
            counts = self._counts.setdefault(op, {KERNEL: 0, TORCH: 0})
            counts[KERNEL if kernel else TORCH] += 1

    def claim_warning(self) -> bool:
        """True the first time it is called on this record: the caller then logs the warning."""
        with self._lock:
            first, self._warned = not self._warned, True
            return first

    def report(self) -> dict[str, dict[str, int]]:
        """``{op: {"kernel": n, "torch": n}}`` for every op called so far, sorted by op name."""
        with self._lock:
            return {op: dict(c) for op, c in sorted(self._counts.items())}


_RECORD: ContextVar[KernelRecord | None] = ContextVar("gsam2_kernel_record", default=None)


@contextmanager
def kernel_record() -> Iterator[KernelRecord]:
    """Open a record for the duration of a run: ``with kernel_record() as r: ...; r.report()``."""
    record = KernelRecord()
    token = _RECORD.set(record)
    try:
        yield record
    finally:
        _RECORD.reset(token)


def current_record() -> KernelRecord | None:
    """The record of the run this code runs in, if one is open."""
    return _RECORD.get()


def warn_missing_cupy(record: KernelRecord | None) -> None:
    """The missing-CuPy warning: one log line per record, or a deduplicated ``warnings`` entry without one."""
    if record is None:
        warnings.warn(MISSING_CUPY_WARNING, RuntimeWarning, stacklevel=3)
    elif record.claim_warning():
        log.warning(MISSING_CUPY_WARNING)


def record_call(op: str, kernel: bool) -> None:
    """Count one call of ``op`` in the open record, if any (for ops that decide without :func:`route`)."""
    record = _RECORD.get()
    if record is not None:
        record.add(op, kernel)


def route(op: str, on_cuda: bool) -> bool:
    """Decide kernel or torch for one call of ``op`` whose data is (``on_cuda``) or is not on CUDA; record it.

    Logs the missing-CuPy warning (once per run) when the data is on CUDA and CuPy is missing.
    """
    forced = force_torch()
    kernel, missing = decide(on_cuda, cupy_available() if on_cuda and not forced else False, forced)
    record = _RECORD.get()
    if record is not None:
        record.add(op, kernel)
    if missing:
        warn_missing_cupy(record)
    return kernel


def dispatch(op: str, *tensors: torch.Tensor) -> bool:
    """:func:`route` for tensors: on CUDA when every one of them is a CUDA tensor."""
    on_cuda = bool(tensors) and all(isinstance(t, torch.Tensor) and t.is_cuda for t in tensors)
    return route(op, on_cuda)
