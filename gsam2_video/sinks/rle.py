"""COCO run-length encoding in the exact compressed form pycocotools, TrackEval and YouTube-VIS tools read.

The compressed "counts" string is produced by pycocotools itself, so it is byte-for-byte what those readers
expect. Counts are returned as ``str`` (JSON- and text-safe); ``pycocotools.mask.decode`` accepts them as-is
in a ``{"size", "counts"}`` dict.

A frame's tracks are encoded from its label map (:class:`LabelMapMasks`: one H x W map, track id per
pixel) by ``gsam2_video.ops.rle_from_label_map``: one column-major scan finds where the label changes, and
every track's runs follow from those changes, on the GPU when the map is a CUDA tensor. Binary masks
(``encode_masks(masks)``) are still accepted: COCO RLE runs column by column over the whole image, so when
a mask's box is known only the columns the box spans are scanned (every other column is background), the
run lengths are extended by the background before and after, and pycocotools compresses that run list.
All paths give identical strings (tested).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils


@dataclass(frozen=True)
class LabelMapMasks:
    """K binary masks held as one label map: mask k is ``labels == track_ids[k]``.

    ``labels`` is an H x W integer numpy array or torch tensor (a CUDA tensor keeps the scan on the GPU).
    The masks must be what the label map says, so the ids must be unique and (for the masks to be the
    frame's tracks) the map must assign every pixel of a track to that track.
    """

    labels: Any
    track_ids: np.ndarray

    def __len__(self) -> int:
        return len(self.track_ids)


def _runs_in_columns(mask: np.ndarray, x0: int, width: int) -> list[int]:
    """Uncompressed COCO counts of ``mask`` (H x W bool) known to be empty outside columns x0..x0+width-1."""
    h, w = mask.shape
    flat = np.ascontiguousarray(mask[:, x0:x0 + width].T).reshape(-1)  # column-major scan of the strip
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


def encode_masks(masks: np.ndarray | LabelMapMasks, boxes_xywh: np.ndarray | None = None) -> list[str]:
    """Compressed COCO RLE counts for each of K masks: K x H x W booleans, or a :class:`LabelMapMasks`.

    ``boxes_xywh`` (K x 4, tight boxes of non-empty masks) enables the column-strip fast path for boolean
    masks; a label map needs no boxes (one scan covers every track).
    """
    if isinstance(masks, LabelMapMasks):
        from ..ops.rle import rle_from_label_map

        return [rle["counts"].decode("ascii") for rle in rle_from_label_map(masks.labels, masks.track_ids)]
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


def decode_mask(counts: str, height: int, width: int) -> np.ndarray:
    """Inverse of :func:`encode_masks` for one mask: H x W bool."""
    return mask_utils.decode({"size": [height, width], "counts": counts.encode("ascii")}).astype(bool)
