"""Issue 14's tracking rules end to end: the real Tracker driven by oracle models that replay scripted worlds.

The oracle detector / SAM 2 stand-in live in benchmarks/_oracle.py (the tracking-quality benchmark uses the
same ones): people are boxes rendered back to front, SAM 2 returns a person's visible region (empty with a
negative score while they are absent or occluded), box -> mask gives the visible region of the person the box
fits. Everything else (keyframe policy, two-stage association, lifecycle, back-fill, emission) is production
code. Worlds are 160 x 120, people are still unless stated.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from _oracle import NOISE, Clock, Noise, OracleSession, OracleSource, World, world_from_boxes

from gsam2_video.config import DetectorConfig, KeyframeConfig, TrackerConfig
from gsam2_video.pipeline import Tracker
from gsam2_video.protocols import Detector
from gsam2_video.types import Detections

A, B, C = (10.0, 20.0, 40.0, 100.0), (60.0, 20.0, 90.0, 100.0), (110.0, 20.0, 140.0, 100.0)


def world(frames: int, people: dict[int, tuple[float, float, float, float]],
          absent: dict[int, range] | None = None, fps: float = 25.0) -> World:
    """Still people (id -> box), each missing from the frames in ``absent[id]``."""
    absent = absent or {}
    boxes = [{pid: np.array(b, np.float32) for pid, b in people.items() if t not in absent.get(pid, range(0))}
             for t in range(frames)]
    return world_from_boxes("scripted", fps, 120, 160, boxes)


class ScriptedDetector:
    """Detects every visible person with ``score(pid, t)`` (None: not detected), plus ``extra(t)`` boxes;
    filtered at its box threshold like Grounding DINO. Records the frames it was asked about."""

    def __init__(self, wd: World, score: Callable[[int, int], float | None] = lambda p, t: 0.9,
                 extra: Callable[[int], list[tuple[tuple[float, float, float, float], float]]] = lambda t: [],
                 config: DetectorConfig | None = None) -> None:
        self.wd, self.score, self.extra = wd, score, extra
        self.config = config or DetectorConfig()
        self.calls: list[int] = []

    def with_thresholds(self, config: DetectorConfig) -> ScriptedDetector:
        view = ScriptedDetector(self.wd, self.score, self.extra, config)
        view.calls = self.calls
        return view

    def detect(self, image: np.ndarray, prompt, frame_index: int | None = None) -> Detections:
        assert frame_index is not None, "the pipeline must pass the frame index"
        self.calls.append(frame_index)
        rows = []
        for pid in self.wd.visible_ids(frame_index):
            s = self.score(pid, frame_index)
            if s is not None:
                rows.append((self.wd.visible_box(pid, frame_index), s))
        rows += [(np.array(b, np.float32), s) for b, s in self.extra(frame_index)]
        rows = [r for r in rows if r[1] > self.config.box_threshold]
        if not rows:
            return Detections.empty()
        return Detections(np.stack([r[0] for r in rows]), np.array([r[1] for r in rows], np.float32),
                          np.zeros(len(rows), np.int64), ["person"] * len(rows))


def track(wd: World, det: ScriptedDetector, mode: str, noise: Noise = NOISE["clean"], **overrides):
    prop = OracleSession(wd, noise, 0, Clock())
    tracker = Tracker(det, prop, TrackerConfig(keyframes=KeyframeConfig(detect_every=10)))
    with tracker.track(OracleSource(wd), "person.", mode=mode, **overrides) as run:
        results = Results(run)
    results.world = wd
    assert [r.frame_index for r in results] == list(range(wd.frames))
    return results, run


def ids_at(results, t: int) -> dict[int, int]:
    """track id -> the person whose visible region its mask equals exactly, on frame t."""
    wd: World = results.world
    out = {}
    for tid, m in zip(results[t].track_ids, results[t].masks):
        pids = [p for p in wd.boxes[t] if np.array_equal(m, wd.region(p, t))]
        assert len(pids) == 1, f"track {tid} on frame {t} is not one person's visible region"
        out[int(tid)] = pids[0]
    return out


class Results(list):
    """The run's FrameResults, with the world they came from (for ids_at)."""

    world: World


def frames_of(results, tid: int) -> list[int]:
    return [r.frame_index for r in results if tid in r.track_ids]


@pytest.mark.parametrize("mode", ["live", "offline"])
def test_16_frame_occlusion_reproduction_keeps_the_id(mode: str) -> None:
    """Issue 14's reproduction: A occluded from frame 2 to 15 while B and C disappear briefly at 4 and 6.
    Before, each loss fired a score keyframe (2, 4, 6), A's track was removed on the third and A came back at
    16 as a new track. Now the score trigger is rate-limited and occlusion is counted in frames."""
    wd = world(17, {1: A, 2: B, 3: C}, absent={1: range(2, 16), 2: range(4, 6), 3: range(6, 8)})
    det = ScriptedDetector(wd)
    results, run = track(wd, det, mode)
    assert det.calls == [0, 2, 12]  # first, one score keyframe (A lost at 2), interval from there
    assert dict(run.stats.keyframe_reasons) == {"first": 1, "score": 1, "interval": 1}
    assert run.stats.tracks_created == 3 and run.stats.tracks_removed == 0
    assert ids_at(results, 16) == {1: 1, 2: 2, 3: 3}
    assert ids_at(results, 0) == {1: 1, 2: 2, 3: 3}
    for t in range(2, 16):
        assert 1 not in results[t].track_ids  # nothing shown while occluded
    assert frames_of(results, 2) == [t for t in range(17) if t not in (4, 5)]


def test_occlusion_longer_than_max_lost_frames_ends_the_track() -> None:
    # fps 5: the default tolerance is 2 s = 10 frames; A is gone for frames 2..24 (23 frames)
    wd = world(33, {1: A, 2: B}, absent={1: range(2, 25)}, fps=5.0)
    det = ScriptedDetector(wd)
    results, run = track(wd, det, "live")
    assert det.calls == [0, 2, 12, 22, 32]
    # lost since frame 2 (last seen at 1): 11 frames at keyframe 12 -> ended there; A detected again at 32
    assert run.stats.tracks_removed == 1 and run.stats.tracks_created == 3
    assert frames_of(results, 1) == [0, 1] and frames_of(results, 3) == [32]
    assert ids_at(results, 32) == {2: 2, 3: 1}
    # a tolerance of 30 frames: A keeps id 1 (SAM 2 picks it up again at 25)
    results, run = track(wd, ScriptedDetector(wd), "live", max_lost_frames=30)
    assert run.stats.tracks_removed == 0 and run.stats.tracks_created == 2
    assert frames_of(results, 1) == [0, 1, *range(25, 33)] and ids_at(results, 25) == {1: 1, 2: 2}


def test_tentative_track_is_shown_once_confirmed_live_late_offline_from_birth() -> None:
    """B scores 0.45 (under confirm_score 0.6): tentative at 0, confirmed when detected again at 10. C scores
    0.45 at frame 0 only: tentative, discarded at 20, never shown, its id spent."""
    wd = world(25, {1: A, 2: B, 3: C})

    def score(pid: int, t: int) -> float | None:
        return {1: 0.9, 2: 0.45, 3: 0.45 if t == 0 else None}[pid]

    live, run_live = track(wd, ScriptedDetector(wd, score), "live")
    offline, run_off = track(wd, ScriptedDetector(wd, score), "offline")
    for results, run in ((live, run_live), (offline, run_off)):
        assert run.stats.tracks_created == 3 and run.stats.tracks_removed == 1
        assert frames_of(results, 3) == []
        assert frames_of(results, 1) == list(range(25))
    assert frames_of(live, 2) == list(range(10, 25))
    assert frames_of(offline, 2) == list(range(25))  # held frames show it from its birth
    assert ids_at(offline, 0) == {1: 1, 2: 2}


def test_tentative_track_is_not_back_filled_but_a_confirmed_one_is() -> None:
    """Offline: B walks in at frame 4 and is first detected at 10. At 0.9 it is confirmed at birth and back-
    filled to frame 4; at 0.45 it is tentative at birth, so nothing is back-filled before 10."""
    wd = world(21, {1: A, 2: B}, absent={2: range(4)})
    for s, first in ((0.9, 4), (0.45, 10)):
        results, run = track(wd, ScriptedDetector(wd, lambda p, t, s=s: 0.9 if p == 1 else s), "offline")
        assert frames_of(results, 2) == list(range(first, 21)), s
        assert run.stats.backfilled_frames == (6 if s == 0.9 else 0)


def test_false_positive_sam2_holds_on_to_is_retired() -> None:
    """A false box (score 0.9: confirmed at birth) SAM 2 keeps showing forever, never detected again while
    the detector keeps finding people: ended on the 5th keyframe it is unmatched (frame 50)."""
    wd = world(61, {1: A})
    fp = ((60.0, 10.0, 80.0, 50.0), 0.9)
    hold = Noise(p_hold_forever=1.0)
    results, run = track(wd, ScriptedDetector(wd, extra=lambda t: [fp] if t == 0 else []), "live", noise=hold)
    assert frames_of(results, 2) == list(range(50))
    assert run.stats.tracks_removed == 1 and frames_of(results, 1) == list(range(61))
    # the rule off: it lives on
    results, _ = track(wd, ScriptedDetector(wd, extra=lambda t: [fp] if t == 0 else []), "live", noise=hold,
                       retire_unmatched_keyframes=None)
    assert frames_of(results, 2) == list(range(61))


def test_low_score_detections_keep_tracks_alive_and_never_start_one() -> None:
    """After frame 0, B is detected only at 0.3 (between the low threshold 0.2 and the box threshold 0.35):
    that keeps its track; C, only ever detected at 0.3, gets no track. With two-stage matching off, B's
    track is retired at 50 like a false positive (A is detected all along)."""
    wd = world(61, {1: A, 2: B, 3: C})

    def score(pid: int, t: int) -> float | None:
        return {1: 0.9, 2: 0.9 if t == 0 else 0.3, 3: 0.3}[pid]

    results, run = track(wd, ScriptedDetector(wd, score), "live")
    assert run.stats.tracks_created == 2 and run.stats.tracks_removed == 0
    assert ids_at(results, 60) == {1: 1, 2: 2}
    assert run.stats.detections == 8  # confident ones only: A on 7 keyframes, B on the first
    results, run = track(wd, ScriptedDetector(wd, score), "live", low_score_threshold=None)
    assert frames_of(results, 2) == list(range(50)) and run.stats.tracks_removed == 1


def test_lost_track_is_reidentified_where_its_motion_predicts_it() -> None:
    """A walks right at 2 px/frame, is occluded from 10 to 29 and SAM 2 does not pick it up again by itself.
    At keyframe 30 the detector finds it 40 px further on, clear of its last box: the constant-velocity
    prediction re-identifies it (id 1, SAM 2 re-prompted); without prediction it would be a new track."""
    boxes = [{1: np.array([10 + 2 * t, 20, 30 + 2 * t, 100], np.float32), 2: np.array(C, np.float32)}
             for t in range(36)]
    for t in range(10, 30):
        del boxes[t][1]
    wd = world_from_boxes("walk", 25.0, 120, 160, boxes)
    lose = Noise(p_lost_after_occlusion=1.0)
    results, run = track(wd, ScriptedDetector(wd), "live", noise=lose)
    assert run.stats.tracks_created == 2
    assert ids_at(results, 9) == {1: 1, 2: 2} and ids_at(results, 30) == {1: 1, 2: 2}
    assert frames_of(results, 1) == list(range(10)) + list(range(30, 36))
    results, run = track(wd, ScriptedDetector(wd), "live", noise=lose, reacquire_iou=None)
    assert ids_at(results, 30) == {2: 2, 3: 1}


def test_scripted_detector_satisfies_the_protocol() -> None:
    assert isinstance(ScriptedDetector(world(1, {1: A})), Detector)
