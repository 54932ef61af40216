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

_NUMPY_LABEL = {torch.uint8: np.uint8, torch.uint16: np.uint16, torch.int32: np.int32}


@dataclass
class HostFrame:
    """A composed frame on the host: the label map and per-track arrays (rows follow ``obj_ids``)."""

    obj_ids: list[int]
    labels: np.ndarray  # H x W, uint8 / uint16 / int32
    boxes: np.ndarray  # N x 4 float32 xyxy, x2/y2 = last column/row + 1; zeros when empty
    areas: np.ndarray  # N int64 pixel counts
    scores: np.ndarray  # N float32 object-score logits

    def boxes_by_id(self) -> dict[int, np.ndarray]:
        return dict(zip(self.obj_ids, self.boxes))


def _bytes(t: torch.Tensor) -> torch.Tensor:
    return t.contiguous().reshape(-1).view(torch.uint8)


def to_host(frame: ComposedFrame) -> HostFrame:
    """Copy a composed frame to the host with one transfer (and one synchronisation on CUDA)."""
    labels, stats = frame.labels, frame.stats
    h, w = labels.shape
    label_bytes = labels.numel() * labels.element_size()
    pad = -label_bytes % 4  # keep the int32 part aligned
    buf = torch.empty(label_bytes + pad + stats.numel() * 4, dtype=torch.uint8, device=labels.device)
    buf[:label_bytes].copy_(_bytes(labels))
    buf[label_bytes + pad:].copy_(_bytes(stats))
    if buf.device.type == "cuda":
        host = torch.empty(buf.shape, dtype=torch.uint8, pin_memory=True)
        host.copy_(buf, non_blocking=True)
        torch.cuda.current_stream(buf.device).synchronize()
    else:
        host = buf
    raw = host.numpy()  # the frame's one read of device data
    out_labels = raw[:label_bytes].view(_NUMPY_LABEL[labels.dtype]).reshape(h, w)
    st = raw[label_bytes + pad:].view(np.int32).reshape(-1, 6)
    return HostFrame(list(frame.obj_ids), out_labels, st[:, :4].astype(np.float32), st[:, 4].astype(np.int64),
                     st[:, 5].copy().view(np.float32))
