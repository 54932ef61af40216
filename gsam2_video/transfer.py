"""The one device-to-host copy per frame: the label map and the per-track array, in a single transfer.

Why one copy: on a GPU every read of device data on the host is a synchronisation, and per-object video-
size masks are tens of MB per frame at 1080p. The pipeline composes the frame on the device
(:func:`gsam2_video.compose.compose_frame`), packs the label map and the small N x 6 per-track array into
one byte buffer there, and copies that buffer once (into pinned memory, non_blocking, on CUDA). The CPU
path runs the same packing, so the code the tests count is the code a GPU runs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .compose import ComposedFrame
from .ops.rle import unpack_changes

_NUMPY_LABEL = {torch.uint8: np.uint8, torch.uint16: np.uint16, torch.int32: np.int32}


@dataclass
class HostFrame:
    """A composed frame on the host: the label map and per-track arrays (rows follow ``obj_ids``), plus what
    the same copy carried when asked for: the overlay (video output built on the device) and the label
    map's column-major changes (COCO RLE without a host scan of the frame)."""

    obj_ids: list[int]
    labels: np.ndarray  # H x W, uint8 / uint16 / int32
    boxes: np.ndarray  # N x 4 float32 xyxy, x2/y2 = last column/row + 1; zeros when empty
    areas: np.ndarray  # N int64 pixel counts
    scores: np.ndarray  # N float32 object-score logits
    overlay: np.ndarray | None = None  # H x W x 3 uint8 RGB: masks blended and outlined, no boxes or text
    changes: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None  # ops.rle.unpack_changes of ``labels``

    def boxes_by_id(self) -> dict[int, np.ndarray]:
        return dict(zip(self.obj_ids, self.boxes))

    def invalidate_derived(self) -> None:
        """Drop what was derived from the label map on the device (after the host changed the map)."""
        self.overlay = None
        self.changes = None


def _bytes(t: torch.Tensor) -> torch.Tensor:
    return t.contiguous().reshape(-1).view(torch.uint8)


def to_host(frame: ComposedFrame, *, overlay: torch.Tensor | None = None,
            changes: torch.Tensor | None = None) -> HostFrame:
    """Copy a composed frame to the host with one transfer (and one synchronisation on CUDA).

    ``overlay`` (H x W x 3 uint8, :func:`gsam2_video.drawing_torch.overlay_torch`) and ``changes`` (int32,
    :func:`gsam2_video.ops.rle.label_changes_packed`) travel in the same buffer when given.
    """
    labels, stats = frame.labels, frame.stats
    h, w = labels.shape
    parts = [_bytes(labels), _bytes(stats)]
    if overlay is not None:
        parts.append(_bytes(overlay))
    if changes is not None:
        parts.append(_bytes(changes))
    offsets, size = [], 0
    for part in parts:
        size += -size % 4  # keep every int32 part aligned
        offsets.append(size)
        size += part.numel()
    buf = torch.empty(size, dtype=torch.uint8, device=labels.device)
    for part, at in zip(parts, offsets):
        buf[at:at + part.numel()].copy_(part)
    if buf.device.type == "cuda":
        host = torch.empty(buf.shape, dtype=torch.uint8, pin_memory=True)
        host.copy_(buf, non_blocking=True)
        torch.cuda.current_stream(buf.device).synchronize()
    else:
        host = buf
    raw = host.numpy()  # the frame's one read of device data
    seg = [raw[at:at + part.numel()] for part, at in zip(parts, offsets)]
    out_labels = seg[0].view(_NUMPY_LABEL[labels.dtype]).reshape(h, w)
    st = seg[1].view(np.int32).reshape(-1, 6)
    result = HostFrame(list(frame.obj_ids), out_labels, st[:, :4].astype(np.float32), st[:, 4].astype(np.int64),
                       st[:, 5].copy().view(np.float32))
    k = 2
    if overlay is not None:
        result.overlay = seg[k].reshape(h, w, 3)
        k += 1
    if changes is not None:
        result.changes = unpack_changes(seg[k].view(np.int32))  # None: the device buffer overflowed
    return result
