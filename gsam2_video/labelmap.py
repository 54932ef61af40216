"""The frame's label map (H x W, track id per pixel, 0 background) and what writers derive from it cheaply.

Why a label map: drawing, PNG masks, COCO RLE and boxes all need "which track owns this pixel". Asking N
full-frame boolean masks costs N passes over the frame; one label map plus each track's box costs one pass
and then only the pixels inside the boxes, so a writer's cost follows the objects' area, not their number
times the frame size.

Overlaps: a label map cannot hold two tracks in one pixel. A result that carries N masks (which may overlap
when built by hand) is turned into one by painting the masks lowest priority first, so a contested pixel goes
to the highest score and, on equal scores, the lower track id: exactly the rule of
:func:`gsam2_video.sinks.base.exclusive_masks`, so every writer gives the same bytes as before.
"""

from __future__ import annotations

import math
from typing import Any

import cv2
import numpy as np


def label_dtype(max_id: int) -> type[np.integer]:
    """Smallest label-map dtype for ids up to ``max_id``: uint8, uint16, else int32."""
    if max_id <= 255:
        return np.uint8
    if max_id <= 65535:
        return np.uint16
    return np.int32


def resolved_label_map(result: Any) -> np.ndarray:
    """The result's label map with overlaps resolved by score (ties: lower id), in :func:`label_dtype`.

    A result that was built from a label map (``FrameResult(..., labels=...)``, non-overlapping by
    construction) gives that map as it is; one built from masks has them painted.
    """
    ids = np.asarray(result.track_ids, np.int64)
    dtype = label_dtype(int(ids.max()) if len(ids) else 0)
    # A result built from a label map (the pipeline's) holds no masks until someone asks for them: its map
    # is the truth and cannot overlap. A result built from masks (user code, tests) may overlap, and its
    # derived ``labels`` let the last track win, so it is painted here by score instead.
    native = getattr(result, "_labels", None) if getattr(result, "_masks", None) is None else None
    if isinstance(native, np.ndarray) and native.shape == (result.height, result.width):
        keep = native.dtype if native.dtype in (np.uint8, np.uint16, np.int32) else dtype
        return np.ascontiguousarray(native, dtype=keep)
    out = np.zeros((result.height, result.width), dtype)
    if len(ids) == 0:
        return out
    order = np.lexsort((ids, -np.asarray(result.scores, np.float64)))  # highest priority first
    masks = result.masks
    hints = np.asarray(result.boxes, np.float64).reshape(-1, 4)
    height, width = out.shape
    for k in order[::-1].tolist():  # paint lowest priority first: later (higher) ones overwrite
        mask = masks[k]
        y0, y1, x0, x1 = _hint_window(hints[k], height, width)
        inside = mask[y0:y1, x0:x1]
        # the result's box says where the mask is; a full count proves it (else the whole frame is painted)
        if y1 > y0 and x1 > x0 and np.count_nonzero(inside) == np.count_nonzero(mask):
            out[y0:y1, x0:x1][inside] = ids[k]
        else:
            out[mask] = ids[k]
    return out


def _hint_window(box: np.ndarray, height: int, width: int) -> tuple[int, int, int, int]:
    """Rows/columns ``(y0, y1, x0, x1)`` covering an xyxy hint box with one pixel of slack, clipped."""
    x1, y1, x2, y2 = (float(v) for v in box)
    if not all(math.isfinite(v) for v in (x1, y1, x2, y2)):
        return 0, 0, 0, 0
    return (max(0, math.floor(y1) - 1), min(height, math.ceil(y2) + 1),
            max(0, math.floor(x1) - 1), min(width, math.ceil(x2) + 1))


def _morph_ready(labels: np.ndarray) -> np.ndarray:
    """``labels`` in a dtype OpenCV compares natively (uint8, uint16, int32)."""
    if labels.dtype in (np.uint8, np.uint16, np.int32):
        return labels
    return labels.astype(np.int32)


def _box_in(labels: np.ndarray, tid: int, y0: int, y1: int, x0: int, x1: int) -> tuple[int, list[int]]:
    """Pixel count of ``tid`` inside the window and its tight ``x, y, w, h`` box (frame coordinates)."""
    if y1 <= y0 or x1 <= x0:
        return 0, [0, 0, 0, 0]
    m = (labels[y0:y1, x0:x1] == tid).view(np.uint8)  # numpy: cv2 reads a tiny array as a scalar
    count = cv2.countNonZero(m)
    if count == 0:
        return 0, [0, 0, 0, 0]
    x, y, w, h = cv2.boundingRect(m)
    return count, [x0 + x, y0 + y, w, h]


def track_boxes(labels: np.ndarray, track_ids: np.ndarray,
                hint_xyxy: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(boxes_xywh, areas)``: each track's tight box (K x 4 int64, zeros when absent) and pixel count.

    ``hint_xyxy`` (K x 4, e.g. the result's own boxes) says where to look; it is only a hint: when the
    pixels found inside the hints do not add up to every labelled pixel, the tracks are searched over the
    whole frame, so a wrong hint costs time, never a wrong box.
    """
    lab = _morph_ready(np.ascontiguousarray(labels))
    ids = np.asarray(track_ids, np.int64).reshape(-1)
    height, width = lab.shape
    boxes = np.zeros((len(ids), 4), np.int64)
    areas = np.zeros(len(ids), np.int64)
    if len(ids) == 0:
        return boxes, areas
    if hint_xyxy is not None:
        hints = np.asarray(hint_xyxy, np.float64).reshape(-1, 4)
        for k, tid in enumerate(ids.tolist()):
            areas[k], boxes[k] = _box_in(lab, tid, *_hint_window(hints[k], height, width))
        fg = lab if lab.dtype == np.uint8 else (lab != 0).view(np.uint8)
        if int(areas.sum()) == cv2.countNonZero(fg):
            return boxes, areas
    for k, tid in enumerate(ids.tolist()):
        areas[k], boxes[k] = _box_in(lab, tid, 0, height, 0, width)
    return boxes, areas
