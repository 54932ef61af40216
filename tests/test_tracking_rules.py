"""Unit tests of issue 14's rules on tiny inputs: score-trigger rate limit, two-stage split and matching,
constant-velocity prediction, occlusion tolerance sizing, confirmation settings and their validation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gsam2_video.compose import masks_to_boxes
from gsam2_video.config import AssociationConfig, KeyframeConfig
from gsam2_video.errors import ConfigError
from gsam2_video.tracking import KeyframePolicy, TrackRegistry
from gsam2_video.tracking.lifecycle import resolve_max_lost_frames
from gsam2_video.tracking.two_stage import associate_two_stage, split_scores

H, W = 40, 80


def rect(x0: int, y0: int, x1: int, y1: int) -> torch.Tensor:
    m = torch.zeros(H, W, dtype=torch.bool)
    m[y0:y1, x0:x1] = True
    return m


def test_score_triggers_cannot_chain() -> None:
    """Tracks 1, 2, 3 are lost at frames 2, 4 and 6: one score keyframe (2), then the interval from there."""
    def scores(t: int) -> dict[int, float]:
        return {1: -1.0 if t >= 2 else 1.0, 2: -1.0 if t >= 4 else 1.0, 3: -1.0 if t >= 6 else 1.0}

    def run(config: KeyframeConfig) -> list[tuple[int, str]]:
        pol = KeyframePolicy(config)
        return [(t, r) for t in range(25) for yes, r in [pol.is_keyframe(None, scores(t))] if yes]

    base = {"detect_every": 10, "min_gap": 2, "scene_cut_threshold": None}
    assert run(KeyframeConfig(**base)) == [(0, "first"), (2, "score"), (12, "interval"), (22, "interval")]
    # the gap is configurable; 2 lets every loss trigger as before
    assert run(KeyframeConfig(**base, score_trigger_gap=2)) == [
        (0, "first"), (2, "score"), (4, "score"), (6, "score"), (16, "interval")]


def test_score_trigger_gap_is_measured_from_the_last_score_keyframe() -> None:
    pol = KeyframePolicy(KeyframeConfig(detect_every=10, min_gap=2, score_trigger_gap=5, scene_cut_threshold=None))
    lost_at = {3: 1, 6: 2, 9: 3}  # track lost at frame t (once)
    out = []
    live: dict[int, float] = {1: 1.0, 2: 1.0, 3: 1.0}
    for t in range(12):
        if t in lost_at:
            live[lost_at[t]] = -1.0
        yes, r = pol.is_keyframe(None, dict(live))
        if yes:
            out.append((t, r))
    # 3: score; 6 is only 3 frames after it (pending until the gap allows at 8, the track still lost)
    assert out == [(0, "first"), (3, "score"), (8, "score")]


def test_split_scores() -> None:
    cfg = AssociationConfig(low_score_threshold=0.2)
    hi, lo = split_scores(np.array([0.9, 0.35, 0.3, 0.1, 0.36]), 0.35, cfg)
    assert hi.tolist() == [0, 4] and lo.tolist() == [1, 2]  # > 0.35 confident, [0.2, 0.35] weak, 0.1 ignored
    hi, lo = split_scores(np.array([0.9, 0.3]), 0.35, AssociationConfig(low_score_threshold=None))
    assert hi.tolist() == [0, 1] and lo.tolist() == []
    hi, lo = split_scores(np.array([0.9, 0.3]), None, cfg)
    assert hi.tolist() == [0, 1] and lo.tolist() == []


def test_two_stage_weak_detections_only_keep_visible_tracks() -> None:
    """Track 1 visible (weakly detected), track 2 lost (a weak detection at its last box), track 3 visible
    and confidently detected, plus a weak detection of nothing tracked."""
    t1, t3 = rect(2, 2, 12, 20), rect(50, 2, 60, 20)
    tm = torch.stack([t1, torch.zeros(H, W, dtype=torch.bool), t3])
    dm = torch.stack([t1, rect(20, 2, 30, 20), t3, rect(65, 25, 75, 38)])
    scores = [0.3, 0.3, 0.8, 0.25]
    cfg = AssociationConfig()
    lost = np.array([[0, 0, 0, 0], [20, 2, 30, 20], [0, 0, 0, 0]], np.float32)
    res = associate_two_stage([1, 2, 3], tm, masks_to_boxes(tm).numpy(), None, dm, masks_to_boxes(dm).numpy(),
                              None, scores, cfg, high_score=0.35, lost_boxes=lost)
    assert res.matches == [(3, 2)] and res.low_matches == [(1, 0)]
    assert res.low == [0, 1, 3] and res.new == [] and res.reacquired == [] and res.refresh == []
    assert res.unmatched_tracks == [2]
    assert res.iou.shape == (3, 4) and res.iou[0, 0] == pytest.approx(1.0) and res.iou[2, 2] == pytest.approx(1.0)
    # all confident: the lost track is re-acquired at its last box and the stray detection starts a track
    res = associate_two_stage([1, 2, 3], tm, None, None, dm, None, None, [0.9] * 4, cfg, high_score=0.35,
                              lost_boxes=lost)
    assert res.matches == [(1, 0), (2, 1), (3, 2)] and res.reacquired == [(2, 1)] and res.new == [3]

    reg = TrackRegistry(cfg)
    for _ in range(3):
        reg.new_track(0, "p", 0.9, 0)
    res = associate_two_stage([1, 2, 3], tm, None, None, dm, None, None, scores, cfg, high_score=0.35,
                              lost_boxes=lost)
    upd = reg.on_keyframe(res, scores, [0] * 4, None, {1: True, 2: False, 3: True}, 10)
    assert upd.created == [] and upd.removed == [] and reg.tracks[1].last_seen == 10
    assert reg.tracks[1].hits == 1 and reg.tracks[3].hits == 2  # a weak match casts no vote


def test_constant_velocity_prediction_from_observations() -> None:
    reg = TrackRegistry(AssociationConfig(max_lost_frames=20))
    tid = reg.new_track(0, "p", 0.9, 0)
    for t in range(5):
        reg.observe(t, {tid: [10 + 2 * t, 5, 20 + 2 * t, 25]})
    np.testing.assert_allclose(reg.predicted_boxes([tid], 14), [[38, 5, 48, 25]])  # 2 px/frame, 10 frames on
    np.testing.assert_allclose(reg.lost_boxes([tid]), [[18, 5, 28, 25]])
    # the extrapolation stops at max_lost_frames past the last observation
    np.testing.assert_allclose(reg.predicted_boxes([tid], 100), [[58, 5, 68, 25]])
    other = reg.new_track(0, "p", 0.9, 0)
    np.testing.assert_array_equal(reg.predicted_boxes([other], 3), [[0, 0, 0, 0]])


def test_prediction_reidentifies_where_the_last_box_does_not() -> None:
    tm = torch.zeros(1, H, W, dtype=torch.bool)
    dm = rect(40, 5, 50, 25)[None]
    last = np.array([[10, 5, 20, 25]], np.float32)
    pred = np.array([[39, 5, 49, 25]], np.float32)
    cfg = AssociationConfig()
    res = associate_two_stage([7], tm, None, None, dm, None, None, [0.9], cfg, high_score=0.35, lost_boxes=last)
    assert res.reacquired == [] and res.new == [0]
    res = associate_two_stage([7], tm, None, None, dm, None, None, [0.9], cfg, high_score=0.35, lost_boxes=last,
                              predicted_boxes=pred)
    assert res.reacquired == [(7, 0)] and res.refresh == [(7, 0)] and res.new == []


def test_max_lost_frames_defaults_to_two_seconds_of_video() -> None:
    cfg = AssociationConfig()
    assert resolve_max_lost_frames(cfg, 25.0) == 50
    assert resolve_max_lost_frames(cfg, 29.97) == 60
    assert resolve_max_lost_frames(cfg, None) == 60 and resolve_max_lost_frames(cfg, 0.0) == 60
    assert resolve_max_lost_frames(AssociationConfig(max_lost_frames=7), 25.0) == 7
    assert TrackRegistry(cfg, fps=10.0).max_lost_frames == 20


def test_confirmation_settings() -> None:
    def birth(cfg: AssociationConfig, score: float) -> TrackRegistry:
        from gsam2_video.tracking import AssociationResult

        reg = TrackRegistry(cfg)
        reg.on_keyframe(AssociationResult(new=[0]), [score], [0], None, {}, 0)
        return reg

    assert birth(AssociationConfig(), 0.6).is_confirmed(1)
    assert not birth(AssociationConfig(), 0.59).is_confirmed(1)
    assert birth(AssociationConfig(confirm_hits=0), 0.1).is_confirmed(1)  # confirmation off
    assert not birth(AssociationConfig(confirm_score=None), 0.99).is_confirmed(1)
    # k of n: 2 of the next 3 keyframes
    from gsam2_video.tracking import AssociationResult

    reg = birth(AssociationConfig(confirm_hits=2, confirm_window=3, confirm_score=None), 0.5)
    upd = reg.on_keyframe(AssociationResult(matches=[(1, 0)]), [0.5], [0], None, {1: True}, 10)
    assert upd.confirmed == [] and not reg.is_confirmed(1)
    upd = reg.on_keyframe(AssociationResult(unmatched_tracks=[1]), [], [], None, {1: True}, 20)
    assert upd.removed == []
    upd = reg.on_keyframe(AssociationResult(matches=[(1, 0)]), [0.5], [0], None, {1: True}, 30)
    assert upd.confirmed == [1] and reg.emittable(1)


@pytest.mark.parametrize("kwargs, match", [
    ({"max_lost_frames": 0}, "max lost frames"),
    ({"retire_unmatched_keyframes": 0}, "retire unmatched keyframes"),
    ({"confirm_hits": 3, "confirm_window": 2}, "confirm window"),
    ({"confirm_hits": -1}, "confirm hits"),
    ({"confirm_score": 1.5}, "confirm score"),
    ({"low_score_threshold": 0.0}, "low score threshold"),
])
def test_bad_settings_are_one_line_errors(kwargs: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        AssociationConfig(**kwargs).validate()


def test_bad_score_trigger_gap() -> None:
    with pytest.raises(ConfigError, match="score trigger gap"):
        KeyframeConfig(score_trigger_gap=0).validate()


def test_cli_lifecycle_options_map_onto_the_config() -> None:
    from gsam2_video.cli import build_parser
    from gsam2_video.cli.options import tracker_config

    def assoc(*extra: str) -> AssociationConfig:
        return tracker_config(build_parser().parse_args(["track", "x.mp4", "--prompt", "a.", *extra])).association

    assert assoc() == AssociationConfig()  # the CLI's defaults are the library's
    got = assoc("--max-lost-frames", "30", "--confirm-hits", "2", "--confirm-window", "3", "--confirm-score",
                "0.8", "--retire-after", "7", "--low-threshold", "0.1")
    assert (got.max_lost_frames, got.confirm_hits, got.confirm_window, got.confirm_score,
            got.retire_unmatched_keyframes, got.low_score_threshold) == (30, 2, 3, 0.8, 7, 0.1)
    off = assoc("--confirm-score", "0", "--retire-after", "0", "--low-threshold", "0")
    assert (off.confirm_hits, off.confirm_score, off.retire_unmatched_keyframes, off.low_score_threshold) == (
        0, None, None, None)
    with pytest.raises(ConfigError, match="confirm window"):
        assoc("--confirm-hits", "3")
