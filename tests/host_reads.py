"""Count every read of tensor data on the host: what would be a device-to-host copy and a sync on a GPU.

On CUDA each of these entry points blocks the host until the GPU has caught up: ``Tensor.numpy / cpu /
item / tolist``, ``__bool__ / __int__ / __float__ / __index__`` (an ``if tensor:`` or ``int(tensor)``),
``__array__`` (``np.asarray(tensor)``), and ``torch.equal / nonzero / unique / masked_select`` or
boolean-mask indexing (whose result size needs the data). On the CPU the same calls are cheap, but they
are the same calls, so counting them on the CPU path counts what a GPU run would do. Reads inside torch
reference ops that run as CUDA kernels on a GPU (connected components for hole filling, mask IoU) are not
counted: on CUDA those ops read nothing back (their kernels are checked by ``pytest -m gpu``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

_READS = ("numpy", "cpu", "item", "tolist", "__bool__", "__int__", "__float__", "__index__", "__array__",
          "nonzero", "unique")
# torch functions whose result size or value needs the data on the host (a sync on CUDA)
_FUNCTIONS = ("equal", "nonzero", "unique", "masked_select", "argwhere")
_KERNEL_OPS = (("gsam2_video.ops.connected_components", "connected_components_reference"),
               ("gsam2_video.ops.mask_iou", "overlap_counts_reference"))


@dataclass
class HostReads:
    """Reads seen so far: (entry point, bytes read) in call order; ``paused`` > 0 inside kernel ops."""

    calls: list[tuple[str, int]] = field(default_factory=list)
    paused: int = 0
    fetched: set[int] = field(default_factory=set)  # storages a counted cpu() returned

    def mark(self) -> int:
        return len(self.calls)

    def since(self, mark: int) -> list[tuple[str, int]]:
        return self.calls[mark:]


def reads_per_result(run: Any, reads: HostReads) -> Iterator[tuple[Any, list[tuple[str, int]]]]:
    """Iterate a tracking run, yielding each result with the host reads made while producing it."""
    it = iter(run)
    while True:
        mark = reads.mark()
        result = next(it, None)
        if result is None:
            return
        yield result, reads.since(mark)


@contextlib.contextmanager
def count_host_reads() -> Iterator[HostReads]:
    """Patch torch's host-read entry points for the duration of the block."""
    import importlib

    reads = HostReads()
    originals: list[tuple[Any, str, Any]] = []

    def patch(owner: Any, name: str, wrapper: Any) -> None:
        originals.append((owner, name, getattr(owner, name)))
        setattr(owner, name, wrapper)

    for name in _READS:
        orig = getattr(torch.Tensor, name)

        def wrapped(self: torch.Tensor, *a: Any, _orig: Any = orig, _name: str = name, **k: Any) -> Any:
            # x.cpu().numpy() is one read: numpy() of the tensor a counted cpu() returned is host data already
            fetched = _name == "numpy" and self.data_ptr() in reads.fetched
            if not reads.paused and not fetched:
                reads.calls.append((_name, self.numel() * self.element_size()))
            reads.paused += 1  # a read calling another read counts once
            try:
                out = _orig(self, *a, **k)
            finally:
                reads.paused -= 1
            if _name == "cpu" and isinstance(out, torch.Tensor):
                reads.fetched.add(out.data_ptr())
            return out

        patch(torch.Tensor, name, wrapped)

    for fn_name in _FUNCTIONS:
        f = getattr(torch, fn_name)

        def counted(*a: Any, _f: Any = f, _name: str = fn_name, **k: Any) -> Any:
            if not reads.paused:
                reads.calls.append((f"torch.{_name}", 0))
            reads.paused += 1
            try:
                return _f(*a, **k)
            finally:
                reads.paused -= 1

        patch(torch, fn_name, counted)

    getitem = torch.Tensor.__getitem__

    def indexed(self: torch.Tensor, index: Any) -> Any:
        parts = index if isinstance(index, tuple) else (index,)
        if not reads.paused and any(isinstance(p, torch.Tensor) and p.dtype == torch.bool for p in parts):
            reads.calls.append(("bool-index", 0))  # the result's size depends on the data
        return getitem(self, index)

    patch(torch.Tensor, "__getitem__", indexed)

    for module_name, fn_name in _KERNEL_OPS:
        module = importlib.import_module(module_name)
        fn = getattr(module, fn_name)

        def quiet(*a: Any, _fn: Any = fn, **k: Any) -> Any:
            reads.paused += 1
            try:
                return _fn(*a, **k)
            finally:
                reads.paused -= 1

        patch(module, fn_name, quiet)
    try:
        yield reads
    finally:
        for owner, name, orig in reversed(originals):
            setattr(owner, name, orig)
