"""COCO run-length encoding in the exact compressed form pycocotools, TrackEval and YouTube-VIS tools read.

The compressed "counts" string is produced by pycocotools itself, so it is byte-for-byte what those readers
expect. Counts are returned as ``str`` (JSON- and text-safe); ``pycocotools.mask.decode`` accepts them as-is
in a ``{"size", "counts"}`` dict.

Speed: COCO RLE runs column by column over the whole image, so encoding a full-size mask costs H x W per
object even for a small object. When the mask's box is known, only the columns the box spans are scanned
(every other column is background), the run lengths are extended by the background before and after, and
pycocotools compresses that run list. From a label map (:func:`encode_label_strips`, what the writers
use) only the box itself is read: its runs are placed in the full column-major scan by arithmetic. All
paths give identical strings (tested).
"""

from __future__ import annotations

import cv2
import numpy as np
from pycocotools import mask as mask_utils


def _runs_in_columns(mask: np.ndarray, x0: int, width: int) -> list[int]:
    """Uncompressed COCO counts of ``mask`` (H x W bool) known to be empty outside columns x0..x0+width-1."""
    flat = np.ascontiguousarray(mask[:, x0:x0 + width].T).reshape(-1)  # column-major scan of the strip
    return _strip_runs(flat, mask.shape[0], mask.shape[1], x0, width)


def _strip_runs(flat: np.ndarray, h: int, w: int, x0: int, width: int) -> list[int]:
    """Counts of a mask whose columns x0..x0+width-1, scanned column-major, are ``flat`` (the rest empty)."""
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    runs = np.diff(np.concatenate(([0], change, [flat.size]))).tolist()
    before, after = x0 * h, (w - x0 - width) * h
    if flat[0]:
        runs.insert(0, before)  # counts always start with a (possibly empty) background run
    else:
        runs[0] += before
    if flat[-1]:
        if after:
            runs.append(after)
    else:
        runs[-1] += after
    return runs


def encode_masks(masks: np.ndarray, boxes_xywh: np.ndarray | None = None) -> list[str]:
    """Compressed COCO RLE counts for each of K x H x W boolean masks.

    ``boxes_xywh`` (K x 4, tight boxes of non-empty masks) enables the column-strip fast path.
    """
    masks = np.asarray(masks, dtype=bool)
    if len(masks) == 0:
        return []
    h, w = masks.shape[1:]
    if boxes_xywh is None:
        stacked = np.asfortranarray(masks.transpose(1, 2, 0).astype(np.uint8))
        return [rle["counts"].decode("ascii") for rle in mask_utils.encode(stacked)]
    out = []
    for mask, (x0, _, bw, _) in zip(masks, np.asarray(boxes_xywh, dtype=np.int64).tolist()):
        rle = mask_utils.frPyObjects({"size": [h, w], "counts": _runs_in_columns(mask, x0, bw)}, h, w)
        out.append(rle["counts"].decode("ascii"))
    return out


def _box_runs(box_t: np.ndarray, tid: int, h: int, w: int, x0: int, y0: int) -> list[int]:
    """Uncompressed COCO counts of the mask ``label == tid`` of an H x W label map that holds no ``tid``
    outside one box; ``box_t`` is the box's labels transposed (bw x bh, C-contiguous: the column-major scan
    of the box), its corner at x0, y0.

    Foreground runs are found in the box alone and placed in the full column-major scan by arithmetic: a run
    may continue into the next column only when the box spans the full height; otherwise every column is
    closed by one background sentinel so no run crosses it. Work is proportional to the box, not to H.
    """
    bw, bh = box_t.shape
    step = bh if bh == h else bh + 1
    flat = np.zeros((bw, step), bool)
    np.equal(box_t, tid, out=flat[:, :bh])
    flat = flat.reshape(-1)
    edges = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    if flat[0]:
        edges = np.concatenate(([0], edges))
    if flat[-1]:
        edges = np.concatenate((edges, [flat.size]))
    col, row = np.divmod(edges, step)
    pos = (x0 + col) * h + y0 + row  # run starts and ends (alternating) in the full column-major scan
    runs = np.diff(np.concatenate(([0], pos, [h * w]))).tolist()
    if runs[-1] == 0:
        runs.pop()  # the mask ends on the frame's last pixel: no trailing background run
    return runs


def encode_label_strips(labels: np.ndarray, track_ids: np.ndarray, boxes_xywh: np.ndarray) -> list[str]:
    """Compressed COCO RLE counts of each track's mask in an H x W label map, given the tracks' tight boxes
    (non-empty); the same strings as :func:`encode_masks` on the masks ``labels == id``. Only the pixels in
    each box are read, so no full-frame mask is ever made."""
    h, w = labels.shape
    out = []
    for tid, (x0, y0, bw, bh) in zip(np.asarray(track_ids, np.int64).tolist(),
                                     np.asarray(boxes_xywh, np.int64).reshape(-1, 4).tolist()):
        box = labels[y0:y0 + bh, x0:x0 + bw]
        box_t = (cv2.transpose(np.ascontiguousarray(box)) if box.dtype in (np.uint8, np.uint16, np.int32)
                 else np.ascontiguousarray(box.T))  # OpenCV's blocked transpose where it has the dtype
        rle = mask_utils.frPyObjects({"size": [h, w], "counts": _box_runs(box_t, tid, h, w, x0, y0)}, h, w)
        out.append(rle["counts"].decode("ascii"))
    return out


def decode_mask(counts: str, height: int, width: int) -> np.ndarray:
    """Inverse of :func:`encode_masks` for one mask: H x W bool."""
    return mask_utils.decode({"size": [height, width], "counts": counts.encode("ascii")}).astype(bool)
