"""associate(): exact agreement with the dense mask-IoU ops, box prefilter, resolution handling, assignment rules."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gsam2_video.compose import masks_to_boxes
from gsam2_video.config import AssociationConfig
from gsam2_video.errors import ConfigError, ModelError
from gsam2_video.ops.mask_iou import mask_coverage_matrix, mask_iou_matrix
from gsam2_video.tracking import associate, association

H, W = 48, 64


def rect(x0: int, y0: int, x1: int, y1: int, h: int = H, w: int = W) -> torch.Tensor:
    m = torch.zeros(h, w, dtype=torch.bool)
    m[y0:y1, x0:x1] = True
    return m


def tight(masks: torch.Tensor) -> np.ndarray:
    """Tight pixel-edge xyxy boxes, as the pipeline passes them to ``associate``."""
    return masks_to_boxes(masks.bool()).numpy()


def random_blobs(rng: np.random.Generator, n: int, h: int, w: int, max_size: int) -> torch.Tensor:
    masks = torch.zeros(n, h, w, dtype=torch.bool)
    for i in range(n):
        bh, bw = rng.integers(1, max_size, 2)
        y, x = rng.integers(0, h - bh), rng.integers(0, w - bw)
        blob = torch.from_numpy(rng.random((bh, bw)) < 0.7)
        masks[i, y:y + bh, x:x + bw] = blob
    return masks


def run(tracks: list[torch.Tensor], dets: list[torch.Tensor], config: AssociationConfig | None = None,
        track_ids: list[int] | None = None, tcls=None, dcls=None, **kw):
    tm = torch.stack(tracks) if tracks else torch.zeros(0, H, W, dtype=torch.bool)
    dm = torch.stack(dets) if dets else torch.zeros(0, H, W, dtype=torch.bool)
    ids = track_ids if track_ids is not None else list(range(1, len(tracks) + 1))
    return associate(ids, tm, tight(tm), tcls if tcls is not None else np.zeros(len(tm)), dm, tight(dm),
                     dcls if dcls is not None else np.zeros(len(dm)), config or AssociationConfig(), **kw)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sparse_iou_and_coverage_equal_dense_ops(seed: int) -> None:
    rng = np.random.default_rng(seed)
    tm = random_blobs(rng, 30, 120, 160, 40)
    dm = random_blobs(rng, 25, 120, 160, 40)
    res = associate(list(range(1, 31)), tm, tight(tm), np.zeros(30), dm, tight(dm), np.zeros(25),
                    AssociationConfig())
    np.testing.assert_array_equal(res.iou, mask_iou_matrix(tm, dm).numpy())
    np.testing.assert_array_equal(res.coverage, mask_coverage_matrix(dm, tm).numpy())


@pytest.mark.parametrize("ratio", [0.0, float("inf")])
def test_dense_and_sparse_paths_give_the_same_numbers(monkeypatch: pytest.MonkeyPatch, ratio: float) -> None:
    # ratio 0 forces the dense ops, inf the sparse bit-packed gather; full-frame random masks overlap everywhere
    monkeypatch.setattr(association, "_DENSE_RATIO", ratio)
    rng = np.random.default_rng(5)
    tm = torch.from_numpy(rng.random((6, H, W + 3)) < 0.5)
    dm = torch.from_numpy(rng.random((5, H, W + 3)) < 0.5)
    res = associate(list(range(1, 7)), tm, None, None, dm, None, None, AssociationConfig())
    np.testing.assert_allclose(res.iou, mask_iou_matrix(tm, dm).numpy(), rtol=0, atol=1e-6)
    np.testing.assert_allclose(res.coverage, mask_coverage_matrix(dm, tm).numpy(), rtol=0, atol=1e-6)


def test_boxes_computed_from_masks_when_none() -> None:
    rng = np.random.default_rng(3)
    tm = random_blobs(rng, 12, H, W, 20)
    dm = random_blobs(rng, 10, H, W, 20)
    with_boxes = associate(list(range(1, 13)), tm, tight(tm), None, dm, tight(dm), None, AssociationConfig())
    without = associate(list(range(1, 13)), tm, None, None, dm, None, None, AssociationConfig())
    np.testing.assert_array_equal(with_boxes.iou, without.iou)
    assert with_boxes.matches == without.matches


def test_large_masks_compared_at_working_resolution() -> None:
    # 540 x 960 masks with iou_max_side=256 -> stride 4 -> 135 x 240
    rng = np.random.default_rng(7)
    tm = random_blobs(rng, 8, 540, 960, 200)
    dm = random_blobs(rng, 8, 540, 960, 200)
    res = associate(list(range(1, 9)), tm, tight(tm), None, dm, tight(dm), None, AssociationConfig())
    ref = mask_iou_matrix(tm[:, ::4, ::4], dm[:, ::4, ::4]).numpy()
    np.testing.assert_array_equal(res.iou, ref)


def test_boxes_in_image_coordinates_are_scaled_to_mask_resolution() -> None:
    # masks at 48 x 64, boxes given for a 480 x 640 image
    t = rect(10, 10, 30, 30)
    d = rect(12, 12, 30, 30)
    tm, dm = torch.stack([t]), torch.stack([d])
    res = associate([5], tm, tight(tm) * 10, None, dm, tight(dm) * 10, None, AssociationConfig(),
                    image_size=(480, 640))
    assert res.iou[0, 0] == pytest.approx((18 * 18) / (20 * 20))
    assert res.matches == [(5, 0)]


def test_prefilter_skips_disjoint_boxes() -> None:
    # boxes claim the masks are far apart: their pixels are never compared, so IoU stays 0
    t = rect(0, 0, 20, 20)
    tm = torch.stack([t])
    wrong_box = np.array([[40, 30, 60, 45]], np.float32)
    res = associate([1], tm, wrong_box, None, tm.clone(), tight(tm), None, AssociationConfig())
    assert res.iou[0, 0] == 0.0
    assert res.matches == [] and res.new == [0]


def test_hungarian_beats_greedy_and_subthreshold_pairs_cannot_displace_matches() -> None:
    # track 1 overlaps det 0 (IoU 0.75) and det 1 (IoU 0.6); track 2 overlaps det 0 only (IoU 0.6).
    # Greedy on track 1 would take det 0 and leave track 2 unmatched; the optimum matches both.
    t1 = rect(0, 0, 40, 10)
    d0 = rect(0, 0, 30, 10)
    t2 = rect(0, 0, 18, 10)
    d1 = rect(16, 0, 40, 10)
    res = run([t1, t2], [d0, d1])
    assert res.iou[0, 0] == pytest.approx(0.75)
    assert res.iou[1, 0] == pytest.approx(0.6)
    assert res.iou[0, 1] == pytest.approx(0.6)
    assert res.matches == [(2, 0), (1, 1)]
    assert res.unmatched_tracks == [] and res.new == [] and res.duplicates == []


@pytest.mark.parametrize("weak_iou", [None, 0.25])
def test_threshold_refresh_weak_pass_and_unmatched_tracks(weak_iou: float | None) -> None:
    a = rect(0, 0, 20, 20)
    b = rect(30, 0, 50, 20)
    c = rect(0, 30, 20, 45)
    e = rect(30, 28, 50, 46)
    drifted = rect(30, 0, 45, 20)  # IoU 0.75 with b: match, below refresh_iou 0.8
    part = rect(0, 30, 12, 45)  # IoU 0.6 with c: below the 0.65 threshold, 100 % inside c
    shifted = rect(40, 28, 60, 46)  # IoU 0.33 with e, half inside it
    cfg = AssociationConfig(iou_threshold=0.65, refresh_iou=0.8, weak_iou=weak_iou)
    res = run([a, b, c, e], [a.clone(), drifted, part, shifted], cfg, track_ids=[4, 7, 9, 2])
    assert res.iou[3, 3] == pytest.approx(1 / 3) and res.coverage[3, 3] == pytest.approx(0.5)
    if weak_iou is None:  # no second pass: the part is a duplicate of track 9, the shifted one a new object
        assert res.matches == [(4, 0), (7, 1)] and res.refresh == [(7, 1)]
        assert res.unmatched_tracks == [9, 2] and res.duplicates == [2] and res.new == [3]
    else:  # second pass: both are the tracked objects; only the shifted one re-prompts its track
        assert res.matches == [(4, 0), (7, 1), (9, 2), (2, 3)] and res.refresh == [(7, 1), (2, 3)]
        assert res.unmatched_tracks == [] and res.duplicates == [] and res.new == []


def test_lost_track_reacquires_a_detection_near_its_last_box() -> None:
    empty = torch.zeros(H, W, dtype=torch.bool)
    seen = rect(40, 5, 60, 25)
    masks = [empty, seen, empty]  # tracks 3 and 8 are lost (empty masks), track 5 visible
    last = np.array([[0, 0, 20, 20], [40, 5, 60, 25], [0, 28, 14, 44]], np.float32)
    back = rect(3, 2, 22, 21)  # near track 3's last box: box IoU 0.67
    stranger = rect(30, 30, 50, 46)  # far from track 8's last box
    tm = torch.stack(masks)
    dm = torch.stack([stranger, back, seen.clone()])
    common = (tm, tight(tm), None, dm, tight(dm), None)
    res = associate([3, 5, 8], *common[:3], *common[3:], AssociationConfig(), lost_boxes=last)
    assert res.matches == [(3, 1), (5, 2)]
    assert res.reacquired == [(3, 1)] and res.refresh == [(3, 1)]
    assert res.new == [0] and res.unmatched_tracks == [8]
    without = associate([3, 5, 8], *common[:3], *common[3:], AssociationConfig())
    assert without.matches == [(5, 2)] and without.new == [0, 1] and without.reacquired == []
    off = associate([3, 5, 8], *common[:3], *common[3:], AssociationConfig(reacquire_iou=None), lost_boxes=last)
    assert off.reacquired == [] and off.new == [0, 1]
    aware = associate([3, 5, 8], tm, tight(tm), [1, 0, 0], dm, tight(dm), [0, 0, 0],
                      AssociationConfig(class_aware=True), lost_boxes=last)
    assert aware.reacquired == [] and aware.new == [0, 1]


def test_visible_tracks_never_reacquire_by_box() -> None:
    t = rect(0, 0, 20, 20)
    d = rect(24, 0, 44, 20)  # no pixel overlap with the visible track
    res = run([t], [d], lost_boxes=np.array([[20, 0, 40, 20]], np.float32))
    assert res.reacquired == [] and res.new == [0]


def test_duplicate_parts_and_new_objects() -> None:
    obj = rect(0, 0, 30, 30)
    part = rect(0, 0, 12, 30)  # 100 % inside the track
    half_out = rect(20, 0, 40, 30)  # half inside: below duplicate_coverage 0.6 -> new
    far = rect(45, 35, 60, 47)
    res = run([obj], [part, obj.clone(), half_out, far])
    assert res.matches == [(1, 1)]
    assert res.duplicates == [0]
    assert res.new == [2, 3]


def test_overlapping_new_detections_keep_the_best_scored_one() -> None:
    a = rect(5, 5, 25, 25)
    a2 = rect(6, 5, 25, 25)  # same object again
    inner = rect(8, 8, 16, 16)  # a part of it
    other = rect(40, 30, 60, 45)
    res = run([], [a2, inner, other, a], det_scores=[0.5, 0.95, 0.7, 0.9])
    # scores: inner 0.95 accepted first; a (0.9) is not inside inner (coverage 0.16) and IoU 0.16 -> kept;
    # other kept; a2 overlaps a (IoU 0.95) -> duplicate
    assert res.new == [1, 3, 2]
    assert res.duplicates == [0]


def test_class_aware_matching() -> None:
    obj = rect(0, 0, 30, 30)
    agnostic = run([obj], [obj.clone()], tcls=[0], dcls=[1])
    assert agnostic.matches == [(1, 0)]
    aware = run([obj], [obj.clone()], AssociationConfig(class_aware=True), tcls=[0], dcls=[1])
    assert aware.matches == [] and aware.new == [0] and aware.unmatched_tracks == [1]
    assert aware.iou[0, 0] == 0.0
    same = run([obj], [obj.clone()], AssociationConfig(class_aware=True), tcls=[2], dcls=[2])
    assert same.matches == [(1, 0)]


def test_empty_inputs() -> None:
    none = run([], [])
    assert none.matches == [] and none.new == [] and none.iou.shape == (0, 0)
    only_tracks = run([rect(0, 0, 5, 5)], [], track_ids=[3])
    assert only_tracks.unmatched_tracks == [3] and only_tracks.iou.shape == (1, 0)
    only_dets = run([], [rect(0, 0, 5, 5), rect(10, 10, 20, 20)])
    assert only_dets.new == [0, 1] and only_dets.coverage.shape == (2, 0)
    invisible = run([torch.zeros(H, W, dtype=torch.bool)], [rect(0, 0, 5, 5)], track_ids=[2])
    assert invisible.unmatched_tracks == [2] and invisible.new == [0]


def test_bad_inputs_raise_one_line_errors() -> None:
    m = torch.stack([rect(0, 0, 5, 5)])
    with pytest.raises(ModelError, match="track ids"):
        associate([1, 2], m, None, None, m, None, None, AssociationConfig())
    with pytest.raises(ModelError, match="repeated"):
        associate([1, 1], torch.cat([m, m]), None, None, m, None, None, AssociationConfig())
    with pytest.raises(ModelError, match="one resolution"):
        associate([1], m, None, None, torch.zeros(1, 10, 10, dtype=torch.bool), None, None, AssociationConfig())
    with pytest.raises(ModelError, match="detection boxes"):
        associate([1], m, None, None, m, np.zeros((2, 4)), None, AssociationConfig())
    with pytest.raises(ModelError, match="logits"):
        associate([1], m.float(), None, None, m, None, None, AssociationConfig())
    with pytest.raises(ConfigError, match="iou threshold"):
        associate([1], m, None, None, m, None, None, AssociationConfig(iou_threshold=1.5))


@pytest.mark.parametrize("ratio", [0.0, float("inf")])
def test_covered_tracks(monkeypatch: pytest.MonkeyPatch, ratio: float) -> None:
    monkeypatch.setattr(association, "_DENSE_RATIO", ratio)
    big, inner, apart = rect(0, 0, 30, 30), rect(5, 5, 20, 20), rect(40, 0, 60, 20)
    res = run([big, inner, apart], [big.clone()], track_ids=[1, 2, 3])
    assert res.matches == [(1, 0)] and res.unmatched_tracks == [2, 3]
    assert res.covered_tracks == [2]
    aware = run([big, inner], [big.clone()], AssociationConfig(class_aware=True), tcls=[0, 1], dcls=[0])
    assert aware.covered_tracks == []


def test_masks_thinner_than_the_stride_fall_back_to_boxes() -> None:
    # 1080 x 1920 masks are compared at stride 8; a 3 px wide pole (columns 101..103) vanishes there
    pole = torch.zeros(1, 1080, 1920, dtype=torch.bool)
    pole[0, 200:600, 101:104] = True
    box = np.array([[101, 200, 104, 600]], np.float32)
    res = associate([7], pole, box, None, pole.clone(), box, None, AssociationConfig())
    assert res.matches == [(7, 0)] and res.new == []
    far = torch.zeros(1, 1080, 1920, dtype=torch.bool)
    far[0, 200:600, 1501:1504] = True
    res = associate([7], pole, box, None, far, box + [1400, 0, 1400, 0], None, AssociationConfig())
    assert res.matches == [] and res.new == [0]
