"""Region similarity J and boundary accuracy F, as the DAVIS 2017 evaluation defines them.

The definitions follow ``davis2017-evaluation`` (``davis2017/metrics.py``: ``db_eval_iou``, ``f_measure``,
``_seg2bmap``; ``davis2017/utils.py``: ``db_statistics``), reimplemented here so the scorer needs neither
that repository nor scikit-image:

* J = |pred ∩ gt| / |pred ∪ gt| over non-void pixels; 1 when both are empty.
* F: each mask's 1-pixel boundary map (Martin's ``seg2bmap``: a pixel is boundary when it differs from its
  right, lower or lower-right neighbour; on the last row only the right neighbour counts, on the last column
  only the lower one, and the bottom-right pixel never). A boundary pixel matches when the other boundary lies
  within ``ceil(0.008 x image diagonal)`` pixels (dilation by a disk of that radius, ``x² + y² <= r²``).
  Precision = matched predicted boundary / predicted boundary, recall = matched ground-truth boundary /
  ground-truth boundary, F = 2PR / (P + R); both empty: 1; one empty: precision or recall is 0 (so F = 0).
* Per object: mean over frames (M), recall = fraction of frames above 0.5 (O) and decay = mean of the first
  quarter of the frames minus mean of the last quarter (D, 4 bins). DAVIS casts the bin edges to uint8,
  which wraps for sequences longer than 256 frames; here they are int64 (equal below 256 frames).
"""

from __future__ import annotations

import math

import cv2
import numpy as np

BOUND_TH = 0.008


def jaccard(gt: np.ndarray, pred: np.ndarray, void: np.ndarray | None = None) -> float:
    """DAVIS ``db_eval_iou`` for one frame's binary masks."""
    gt, pred = np.asarray(gt, bool), np.asarray(pred, bool)
    keep = np.ones_like(gt) if void is None else ~np.asarray(void, bool)
    union = int(np.count_nonzero((gt | pred) & keep))
    if union == 0:
        return 1.0
    return int(np.count_nonzero(gt & pred & keep)) / union


def boundary_map(mask: np.ndarray) -> np.ndarray:
    """Martin's ``seg2bmap`` at the mask's own size (see the module docstring)."""
    seg = np.asarray(mask, bool)
    right = np.zeros_like(seg)
    below = np.zeros_like(seg)
    diag = np.zeros_like(seg)
    right[:, :-1] = seg[:, 1:]
    below[:-1, :] = seg[1:, :]
    diag[:-1, :-1] = seg[1:, 1:]
    b = (seg ^ right) | (seg ^ below) | (seg ^ diag)
    b[-1, :] = seg[-1, :] ^ right[-1, :]
    b[:, -1] = seg[:, -1] ^ below[:, -1]
    b[-1, -1] = False
    return b


def disk(radius: float) -> np.ndarray:
    """Disk structuring element: grid points with x² + y² <= radius² (scikit-image's ``disk``)."""
    r = int(radius)
    yy, xx = np.mgrid[-r:r + 1, -r:r + 1]
    return (xx * xx + yy * yy <= radius * radius).astype(np.uint8)


def boundary_radius(shape: tuple[int, int], bound_th: float = BOUND_TH) -> float:
    """Tolerance in pixels: ``bound_th`` itself when >= 1, else ceil(bound_th x image diagonal)."""
    return bound_th if bound_th >= 1 else math.ceil(bound_th * math.hypot(shape[0], shape[1]))


def f_measure(gt: np.ndarray, pred: np.ndarray, void: np.ndarray | None = None,
              bound_th: float = BOUND_TH, image_shape: tuple[int, int] | None = None) -> float:
    """DAVIS ``f_measure`` (boundary F) for one frame's binary masks.

    ``image_shape``: the full frame's size when ``gt`` / ``pred`` are a crop of it (the tolerance is taken
    from the frame's diagonal). A crop gives the same F as the whole frame when it holds both masks with a
    2-pixel margin or reaches the frame's edge (see :func:`crop_box`): every boundary pixel then lies inside
    it and is found exactly as in the frame.
    """
    gt, pred = np.asarray(gt, bool), np.asarray(pred, bool)
    if void is not None:
        keep = ~np.asarray(void, bool)
        gt, pred = gt & keep, pred & keep
    kernel = disk(boundary_radius(image_shape or gt.shape, bound_th))
    pred_b, gt_b = boundary_map(pred), boundary_map(gt)
    n_pred, n_gt = int(np.count_nonzero(pred_b)), int(np.count_nonzero(gt_b))
    if n_pred == 0 and n_gt == 0:
        return 1.0
    if n_pred == 0 or n_gt == 0:
        return 0.0
    pred_dil = cv2.dilate(pred_b.astype(np.uint8), kernel).astype(bool)
    gt_dil = cv2.dilate(gt_b.astype(np.uint8), kernel).astype(bool)
    precision = np.count_nonzero(pred_b & gt_dil) / n_pred
    recall = np.count_nonzero(gt_b & pred_dil) / n_gt
    if precision + recall == 0:
        return 0.0
    return 2 * precision * recall / (precision + recall)


def crop_box(boxes: list[tuple[slice, slice] | None], shape: tuple[int, int], margin: int = 2
             ) -> tuple[slice, slice] | None:
    """The union of ``boxes`` (``scipy.ndimage.find_objects`` slices, None for an empty mask) grown by
    ``margin`` pixels and clipped to the frame; None when every mask is empty."""
    boxes = [b for b in boxes if b is not None]
    if not boxes:
        return None
    y0 = max(0, min(b[0].start for b in boxes) - margin)
    x0 = max(0, min(b[1].start for b in boxes) - margin)
    y1 = min(shape[0], max(b[0].stop for b in boxes) + margin)
    x1 = min(shape[1], max(b[1].stop for b in boxes) + margin)
    return slice(y0, y1), slice(x0, x1)


def statistics(per_frame: np.ndarray) -> tuple[float, float, float]:
    """DAVIS ``db_statistics``: (mean, recall above 0.5, decay over 4 bins) of one object's frame values."""
    values = np.asarray(per_frame, np.float64)
    mean = float(np.nanmean(values))
    recall = float(np.nanmean(values > 0.5))
    edges = (np.round(np.linspace(1, len(values), 5) + 1e-10) - 1).astype(np.int64)
    bins = [values[edges[i]:edges[i + 1] + 1] for i in range(4)]
    decay = float(np.nanmean(bins[0]) - np.nanmean(bins[3]))
    return mean, recall, decay
