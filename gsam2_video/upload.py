"""Frames to the GPU ahead of time: frame t+1 is copied on a side stream while frame t computes.

Why: decoding already runs on the source's prefetch thread; without this the host->device copy of each
frame would sit on the compute stream in front of that frame's image encoder. With a one-frame lookahead
the copy (from pinned memory, so it is a true asynchronous DMA) overlaps the previous frame's models, and
the compute stream only waits on the copy's event. On CPU devices frames pass through untouched.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from .types import Frame


def upload_small(host: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A small host tensor (ids, lookup tables, scores) on ``device`` without waiting for the GPU.

    Why: ``torch.tensor(values, device="cuda")`` copies from pageable memory and then synchronises the
    stream, i.e. waits for every kernel queued so far: one hidden host-GPU sync per call on the per-frame
    path. Pinned memory with ``non_blocking`` enqueues the copy instead (the pinned buffer lives until the
    copy is done: the caching host allocator records the stream use).
    """
    if device.type == "cuda":
        return host.pin_memory().to(device, non_blocking=True)
    return host.to(device)


def _upload(image: np.ndarray, device: torch.device,
            stream: torch.cuda.Stream) -> tuple[torch.Tensor, torch.cuda.Event]:
    host = torch.from_numpy(np.ascontiguousarray(image)).pin_memory()
    with torch.cuda.stream(stream):
        on_device = host.to(device, non_blocking=True)
        done = torch.cuda.Event()
        done.record(stream)
    return on_device, done


def frames_on_device(frames: Iterator[Frame], device: torch.device) -> Iterator[tuple[Frame, torch.Tensor | None]]:
    """(frame, its uint8 H x W x 3 copy on ``device`` or None on CPU), in order, one frame uploaded ahead."""
    if device.type != "cuda":
        for frame in frames:
            yield frame, None
        return
    if device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    stream = torch.cuda.Stream(device)
    nxt = next(frames, None)
    ahead = _upload(nxt.image, device, stream) if nxt is not None else None
    while nxt is not None and ahead is not None:
        frame, (image, done) = nxt, ahead
        nxt = next(frames, None)
        ahead = _upload(nxt.image, device, stream) if nxt is not None else None
        compute = torch.cuda.current_stream(device)
        compute.wait_event(done)
        image.record_stream(compute)  # allocated on the side stream, used on the compute stream
        yield frame, image
