"""Two-stage keyframe matching, as ByteTrack does: confident detections first, weak ones only to keep tracks.

Why: an object the detector still sees, but with a score under the box threshold (partly occluded, blurred,
small), would otherwise count as "not detected" on that keyframe, and a track missed on several keyframes
while its class is detected elsewhere is retired as a likely false positive (see lifecycle.py). Lowering the
box threshold instead would let those weak boxes start tracks, which is where most false tracks come from.
So the detector runs at ``AssociationConfig.low_score_threshold`` and its detections are split:

1. detections scoring above the box threshold go through :func:`~gsam2_video.tracking.association.associate`
   with every live track (matches, refreshes, re-identification of lost tracks by position, motion and,
   where the session has them, SAM 2's object pointers; new tracks);
2. the weak ones are matched, by the same mask IoU rules, only against the tracks left unmatched that SAM 2
   still sees (and that are not covered by a matched track). A match keeps the track alive (``low_matches``);
   it never re-prompts SAM 2, never re-acquires a lost track and never starts a track. Unmatched weak
   detections are dropped.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from ..config import AssociationConfig
from .association import AssociationResult, associate


def split_scores(scores: np.ndarray, high_score: float | None, config: AssociationConfig
                 ) -> tuple[np.ndarray, np.ndarray]:
    """(indices of confident detections, indices of weak ones). Confident = score > ``high_score`` (the same
    strict test the detector's own threshold applies); weak = the rest scoring >= ``low_score_threshold``.
    With no high threshold or two-stage matching off, every detection is confident."""
    idx = np.arange(len(scores))
    if high_score is None or config.low_score_threshold is None:
        return idx, idx[:0]
    high = scores > high_score
    return idx[high], idx[~high & (scores >= config.low_score_threshold)]


def associate_two_stage(
    track_ids: Sequence[int],
    track_masks: torch.Tensor,
    track_boxes: Any,
    track_classes: Any,
    det_masks: torch.Tensor,
    det_boxes: Any,
    det_classes: Any,
    det_scores: Any,
    config: AssociationConfig,
    *,
    high_score: float | None,
    image_size: tuple[int, int] | None = None,
    lost_boxes: Any = None,
    predicted_boxes: Any = None,
    track_pointers: torch.Tensor | None = None,
    det_pointers: torch.Tensor | None = None,
) -> AssociationResult:
    """:func:`associate` on the confident detections, then the weak ones against the visible leftovers.

    Arguments are those of :func:`associate` (boxes may be None) plus ``high_score``, the box threshold that
    separates confident from weak detections (None: all are confident). Object pointers, when given, serve
    only the confident stage's re-identification (weak detections never re-acquire a lost track). Indices in
    the result refer to the detections as given; ``iou`` (T x D) and ``coverage`` (D x T) hold the stage each
    detection took part in.
    """
    scores = np.asarray(det_scores, dtype=np.float64).reshape(-1)
    n_det = int(det_masks.shape[0])
    if len(scores) != n_det:
        raise ValueError(f"two-stage matching got {len(scores)} scores for {n_det} detection masks")
    hi, lo = split_scores(scores, high_score, config)
    ids = [int(t) for t in track_ids]
    n_trk = len(ids)
    tcls = _rows(track_classes, n_trk)
    dcls = _rows(det_classes, n_det)
    dboxes = None if det_boxes is None else np.asarray(det_boxes, dtype=np.float64).reshape(-1, 4)

    def sub(idx: np.ndarray, pointers: bool = False) -> tuple[torch.Tensor, Any, Any, torch.Tensor | None]:
        t = torch.as_tensor(idx, dtype=torch.long, device=det_masks.device)
        dp = det_pointers if pointers else None
        if dp is not None and len(idx) != n_det:  # the masks' index tensor serves the pointers too
            if dp.ndim != 2 or int(dp.shape[0]) != n_det:
                raise ValueError(f"two-stage matching got {tuple(dp.shape)} detection pointers for {n_det} masks")
            dp = dp.index_select(0, t.to(dp.device))
        return det_masks.index_select(0, t), (None if dboxes is None else dboxes[idx]), (
            None if dcls is None else dcls[idx]), dp

    dm, db, dc, dp = sub(hi, pointers=True)
    first = associate(ids, track_masks, track_boxes, tcls, dm, db, dc, config, det_scores=scores[hi],
                      image_size=image_size, lost_boxes=lost_boxes, predicted_boxes=predicted_boxes,
                      track_pointers=track_pointers, det_pointers=dp)
    if len(hi) == n_det:
        return first
    out = AssociationResult(
        matches=[(t, int(hi[j])) for t, j in first.matches], new=[int(hi[j]) for j in first.new],
        duplicates=[int(hi[j]) for j in first.duplicates], refresh=[(t, int(hi[j])) for t, j in first.refresh],
        reacquired=[(t, int(hi[j])) for t, j in first.reacquired], covered_tracks=list(first.covered_tracks),
        unmatched_tracks=list(first.unmatched_tracks), low=[int(j) for j in lo],
        iou=np.zeros((n_trk, n_det), np.float32), coverage=np.zeros((n_det, n_trk), np.float32))
    out.iou[:, hi] = first.iou
    out.coverage[hi] = first.coverage
    covered = set(first.covered_tracks)
    unmatched = set(first.unmatched_tracks)
    rows = [i for i, t in enumerate(ids) if t in unmatched and t not in covered]
    if rows and len(lo):
        ridx = torch.as_tensor(rows, dtype=torch.long, device=track_masks.device)
        tmask = track_masks.index_select(0, ridx)
        visible = tmask.reshape(len(rows), -1).any(dim=1).cpu().numpy()
        rows = [r for r, v in zip(rows, visible) if v]
        if rows:
            ridx = torch.as_tensor(rows, dtype=torch.long, device=track_masks.device)
            tb = None if track_boxes is None else np.asarray(track_boxes, dtype=np.float64).reshape(-1, 4)[rows]
            dm, db, dc, _ = sub(lo)
            second = associate([ids[r] for r in rows], track_masks.index_select(0, ridx), tb,
                               None if tcls is None else tcls[rows], dm, db, dc, config, det_scores=scores[lo],
                               image_size=image_size)
            out.low_matches = sorted((t, int(lo[j])) for t, j in second.matches)
            kept = {t for t, _ in out.low_matches}
            out.unmatched_tracks = [t for t in out.unmatched_tracks if t not in kept]
            out.iou[np.ix_(rows, lo)] = second.iou
            out.coverage[np.ix_(lo, rows)] = second.coverage
    return out


def _rows(values: Any, n: int) -> np.ndarray | None:
    if values is None:
        return None
    arr = np.asarray(values, dtype=np.int64).reshape(-1)
    if len(arr) != n:
        raise ValueError(f"two-stage matching got {len(arr)} class ids for {n} masks")
    return arr
