"""Keyframe association: which detections continue which live tracks, which are new, which are duplicates.

On a keyframe the detector's masks are compared with the masks SAM 2 propagated for the live tracks. The
comparison must be cheap (100 tracks x 100 detections well under 5 ms on a CPU), so:

* masks are compared at a working resolution whose long side is at most ``config.iou_max_side`` (masks
  larger than that are subsampled by an integer stride; SAM 2's 256 x 256 low-res masks pass unchanged);
* a box prefilter keeps only (track, detection) pairs whose boxes overlap (and, class-aware, share a class);
  on the CPU the pixel counts of just those pairs are gathered inside their box intersection, so pairs whose
  boxes don't overlap are never looked at pixel by pixel. When most pairs survive the prefilter, or the masks
  live on a GPU, the dense :func:`gsam2_video.ops.mask_iou.mask_iou_matrix` /
  :func:`~gsam2_video.ops.mask_iou.mask_coverage_matrix` ops (CUDA kernel there) are used instead. Both paths
  give the exact same counts at the working resolution, provided boxes bound their masks (the sparse path
  treats pixels outside a mask's box as empty);
* matching runs in passes, each an optimal assignment (``scipy.optimize.linear_sum_assignment`` maximising
  total score over pairs at or above the pass's threshold; sub-threshold pairs are zeroed first so they can
  never displace a valid pair):

  1. mask IoU >= ``config.iou_threshold``; a match below ``config.refresh_iou`` drifted and should take the
     detection mask as a new conditioning prompt (``refresh``);
  2. leftover visible tracks and leftover detections at mask IoU >= ``config.weak_iou``: the same object seen
     with more drift or jitter than pass 1 accepts (typical for small objects); matched and refreshed,
     instead of the detection starting a second track on an object that is already tracked. A detection
     mostly inside the track (a part of it, coverage >= ``duplicate_coverage``) confirms the track but does
     not re-prompt it, so a track never shrinks to a part;
  3. after duplicates are set aside: tracks SAM 2 lost (empty mask) re-acquire a leftover detection whose box
     has IoU >= ``config.reacquire_iou`` with the box where the track was last seen (``lost_boxes``, given by
     the caller) or with where its motion predicts it now (``predicted_boxes``); matched, refreshed and
     listed in ``reacquired`` (re-identification: the old ID is revived and SAM 2 re-prompted). This keeps an
     ID across an occlusion SAM 2 did not recover from by itself. Position alone cannot tell apart two
     people lost near each other, nor a lost person from a stranger who walks into their spot; so when SAM 2's
     object pointers are given (``track_pointers``: each track's from its last visible frame;
     ``det_pointers``: each detection's box decode), a pair is a candidate only if it also has cosine
     similarity >= ``config.reid_min_similarity``, and candidates are ranked by
     ``(1 - reid_weight) * box IoU + reid_weight * similarity``. The similarity is computed on the device
     and read once (a T x D matrix, used for the lost tracks x leftover detections). A track whose pointer
     is unknown (NaN row) and every pair when pointers are absent or ``reid_min_similarity`` is None are
     ranked by box IoU alone, exactly as without pointers.

An unmatched track mostly inside a matched one (``covered_tracks``) is a second track on an object that is
already tracked; the registry counts it as invisible so it ages out. Unmatched detections mostly inside a
live track (``coverage >= config.duplicate_coverage``) are duplicates or parts of it; unmatched detections overlapping a higher-scoring new detection (IoU >= ``iou_threshold`` or
mostly inside it) are duplicates too; the rest become new tracks, best score first.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment

from ..config import AssociationConfig
from ..errors import ModelError
from ..ops._checks import check_masks
from ..ops.mask_iou import mask_coverage_matrix, mask_iou_matrix

_WORD = 64  # pixels per packed word
_CHUNK_ROWS = 8  # rows per gather chunk in the sparse pair count
# The sparse path reads one 64-pixel word for a few ns; BLAS dense counting costs ~0.05 ns per pixel-pair.
# Prefer dense when the gathered words would exceed this fraction of the dense pixel-pairs.
_DENSE_RATIO = 1.0 / 64.0


@dataclass
class AssociationResult:
    """Outcome of one keyframe's association. Indices refer to the detection order given to :func:`associate`.

    ``iou`` is T x D (tracks in the order given); pairs rejected by the box prefilter or by class hold 0.
    ``coverage`` is D x T: the fraction of each detection's pixels inside each track.
    """

    matches: list[tuple[int, int]] = field(default_factory=list)  # (track_id, det_idx)
    new: list[int] = field(default_factory=list)  # det indices that become new tracks, best score first
    duplicates: list[int] = field(default_factory=list)  # det indices ignored (inside a track / a new det)
    refresh: list[tuple[int, int]] = field(default_factory=list)  # matched but drifted (track_id, det_idx)
    reacquired: list[tuple[int, int]] = field(default_factory=list)  # lost tracks matched by last box (in refresh)
    covered_tracks: list[int] = field(default_factory=list)  # unmatched tracks mostly inside a matched track
    unmatched_tracks: list[int] = field(default_factory=list)  # track ids
    # two-stage matching (tracking/two_stage.py): det indices scoring below the box threshold, and the
    # (track_id, det_idx) pairs among them that kept a visible track alive (never a refresh, never a new track)
    low: list[int] = field(default_factory=list)
    low_matches: list[tuple[int, int]] = field(default_factory=list)
    iou: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    coverage: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))


def associate(
    track_ids: Sequence[int],
    track_masks: torch.Tensor,
    track_boxes: Any,
    track_classes: Any,
    det_masks: torch.Tensor,
    det_boxes: Any,
    det_classes: Any,
    config: AssociationConfig,
    *,
    det_scores: Any = None,
    image_size: tuple[int, int] | None = None,
    lost_boxes: Any = None,
    predicted_boxes: Any = None,
    track_pointers: torch.Tensor | None = None,
    det_pointers: torch.Tensor | None = None,
) -> AssociationResult:
    """Match this keyframe's detections to the live tracks.

    Args:
        track_ids: T track ids, in the order of ``track_masks``.
        track_masks: T x H x W bool/uint8 propagated masks (an invisible track has an empty mask).
        track_boxes: T x 4 xyxy boxes bounding ``track_masks`` (tight boxes; pixel-edge or inclusive
            convention both work), or None to compute them from the masks (slower).
        track_classes: T class ids (used when ``config.class_aware``).
        det_masks: D x H x W bool/uint8 detection masks, same size as ``track_masks``.
        det_boxes: D x 4 boxes bounding ``det_masks`` (the mask's tight box: a SAM mask may spill out of the
            detector's box), or None to compute them.
        det_classes: D class ids.
        config: thresholds and the working resolution.
        det_scores: optional D scores; among overlapping new detections the higher score wins (else the
            lower index).
        image_size: (H, W) of the image the boxes are in; None means the boxes are in mask coordinates.
        lost_boxes: optional T x 4 boxes where each track was last visible (same coordinates as the other
            boxes; all-zero rows = unknown). Tracks whose mask is empty can then re-acquire a detection whose
            box IoU with it is >= ``config.reacquire_iou`` (reported in ``reacquired`` and ``refresh``).
        predicted_boxes: optional T x 4 boxes where each track is expected now (a constant-velocity
            prediction from its last observations, see ``TrackRegistry.predicted_boxes``); a lost track scores
            each detection by the better of its IoU with the last box and with the prediction, so a person
            walking on behind an occluder and one who stopped there are both re-found.
        track_pointers: optional T x C SAM 2 object pointers, each track's from its last visible frame (NaN
            row: unknown), on any device; with ``det_pointers`` they gate and rank re-identification.
        det_pointers: optional D x C object pointers of the detections (their box decodes), same device.
    """
    config.validate()
    tmask = check_masks("track masks", track_masks)
    dmask = check_masks("detection masks", det_masks)
    t, d = int(tmask.shape[0]), int(dmask.shape[0])
    ids = [int(i) for i in track_ids]
    if len(ids) != t:
        raise ModelError(f"association got {len(ids)} track ids for {t} track masks")
    if len(set(ids)) != t:
        raise ModelError("association got repeated track ids")
    if tmask.shape[1:] != dmask.shape[1:]:
        raise ModelError(f"track masks are {tuple(tmask.shape[1:])} but detection masks are "
                         f"{tuple(dmask.shape[1:])}; give both at one resolution")
    _check_pointers(track_pointers, det_pointers, t, d)
    tcls = _vector("track classes", track_classes, t, np.int64)
    dcls = _vector("detection classes", det_classes, d, np.int64)
    dscore = None if det_scores is None else _vector("detection scores", det_scores, d, np.float64)

    h, w = int(tmask.shape[1]), int(tmask.shape[2])
    stride = max(1, math.ceil(max(h, w) / config.iou_max_side))
    if stride > 1:
        tmask, dmask = tmask[:, ::stride, ::stride], dmask[:, ::stride, ::stride]
    wh, ww = int(tmask.shape[1]), int(tmask.shape[2])
    # boxes -> working-pixel half-open integer boxes, padded by one pixel against rounding and convention
    if image_size is None:
        sx = sy = 1.0 / stride
    else:
        sy, sx = (h / float(image_size[0])) / stride, (w / float(image_size[1])) / stride
    tb = _working_boxes("track boxes", track_boxes, tmask, t, sx, sy, wh, ww)
    db = _working_boxes("detection boxes", det_boxes, dmask, d, sx, sy, wh, ww)

    cand = _box_overlap(tb, db)  # T x D bool
    if config.class_aware:
        cand &= tcls[:, None] == dcls[None, :]
    ti, di = np.nonzero(cand)
    inter = np.zeros((t, d), np.float64)
    tpk: np.ndarray | None = None  # bit-packed masks, when the sparse path made them
    dpk: np.ndarray | None = None
    # masks on a GPU are compared there (mask IoU kernel), never read back; on the CPU dense or bit-packed
    dense = _use_dense(dmask, tb, db, ti, di, t, d, wh * ww)
    if len(ti):
        if dense:
            iou_full = mask_iou_matrix(tmask, dmask).double().cpu().numpy()
            cov_full = mask_coverage_matrix(dmask, tmask).double().cpu().numpy()  # D x T
            iou = np.where(cand, iou_full, 0.0).astype(np.float32)
            coverage = np.where(cand.T, cov_full, 0.0).astype(np.float32)
        else:
            tpk, dpk = _pack(_as_numpy(tmask), tb), _pack(_as_numpy(dmask), db)
            tarea, darea = _areas(tpk), _areas(dpk)
            inter[ti, di] = _pair_intersections(tpk, dpk, ti, di, tb, db)
            union = tarea[:, None] + darea[None, :] - inter
            iou = np.where(union > 0, inter / np.maximum(union, 1), 0.0).astype(np.float32)
            coverage = np.where(darea[:, None] > 0, inter.T / np.maximum(darea[:, None], 1), 0.0).astype(np.float32)
    else:
        iou = np.zeros((t, d), np.float32)
        coverage = np.zeros((d, t), np.float32)

    t_nonempty = _nonempty(tmask, tpk)
    if t and d:
        iou, coverage = _box_fallback(iou, coverage, cand, tb, db, t_nonempty, _nonempty(dmask, dpk))

    result = AssociationResult(iou=iou, coverage=coverage)
    matched_t = np.zeros(t, bool)
    matched_d = np.zeros(d, bool)
    # 1: confident matches; a matched track below refresh_iou drifted and takes the detection as a prompt
    for i, j in _assign(iou, config.iou_threshold, matched_t, matched_d):
        result.matches.append((ids[i], j))
        if iou[i, j] < config.refresh_iou:
            result.refresh.append((ids[i], j))
    # 2: a visible track and a detection left over from (1) that still overlap clearly are the same object
    #    seen with more drift or jitter than (1) accepts: match and refresh rather than start a duplicate
    if config.weak_iou is not None:
        for i, j in _assign(iou, config.weak_iou, matched_t, matched_d):
            result.matches.append((ids[i], j))
            if coverage[j, i] < config.duplicate_coverage:  # a part of the track confirms it, never re-prompts
                result.refresh.append((ids[i], j))

    leftover = [j for j in range(d) if not matched_d[j]]
    covered = coverage[leftover].max(axis=1) if (t and leftover) else np.zeros(len(leftover), np.float32)
    fresh = []
    for j, cov in zip(leftover, covered):
        (result.duplicates if cov >= config.duplicate_coverage else fresh).append(j)
    # 3: a track SAM 2 lost (empty mask) takes a detection near the box where it was last seen
    if fresh and lost_boxes is not None and config.reacquire_iou is not None:
        lb = _working_boxes("lost boxes", lost_boxes, tmask, t, sx, sy, wh, ww)
        lost = ~matched_t & ~t_nonempty
        if lost.any():
            rows, cols = np.flatnonzero(lost), np.asarray(fresh)
            box_iou = np.zeros((t, d), np.float64)
            sub_iou = _box_iou(lb[lost], db[fresh])
            if predicted_boxes is not None:
                pb = _working_boxes("predicted boxes", predicted_boxes, tmask, t, sx, sy, wh, ww)
                sub_iou = np.maximum(sub_iou, _box_iou(pb[lost], db[fresh]))
            if config.class_aware:
                sub_iou *= tcls[lost][:, None] == dcls[fresh][None, :]
            threshold = config.reacquire_iou
            if (config.reid_min_similarity is not None and track_pointers is not None
                    and det_pointers is not None):
                sim = _pointer_similarity(track_pointers, det_pointers, rows, cols)
                sub_iou = _reid_scores(sub_iou, sim, config)
                threshold = 0.0  # _reid_scores zeroed every pair that fails a gate
            box_iou[np.ix_(rows, cols)] = sub_iou
            for i, j in _assign(box_iou, threshold, matched_t, matched_d):
                result.matches.append((ids[i], j))
                result.refresh.append((ids[i], j))
                result.reacquired.append((ids[i], j))
            fresh = [j for j in fresh if not matched_d[j]]
    result.matches.sort(key=lambda m: m[1])
    result.refresh.sort(key=lambda m: m[1])
    result.reacquired.sort(key=lambda m: m[1])
    result.unmatched_tracks = [ids[i] for i in range(t) if not matched_t[i]]
    result.covered_tracks = [ids[i] for i in _covered_tracks(tmask, tpk, tb, tcls, matched_t, config)]

    if len(fresh) > 1:
        if dense:
            def overlaps(sel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
                m = dmask[torch.as_tensor(sel, device=dmask.device)]
                iou_m, cov_m = mask_iou_matrix(m, m), mask_coverage_matrix(m, m)
                return iou_m.double().cpu().numpy(), cov_m.double().cpu().numpy()
        else:
            packed = dpk if dpk is not None else _pack(_as_numpy(dmask), db)

            def overlaps(sel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
                return _packed_overlaps(packed[sel], db[sel])
        kept, dups = _dedupe_new(fresh, overlaps, db, dcls, dscore, config)
        fresh = kept
        result.duplicates = sorted(result.duplicates + dups)
    elif dscore is not None:
        fresh = sorted(fresh, key=lambda j: (-dscore[j], j))
    result.new = fresh
    return result


def _pointer_similarity(track_pointers: torch.Tensor, det_pointers: torch.Tensor, rows: np.ndarray,
                        cols: np.ndarray) -> np.ndarray:
    """Cosine similarity of the object pointers of tracks ``rows`` and detections ``cols`` (NaN where a
    track's pointer is unknown). The whole T x D matrix is computed where the pointers live and read on the
    host once; selecting the rows there instead would first upload their indices (on CUDA, another sync)."""
    sim = F.normalize(track_pointers.float(), dim=1) @ F.normalize(det_pointers.float(), dim=1).T
    return sim.cpu().numpy().astype(np.float64)[np.ix_(rows, cols)]


def _reid_scores(box_iou: np.ndarray, sim: np.ndarray, config: AssociationConfig) -> np.ndarray:
    """Lost track x detection re-identification scores, 0 where a pair fails a gate.

    A pair is a candidate when its box IoU (last box or motion prediction) reaches ``reacquire_iou`` and its
    pointer similarity reaches ``reid_min_similarity``; it scores ``(1 - w) * box IoU + w * similarity``
    (w = ``reid_weight``), so that among several plausible positions the one that looks like the track
    wins. A track with no known pointer (NaN) is gated and scored by box IoU alone, as without pointers."""
    assert config.reacquire_iou is not None and config.reid_min_similarity is not None
    known = np.isfinite(sim)
    s = np.where(known, sim, 0.0)
    w = config.reid_weight
    ok = (box_iou >= config.reacquire_iou) & (~known | (s >= config.reid_min_similarity))
    score = np.where(known, (1.0 - w) * box_iou + w * s, box_iou)
    return np.where(ok, score, 0.0)


def _check_pointers(track_pointers: torch.Tensor | None, det_pointers: torch.Tensor | None, t: int,
                    d: int) -> None:
    for name, p, n in (("track pointers", track_pointers, t), ("detection pointers", det_pointers, d)):
        if p is not None and (not isinstance(p, torch.Tensor) or p.ndim != 2 or int(p.shape[0]) != n):
            shape = tuple(p.shape) if isinstance(p, torch.Tensor) else type(p).__name__
            raise ModelError(f"association got {name} of shape {shape} for {n} masks (expected {n} x C)")
    if track_pointers is None or det_pointers is None:
        return
    if track_pointers.shape[1] != det_pointers.shape[1]:
        raise ModelError(f"track pointers have {track_pointers.shape[1]} channels but detection pointers "
                         f"{det_pointers.shape[1]}")
    if track_pointers.device != det_pointers.device:
        raise ModelError(f"track pointers are on {track_pointers.device} but detection pointers on "
                         f"{det_pointers.device}")


def _assign(score: np.ndarray, threshold: float, matched_t: np.ndarray,
            matched_d: np.ndarray) -> list[tuple[int, int]]:
    """Optimal one-to-one pairs among unmatched rows/columns with ``score >= threshold`` (sub-threshold pairs
    are zeroed first, so they can never displace a valid pair). Marks the pairs as matched.

    A pair that is the only candidate of both its row and its column is taken directly (it is in every
    optimal assignment); the Hungarian solver runs on the rest."""
    valid = (score >= threshold) & (score > 0)
    valid[matched_t, :] = False
    valid[:, matched_d] = False
    if not valid.any():
        return []
    row_n = valid.sum(axis=1)
    col_n = valid.sum(axis=0)
    ri, ci = np.nonzero(valid)
    alone = (row_n[ri] == 1) & (col_n[ci] == 1)
    pairs = [(int(i), int(j)) for i, j in zip(ri[alone], ci[alone])]
    rest_rows = np.unique(ri[~alone])
    if len(rest_rows):
        rest_cols = np.unique(ci[~alone])
        sub = np.where(valid[np.ix_(rest_rows, rest_cols)], score[np.ix_(rest_rows, rest_cols)], 0.0)
        r, c = linear_sum_assignment(-sub)
        pairs += [(int(rest_rows[i]), int(rest_cols[j])) for i, j in zip(r, c) if sub[i, j] > 0]
    for i, j in pairs:
        matched_t[i] = matched_d[j] = True
    return pairs


def _covered_tracks(tmask: torch.Tensor, tpk: np.ndarray | None, tb: np.ndarray, tcls: np.ndarray,
                    matched_t: np.ndarray, config: AssociationConfig) -> list[int]:
    """Unmatched, non-empty tracks with >= ``duplicate_coverage`` of their pixels inside a matched track: a
    second track on an already tracked object (or a part of it). The registry counts them as invisible."""
    unmatched = np.flatnonzero(~matched_t)
    matched = np.flatnonzero(matched_t)
    if not len(unmatched) or not len(matched):
        return []
    cand = _box_overlap(tb[unmatched], tb[matched])
    if config.class_aware:
        cand &= tcls[unmatched][:, None] == tcls[matched][None, :]
    rows = np.flatnonzero(cand.any(axis=1))
    if not len(rows):
        return []
    if tpk is not None:
        ui, mi = np.nonzero(cand[rows])
        inter = np.zeros((len(rows), len(matched)), np.float64)
        inter[ui, mi] = _pair_intersections(tpk, tpk, unmatched[rows][ui], matched[mi], tb, tb)
        area = _areas(tpk[unmatched[rows]])
        cov = np.where(area[:, None] > 0, inter / np.maximum(area[:, None], 1), 0.0)
    else:
        sel_u = torch.as_tensor(unmatched[rows], device=tmask.device)
        sel_m = torch.as_tensor(matched, device=tmask.device)
        cov = mask_coverage_matrix(tmask[sel_u], tmask[sel_m]).double().cpu().numpy()
        cov = np.where(cand[rows], cov, 0.0)
    return [int(i) for i in unmatched[rows][cov.max(axis=1) >= config.duplicate_coverage]]


def _box_fallback(iou: np.ndarray, coverage: np.ndarray, cand: np.ndarray, tb: np.ndarray, db: np.ndarray,
                  t_nonempty: np.ndarray, d_nonempty: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pairs where a mask vanished at the working resolution (thinner than the subsampling stride) but its
    box did not are scored by box IoU / box coverage instead, so a thin object is not a new track on
    every keyframe."""
    t_thin = ~t_nonempty & (tb[:, 2] > tb[:, 0])
    d_thin = ~d_nonempty & (db[:, 2] > db[:, 0])
    if not (t_thin.any() or d_thin.any()):
        return iou, coverage
    fix = cand & (t_thin[:, None] | d_thin[None, :])
    if not fix.any():
        return iou, coverage
    box_iou = _box_iou(tb, db)
    iw = np.clip(np.minimum(tb[:, None, 2], db[None, :, 2]) - np.maximum(tb[:, None, 0], db[None, :, 0]), 0, None)
    ih = np.clip(np.minimum(tb[:, None, 3], db[None, :, 3]) - np.maximum(tb[:, None, 1], db[None, :, 1]), 0, None)
    d_area = ((db[:, 2] - db[:, 0]) * (db[:, 3] - db[:, 1])).astype(np.float64)
    box_cov = (iw * ih) / np.maximum(d_area[None, :], 1)  # T x D: share of the detection box inside the track's
    iou = np.where(fix, box_iou, iou).astype(np.float32)
    coverage = np.where(fix.T, box_cov.T, coverage).astype(np.float32)
    return iou, coverage


def _nonempty(masks: torch.Tensor, packed: np.ndarray | None) -> np.ndarray:
    if packed is not None:
        return packed.reshape(len(packed), -1).any(axis=1)
    n = int(masks.shape[0])
    if n == 0:
        return np.zeros(0, bool)
    return masks.reshape(n, -1).any(dim=1).cpu().numpy()


def _box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a.astype(np.float64)
    b = b.astype(np.float64)
    iw = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    ih = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = iw * ih
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-9), 0.0)


def _dedupe_new(fresh: list[int], overlaps: Any, db: np.ndarray, dcls: np.ndarray,
                dscore: np.ndarray | None, config: AssociationConfig) -> tuple[list[int], list[int]]:
    """Greedy by score: a new detection overlapping an accepted one (IoU >= threshold, or mostly inside it)
    is a duplicate. ``overlaps(sel)`` gives the selected detections' IoU and row-inside-column coverage
    matrices (from bit-packed host masks, or the mask ops on the device). Returns (kept in acceptance
    order, duplicates)."""
    order = sorted(fresh, key=lambda j: ((-dscore[j]) if dscore is not None else 0.0, j))
    sel = np.asarray(order)
    boxes = db[sel]
    cand = _box_overlap(boxes, boxes)
    if config.class_aware:
        cand &= dcls[sel][:, None] == dcls[sel][None, :]
    np.fill_diagonal(cand, False)
    if not cand.any():
        return order, []
    iou, cov = overlaps(sel)
    iou, cov = np.where(cand, iou, 0.0), np.where(cand, cov, 0.0)
    n = len(sel)
    kept: list[int] = []
    dups: list[int] = []
    for a in range(n):
        if any(iou[a, k] >= config.iou_threshold or cov[a, k] >= config.duplicate_coverage for k in kept):
            dups.append(int(sel[a]))
        else:
            kept.append(a)
    return [int(sel[k]) for k in kept], dups


def _packed_overlaps(packed: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """IoU and row-inside-column coverage among bit-packed masks (pairs whose boxes overlap; others 0)."""
    cand = _box_overlap(boxes, boxes)
    np.fill_diagonal(cand, False)
    ai, bi = np.nonzero(np.triu(cand))
    n = len(packed)
    inter = np.zeros((n, n), np.float64)
    inter[ai, bi] = _pair_intersections(packed, packed, ai, bi, boxes, boxes)
    inter = np.maximum(inter, inter.T)
    area = _areas(packed)
    union = area[:, None] + area[None, :] - inter
    iou = np.where(union > 0, inter / np.maximum(union, 1), 0.0)
    cov = np.where(area[:, None] > 0, inter / np.maximum(area[:, None], 1), 0.0)  # row inside column
    return iou, cov


def _vector(name: str, values: Any, n: int, dtype: type) -> np.ndarray:
    if values is None:
        return np.zeros(n, dtype)
    arr = values.detach().cpu().numpy() if isinstance(values, torch.Tensor) else np.asarray(values)
    arr = arr.reshape(-1).astype(dtype, copy=False)
    if len(arr) != n:
        raise ModelError(f"association got {len(arr)} {name} for {n} masks")
    return arr


def _working_boxes(name: str, boxes: Any, masks: torch.Tensor, n: int, sx: float, sy: float,
                   h: int, w: int) -> np.ndarray:
    """N x 4 int64 half-open boxes in working pixels, padded by one pixel; empty boxes become (0,0,0,0)."""
    if boxes is None:
        return _boxes_from_masks(masks)
    arr = boxes.detach().cpu().numpy() if isinstance(boxes, torch.Tensor) else np.asarray(boxes)
    arr = arr.astype(np.float64, copy=False).reshape(-1, 4) if arr.size or n == 0 else arr.reshape(0, 4)
    if len(arr) != n:
        raise ModelError(f"association got {len(arr)} {name} for {n} masks")
    if not np.isfinite(arr).all():
        raise ModelError(f"association {name} contain NaN or infinite values")
    empty = (arr[:, 2] <= arr[:, 0]) | (arr[:, 3] <= arr[:, 1])
    out = np.empty((n, 4), np.int64)
    out[:, 0] = np.clip(np.floor(arr[:, 0] * sx) - 1, 0, w)
    out[:, 1] = np.clip(np.floor(arr[:, 1] * sy) - 1, 0, h)
    out[:, 2] = np.clip(np.ceil(arr[:, 2] * sx) + 1, 0, w)
    out[:, 3] = np.clip(np.ceil(arr[:, 3] * sy) + 1, 0, h)
    out[empty] = 0
    return out


def _boxes_from_masks(masks: torch.Tensor) -> np.ndarray:
    m = _as_numpy(masks)
    n = len(m)
    out = np.zeros((n, 4), np.int64)
    if n == 0:
        return out
    rows, cols = m.any(axis=2), m.any(axis=1)
    present = rows.any(axis=1)
    h, w = rows.shape[1], cols.shape[1]
    out[:, 0] = np.argmax(cols, axis=1)
    out[:, 1] = np.argmax(rows, axis=1)
    out[:, 2] = w - np.argmax(cols[:, ::-1], axis=1)
    out[:, 3] = h - np.argmax(rows[:, ::-1], axis=1)
    out[~present] = 0
    return out


def _box_overlap(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """A x B bool: the half-open integer boxes share at least one pixel."""
    if not len(a) or not len(b):
        return np.zeros((len(a), len(b)), bool)
    x0 = np.maximum(a[:, None, 0], b[None, :, 0])
    y0 = np.maximum(a[:, None, 1], b[None, :, 1])
    x1 = np.minimum(a[:, None, 2], b[None, :, 2])
    y1 = np.minimum(a[:, None, 3], b[None, :, 3])
    return (x1 > x0) & (y1 > y0)


def _use_dense(masks: torch.Tensor, tb: np.ndarray, db: np.ndarray, ti: np.ndarray, di: np.ndarray,
               t: int, d: int, pixels: int) -> bool:
    if masks.device.type != "cpu":
        return True
    if not len(ti):
        return False
    w = np.minimum(tb[ti, 2], db[di, 2]) - np.maximum(tb[ti, 0], db[di, 0])
    h = np.minimum(tb[ti, 3], db[di, 3]) - np.maximum(tb[ti, 1], db[di, 1])
    words = float((h * (w // _WORD + 2)).sum())
    return words > _DENSE_RATIO * t * d * pixels


def _as_numpy(masks: torch.Tensor) -> np.ndarray:
    """Bool numpy view of the masks (zero-copy on CPU, strided views included)."""
    return masks.detach().cpu().numpy()


def _pack(masks: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """N x H x W bool -> N x H x ceil(W / 64) uint64 (word k of a row holds pixels 64k .. 64k + 63).

    Only the rows inside each mask's box are read (and, when W is a multiple of 64, only the 64-pixel words
    spanning the box); everything outside a box is taken as empty, the same contract the pair counts rely
    on. That is most of the speed at 100 masks: the full masks are several MB and would be pulled from
    memory just to find zeros.
    """
    n, h, w = masks.shape
    nw = (w + _WORD - 1) // _WORD
    out = np.zeros(n * h * nw, np.uint64)
    heights = np.clip(boxes[:, 3] - boxes[:, 1], 0, None)
    total = int(heights.sum())
    if not total:
        return out.reshape(n, h, nw)
    which = np.repeat(np.arange(n), heights)
    first = np.cumsum(heights) - heights
    rows = boxes[which, 1] + (np.arange(total) - first[which])
    flat_rows = which * h + rows
    if w % _WORD == 0 and masks.flags.c_contiguous:
        span = int(((boxes[:, 2] + _WORD - 1) // _WORD - boxes[:, 0] // _WORD).max())
        span = min(max(span, 1), nw)
        # windows of `span` words that start on a word boundary and cover each box's columns
        c0 = np.minimum(boxes[which, 0] // _WORD, nw - span)
        windows = np.lib.stride_tricks.sliding_window_view(masks.reshape(n * h, w), span * _WORD, axis=1)
        pixels = windows[flat_rows, c0 * _WORD]  # R x span*64, one contiguous copy per row
        words = np.packbits(pixels, axis=1).view(np.uint64)  # R x span
        out[(flat_rows * nw + c0)[:, None] + np.arange(span)] = words
    else:
        packed = np.packbits(masks[which, rows], axis=1)  # R x ceil(w/8) bytes; works on strided views
        padded = np.zeros((total, nw * 8), np.uint8)
        padded[:, : packed.shape[1]] = packed
        out[(flat_rows * nw)[:, None] + np.arange(nw)] = padded.view(np.uint64)
    return out.reshape(n, h, nw)


def _areas(packed: np.ndarray) -> np.ndarray:
    return np.bitwise_count(packed).sum(axis=(1, 2), dtype=np.int64).astype(np.float64)


def _pair_intersections(a: np.ndarray, b: np.ndarray, ia: np.ndarray, ib: np.ndarray,
                        ba: np.ndarray, bb: np.ndarray) -> np.ndarray:
    """|a[ia[p]] & b[ib[p]]| for each candidate pair p, from bit-packed masks (see :func:`_pack`).

    Only the rows and 64-pixel words inside the pair's box intersection are read: every pixel set in both
    masks lies inside both boxes, so nothing outside needs masking. Each pair's rows are cut into chunks of
    ``_CHUNK_ROWS`` so that all pairs go through one fixed-shape gather (no per-size Python loop).
    """
    n_pairs = len(ia)
    if n_pairs == 0:
        return np.zeros(0, np.float64)
    h, nw = a.shape[1], a.shape[2]
    y0 = np.maximum(ba[ia, 1], bb[ib, 1])
    y1 = np.minimum(ba[ia, 3], bb[ib, 3])
    w0 = np.maximum(ba[ia, 0], bb[ib, 0]) // _WORD
    w1 = (np.minimum(ba[ia, 2], bb[ib, 2]) + _WORD - 1) // _WORD
    chunks = np.maximum((y1 - y0 + _CHUNK_ROWS - 1) // _CHUNK_ROWS, 1)
    pair = np.repeat(np.arange(n_pairs), chunks)
    first = np.cumsum(chunks) - chunks
    rows = (y0[pair] + _CHUNK_ROWS * (np.arange(len(pair)) - first[pair]))[:, None] + np.arange(_CHUNK_ROWS)
    gw = int((w1 - w0).max())
    words = w0[pair][:, None] + np.arange(gw)  # C x gw
    valid = (rows < y1[pair][:, None])[:, :, None] & (words < w1[pair][:, None])[:, None, :]
    rows = np.minimum(rows, h - 1)[:, :, None]
    words = np.minimum(words, nw - 1)[:, None, :]
    both = a[ia[pair][:, None, None], rows, words] & b[ib[pair][:, None, None], rows, words]
    counts = np.bitwise_count(both)
    counts *= valid
    per_chunk = counts.reshape(len(pair), -1).sum(axis=1, dtype=np.int64)
    return np.bincount(pair, weights=per_chunk, minlength=n_pairs)
