"""COCO run-length encoding through pycocotools, the encoder every reader of these formats uses.

Why pycocotools and not our own encoder: the compressed "counts" string is an exact format that
pycocotools, TrackEval and the YouTube-VIS tools decode; producing it with the same library guarantees
byte-for-byte compatibility. Counts are returned as ``str`` (JSON- and text-safe), which is what
``pycocotools.mask.decode`` accepts back after ``.encode()`` or as-is in a dict.
"""

from __future__ import annotations

import numpy as np
from pycocotools import mask as mask_utils


def encode_masks(masks: np.ndarray) -> list[str]:
    """Compressed COCO RLE counts for each of K x H x W boolean masks (column-major, as COCO defines)."""
    masks = np.asarray(masks, dtype=bool)
    if len(masks) == 0:
        return []
    stacked = np.asfortranarray(masks.transpose(1, 2, 0).astype(np.uint8))
    return [rle["counts"].decode("ascii") for rle in mask_utils.encode(stacked)]


def decode_mask(counts: str, height: int, width: int) -> np.ndarray:
    """Inverse of :func:`encode_masks` for one mask: H x W bool."""
    return mask_utils.decode({"size": [height, width], "counts": counts.encode("ascii")}).astype(bool)
