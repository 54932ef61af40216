"""KeyframePolicy: first frame, fixed interval, score-crossing and scene-cut triggers, minimum gap."""

from __future__ import annotations

import numpy as np
import pytest

from gsam2_video.config import KeyframeConfig
from gsam2_video.errors import ConfigError, ModelError
from gsam2_video.tracking import KeyframePolicy
from gsam2_video.tracking.keyframes import frame_histogram, histogram_distance


def frame(value: int, h: int = 120, w: int = 160) -> np.ndarray:
    img = np.zeros((h, w, 3), np.uint8)
    img[:, : w // 2] = value
    img[:, w // 2:] = (value + 40) % 256
    return img


def keyframes(policy: KeyframePolicy, n: int, images=None, scores=None) -> list[tuple[int, str]]:
    out = []
    for t in range(n):
        yes, reason = policy.is_keyframe(images(t) if images else frame(100),
                                         scores(t) if scores else {1: 2.0})
        if yes:
            out.append((t, reason))
        else:
            assert reason == ""
    return out


def test_first_frame_and_every_k() -> None:
    pol = KeyframePolicy(KeyframeConfig(detect_every=4))
    assert keyframes(pol, 13) == [(0, "first"), (4, "interval"), (8, "interval"), (12, "interval")]
    assert pol.frames_processed == 13


def test_detect_every_one_makes_every_frame_a_keyframe() -> None:
    pol = KeyframePolicy(KeyframeConfig(detect_every=1))
    assert [t for t, _ in keyframes(pol, 5)] == [0, 1, 2, 3, 4]


def test_score_crossing_triggers_once_and_resets_the_interval() -> None:
    pol = KeyframePolicy(KeyframeConfig(detect_every=10, min_gap=2, scene_cut_threshold=None))

    def scores(t: int) -> dict[int, float]:
        return {1: 3.0, 2: (1.0 if t < 5 else -2.0)}  # track 2 lost at frame 5 and stays lost

    # lost at 5 -> keyframe 5 ("score"); staying lost does not re-trigger; interval counts from 5
    assert keyframes(pol, 21, scores=scores) == [(0, "first"), (5, "score"), (15, "interval")]


def test_score_trigger_waits_for_min_gap_and_is_dropped_if_the_track_recovers() -> None:
    pol = KeyframePolicy(KeyframeConfig(detect_every=10, min_gap=3, scene_cut_threshold=None))

    def scores(t: int) -> dict[int, float]:
        return {7: (-1.0 if 1 <= t <= 4 else 1.0)}  # lost at 1 (gap 1 < 3), still lost at 3 -> fires at 3

    assert keyframes(pol, 8, scores=scores) == [(0, "first"), (3, "score")]

    pol = KeyframePolicy(KeyframeConfig(detect_every=10, min_gap=3, scene_cut_threshold=None))

    def recovers(t: int) -> dict[int, float]:
        return {7: (-1.0 if t == 1 else 1.0)}  # lost at 1, back at 2 -> nothing pending at 3

    assert keyframes(pol, 8, scores=recovers) == [(0, "first")]


def test_removed_tracks_do_not_keep_a_trigger_pending() -> None:
    pol = KeyframePolicy(KeyframeConfig(detect_every=10, min_gap=3, scene_cut_threshold=None))

    def scores(t: int) -> dict[int, float]:
        return {4: -1.0} if t == 1 else {}

    assert keyframes(pol, 6, scores=scores) == [(0, "first")]


def test_score_trigger_can_be_disabled() -> None:
    pol = KeyframePolicy(KeyframeConfig(detect_every=6, score_trigger=False, scene_cut_threshold=None))
    assert keyframes(pol, 7, scores=lambda t: {1: -1.0 if t >= 2 else 1.0}) == [(0, "first"), (6, "interval")]


def test_scene_cut_triggers_and_respects_min_gap() -> None:
    def images(t: int) -> np.ndarray:
        return frame(100) if t < 4 else frame(220)  # hard cut at 4

    pol = KeyframePolicy(KeyframeConfig(detect_every=10, min_gap=2))
    assert keyframes(pol, 12, images=images) == [(0, "first"), (4, "scene_cut")]
    assert pol.last_distance == 0.0

    # a cut one frame after a keyframe waits for the gap (min_gap 3): fires at 3
    def early(t: int) -> np.ndarray:
        return frame(100) if t < 1 else frame(220)

    pol = KeyframePolicy(KeyframeConfig(detect_every=10, min_gap=3))
    assert keyframes(pol, 6, images=early) == [(0, "first"), (3, "scene_cut")]


def test_small_changes_are_not_cuts_and_cuts_can_be_disabled() -> None:
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (90, 160, 3), dtype=np.uint8)

    def noisy(t: int) -> np.ndarray:
        return np.clip(base.astype(int) + rng.integers(-3, 4, base.shape), 0, 255).astype(np.uint8)

    pol = KeyframePolicy(KeyframeConfig(detect_every=50))
    assert keyframes(pol, 20, images=noisy) == [(0, "first")]
    assert pol.last_distance < 0.2
    off = KeyframePolicy(KeyframeConfig(detect_every=50, scene_cut_threshold=None))
    assert keyframes(off, 8, images=lambda t: frame(100 if t % 2 else 220)) == [(0, "first")]


def test_image_may_be_none() -> None:
    pol = KeyframePolicy(KeyframeConfig(detect_every=3))
    assert [pol.is_keyframe(None)[0] for _ in range(4)] == [True, False, False, True]


def test_histogram_distance_bounds() -> None:
    black = frame_histogram(np.zeros((50, 50, 3), np.uint8))
    white = frame_histogram(np.full((50, 50, 3), 255, np.uint8))
    assert histogram_distance(black, white) == 1.0
    assert histogram_distance(black, black) == 0.0
    gray = frame_histogram(np.zeros((50, 50), np.uint8))
    assert gray.shape == (8,) and histogram_distance(gray, black) == 1.0
    assert black.sum() == pytest.approx(1.0)


def test_bad_input() -> None:
    with pytest.raises(ConfigError, match="--detect-every"):
        KeyframePolicy(KeyframeConfig(detect_every=0))
    pol = KeyframePolicy(KeyframeConfig())
    with pytest.raises(ModelError, match="image"):
        pol.is_keyframe(np.zeros((4,), np.uint8))
    with pytest.raises(ModelError, match="channels"):
        pol.is_keyframe(np.zeros((4, 4, 2), np.uint8))
