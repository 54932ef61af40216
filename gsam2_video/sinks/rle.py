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


def encode_label_strips(labels: np.ndarray, track_ids: np.ndarray, boxes_xywh: np.ndarray) -> list[str]:
    """Compressed COCO RLE counts of each track's mask in an H x W label map, given the tracks' tight boxes
    (non-empty); the same strings as :func:`encode_masks` on the masks ``labels == id``. Only the pixels in
    each box are read (``ops.rle_from_label_map`` with box hints), so no full-frame mask is ever made."""
    from ..ops.rle import rle_from_label_map

    return [r["counts"].decode("ascii") for r in rle_from_label_map(labels, track_ids, boxes_xywh)]


def encode_from_changes(changes: tuple[np.ndarray, np.ndarray, np.ndarray], track_ids: np.ndarray,
                        height: int, width: int) -> list[str]:
    """The same strings as :func:`encode_label_strips`, from the label map's column-major changes as the
    GPU found them (``FrameResult.label_changes``): no pixel of the frame is read on the host."""
    from ..ops.rle import rle_from_changes

    return [r["counts"].decode("ascii") for r in rle_from_changes(changes, track_ids, height, width)]


def decode_mask(counts: str, height: int, width: int) -> np.ndarray:
    """Inverse of :func:`encode_masks` for one mask: H x W bool."""
    return mask_utils.decode({"size": [height, width], "counts": counts.encode("ascii")}).astype(bool)
