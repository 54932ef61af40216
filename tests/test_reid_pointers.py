"""Re-identification of lost tracks by SAM 2's object pointers as well as position and motion (issue 14, 5).

Position alone cannot tell two people lost near each other apart, nor a lost person from a stranger who
walks into their spot. With pointers, a lost track and a detection are candidates only when the position /
motion gate passes *and* their pointers' cosine similarity reaches ``reid_min_similarity``; the best
``(1 - reid_weight) * box IoU + reid_weight * similarity`` wins. Without pointers (a session that has none,
or ``reid_min_similarity=None``) the behaviour is the position-only one, exactly.

Unit tests drive ``associate`` / ``associate_two_stage`` on tiny masks; the end-to-end ones run the real
Tracker on the oracle models of benchmarks/_oracle.py (each person has an identity vector; a tracked
object's pointer is the identity of whom it shows).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from _oracle import Clock, Noise, OracleSession, OracleSource, World, world_from_boxes

from gsam2_video.compose import masks_to_boxes
from gsam2_video.config import AssociationConfig, KeyframeConfig, TrackerConfig
from gsam2_video.errors import ConfigError, ModelError
from gsam2_video.pipeline import Tracker
from gsam2_video.protocols import PointerSession
from gsam2_video.tracking import associate
from gsam2_video.tracking.two_stage import associate_two_stage

H, W = 40, 80
C = 16  # pointer length in the unit tests


def rect(x0: int, y0: int, x1: int, y1: int) -> torch.Tensor:
    m = torch.zeros(H, W, dtype=torch.bool)
    m[y0:y1, x0:x1] = True
    return m


def unit(*values: float) -> torch.Tensor:
    v = torch.zeros(C)
    v[: len(values)] = torch.tensor(values)
    return v / v.norm()


EMPTY = torch.zeros(H, W, dtype=torch.bool)


def lost_pair_case() -> dict[str, Any]:
    """Tracks 1 and 2 both lost (empty masks), last seen side by side; one detection between them, nearer
    track 2's last box (box IoU 0.45 on association's padded boxes) than track 1's (0.35): both pass the
    position gate (0.3)."""
    tm = torch.stack([EMPTY, EMPTY])
    last = np.array([[10, 5, 30, 35], [30, 5, 60, 35]], np.float32)
    dm = rect(18, 5, 48, 35)[None]
    return {"ids": [1, 2], "tm": tm, "last": last, "dm": dm}


def run_case(case: dict[str, Any], config: AssociationConfig, **pointers: Any):
    tm, dm = case["tm"], case["dm"]
    return associate(case["ids"], tm, masks_to_boxes(tm).numpy(), None, dm, masks_to_boxes(dm).numpy(), None,
                     config, lost_boxes=case["last"], **pointers)


def test_pointer_decides_between_two_lost_tracks_plausible_by_position() -> None:
    case = lost_pair_case()
    a, b = unit(1, 0), unit(0, 1)
    # position only: the nearer last box (track 2) wins
    assert run_case(case, AssociationConfig()).reacquired == [(2, 0)]
    # the detection looks like track 1: track 1 is revived although its last box is farther
    res = run_case(case, AssociationConfig(), track_pointers=torch.stack([a, b]), det_pointers=unit(1, 0.1)[None])
    assert res.reacquired == [(1, 0)] and res.refresh == [(1, 0)] and res.matches == [(1, 0)]
    assert res.unmatched_tracks == [2] and res.new == []
    # ... and track 2 when it looks like track 2
    res = run_case(case, AssociationConfig(), track_pointers=torch.stack([a, b]), det_pointers=unit(0.1, 1)[None])
    assert res.reacquired == [(2, 0)]


def test_both_similar_enough_the_combined_score_ranks_them() -> None:
    """Both tracks pass both gates (similarity 0.8 and 0.6 with min 0.5): the combined score decides, so
    the weight trades position against appearance."""
    case = lost_pair_case()
    det = unit(1, 0)
    t1 = unit(0.8, 0.6)  # cos 0.8 with the detection, box IoU 0.33
    t2 = unit(0.6, 0.8)  # cos 0.6, box IoU 0.43
    ptrs = {"track_pointers": torch.stack([t1, t2]), "det_pointers": det[None]}
    assert run_case(case, AssociationConfig(reid_weight=0.5), **ptrs).reacquired == [(1, 0)]  # .58 vs .53
    assert run_case(case, AssociationConfig(reid_weight=0.1), **ptrs).reacquired == [(2, 0)]  # .40 vs .47
    assert run_case(case, AssociationConfig(reid_weight=1.0), **ptrs).reacquired == [(1, 0)]


def test_two_lost_two_detections_are_assigned_by_appearance_not_swapped() -> None:
    """Two people lost close together come back with their places swapped: by position the ids would swap,
    with pointers each id follows its person (cross box IoU 0.47 passes the position gate)."""
    tm = torch.stack([EMPTY, EMPTY])
    last = np.array([[10, 5, 30, 35], [18, 5, 38, 35]], np.float32)
    dm = torch.stack([rect(18, 5, 38, 35), rect(10, 5, 30, 35)])  # det 0 on track 2's spot, det 1 on 1's
    case = {"ids": [1, 2], "tm": tm, "last": last, "dm": dm}
    swapped = run_case(case, AssociationConfig())
    assert swapped.reacquired == [(2, 0), (1, 1)]
    a, b = unit(1, 0, 0), unit(0, 1, 0)
    res = run_case(case, AssociationConfig(), track_pointers=torch.stack([a, b]),
                   det_pointers=torch.stack([unit(1, 0, 0.1), unit(0, 1, 0.1)]))
    assert res.reacquired == [(1, 0), (2, 1)]


def test_dissimilar_detection_is_not_reidentified_even_where_position_matches() -> None:
    """A stranger in the lost person's exact spot (box IoU 1): pointer similarity 0, under the default
    minimum, so a new track; just over the minimum it is the lost track."""
    tm = EMPTY[None]
    last = np.array([[10, 5, 30, 35]], np.float32)
    case = {"ids": [7], "tm": tm, "last": last, "dm": rect(10, 5, 30, 35)[None]}
    assert run_case(case, AssociationConfig()).reacquired == [(7, 0)]  # position only: revived
    res = run_case(case, AssociationConfig(), track_pointers=unit(1, 0)[None], det_pointers=unit(0, 1)[None])
    assert res.reacquired == [] and res.matches == [] and res.new == [0] and res.unmatched_tracks == [7]
    # similarity just under / over the threshold
    m = AssociationConfig().reid_min_similarity
    assert m is not None and 0.2 <= m <= 0.5
    for sim, revived in ((m - 0.01, False), (m + 0.01, True), (0.9, True)):
        res = run_case(case, AssociationConfig(), track_pointers=unit(1, 0)[None],
                       det_pointers=unit(sim, (1 - sim ** 2) ** 0.5)[None])
        assert (res.reacquired == [(7, 0)]) is revived and (res.new == [0]) is not revived, sim
    # the position gate still applies: a look-alike far from the last box and the prediction is new
    far = {"ids": [7], "tm": tm, "last": last, "dm": rect(50, 5, 70, 35)[None]}
    assert run_case(far, AssociationConfig(), track_pointers=unit(1, 0)[None],
                    det_pointers=unit(1, 0)[None]).new == [0]


def test_without_pointers_the_position_only_behaviour_is_kept_exactly() -> None:
    """No pointers, one side missing, pointer re-id off, or a track whose pointer is unknown (NaN): the
    result is the position-only one."""
    case = lost_pair_case()
    base = run_case(case, AssociationConfig())
    ptrs = torch.stack([unit(1, 0), unit(0, 1)])
    det = unit(1, 0.1)[None]
    for res in (run_case(case, AssociationConfig(), track_pointers=ptrs),
                run_case(case, AssociationConfig(), det_pointers=det),
                run_case(case, AssociationConfig(reid_min_similarity=None), track_pointers=ptrs, det_pointers=det),
                run_case(case, AssociationConfig(), track_pointers=torch.full((2, C), float("nan")),
                         det_pointers=det)):
        assert res.reacquired == base.reacquired == [(2, 0)]
        assert (res.matches, res.refresh, res.new, res.unmatched_tracks) == (
            base.matches, base.refresh, base.new, base.unmatched_tracks)
        np.testing.assert_array_equal(res.iou, base.iou)
    # a NaN row is judged by position, the other rows by both
    mixed = torch.stack([torch.full((C,), float("nan")), unit(0, 1)])
    assert run_case(case, AssociationConfig(), track_pointers=mixed, det_pointers=unit(1, 0)[None]).reacquired == [
        (1, 0)]  # track 2 vetoed by its pointer, track 1 (unknown) passes on position


def test_visible_tracks_and_matched_detections_ignore_pointers() -> None:
    """Pointers only act in the lost-track pass: a visible track matched by mask IoU stays matched even if
    its pointer disagrees, and a track visible but unmatched is never re-acquired by a look-alike."""
    tm = torch.stack([rect(10, 5, 30, 35), rect(50, 5, 70, 35)])
    dm = torch.stack([rect(10, 5, 30, 35), rect(34, 5, 46, 35)])
    res = associate([1, 2], tm, masks_to_boxes(tm).numpy(), None, dm, masks_to_boxes(dm).numpy(), None,
                    AssociationConfig(), lost_boxes=np.array([[10, 5, 30, 35], [34, 5, 46, 35]], np.float32),
                    track_pointers=torch.stack([unit(1, 0), unit(0, 1)]),
                    det_pointers=torch.stack([unit(0, 1), unit(0, 1)]))
    assert res.matches == [(1, 0)] and res.reacquired == [] and res.new == [1]


def test_two_stage_passes_the_confident_detections_pointers() -> None:
    """Weak detections are dropped before re-identification: the pointer rows must follow the confident
    subset (here the weak detection is first, so an unsliced pointer matrix would misalign)."""
    case = lost_pair_case()
    dm = torch.stack([rect(60, 5, 79, 35), case["dm"][0]])
    ptrs = torch.stack([unit(1, 0), unit(0, 1)])
    det = torch.stack([unit(0, 1), unit(1, 0.1)])  # weak one looks like track 2, confident one like track 1
    res = associate_two_stage([1, 2], case["tm"], None, None, dm, None, None, [0.3, 0.9], AssociationConfig(),
                              high_score=0.35, lost_boxes=case["last"], track_pointers=ptrs, det_pointers=det)
    assert res.reacquired == [(1, 1)] and res.low == [0]
    with pytest.raises(ValueError, match="detection pointers"):
        associate_two_stage([1, 2], case["tm"], None, None, dm, None, None, [0.3, 0.9], AssociationConfig(),
                            high_score=0.35, lost_boxes=case["last"], track_pointers=ptrs, det_pointers=det[:1])


def test_bad_pointer_inputs_are_one_line_errors() -> None:
    case = lost_pair_case()
    with pytest.raises(ModelError, match="track pointers of shape"):
        run_case(case, AssociationConfig(), track_pointers=torch.zeros(3, C), det_pointers=torch.zeros(1, C))
    with pytest.raises(ModelError, match="channels"):
        run_case(case, AssociationConfig(), track_pointers=torch.zeros(2, C), det_pointers=torch.zeros(1, C + 1))
    with pytest.raises(ModelError, match="on meta"):
        run_case(case, AssociationConfig(), track_pointers=torch.zeros(2, C, device="meta"),
                 det_pointers=torch.zeros(1, C))


@pytest.mark.parametrize("kwargs, match", [
    ({"reid_min_similarity": 0.0}, "reid min similarity"),
    ({"reid_min_similarity": 1.2}, "reid min similarity"),
    ({"reid_weight": -0.1}, "reid weight"),
    ({"reid_weight": 1.5}, "reid weight"),
])
def test_bad_reid_settings(kwargs: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        AssociationConfig(**kwargs).validate()


def test_cli_reid_options_map_onto_the_config() -> None:
    from gsam2_video.cli import build_parser
    from gsam2_video.cli.options import tracker_config

    def assoc(*extra: str) -> AssociationConfig:
        return tracker_config(build_parser().parse_args(["track", "x.mp4", "--prompt", "a.", *extra])).association

    default = AssociationConfig()
    assert (assoc().reid_min_similarity, assoc().reid_weight) == (default.reid_min_similarity, default.reid_weight)
    got = assoc("--reid-min-similarity", "0.7", "--reid-weight", "0.25")
    assert (got.reid_min_similarity, got.reid_weight) == (0.7, 0.25)
    assert assoc("--reid-min-similarity", "0").reid_min_similarity is None  # 0 = position and motion only


# ------------------------------------------------------------------------------------------ end to end
A1, A2 = (20.0, 20.0, 50.0, 100.0), (50.0, 20.0, 80.0, 100.0)


def still(frames: int, people: dict[int, tuple[float, ...]], present: dict[int, range]) -> World:
    """Still people (id -> box), each present only in the frames of ``present[id]``."""
    boxes = [{pid: np.array(b, np.float32) for pid, b in people.items() if t in present[pid]}
             for t in range(frames)]
    return world_from_boxes("reid", 25.0, 120, 160, boxes)


class TruthDetector:
    """Every visible person's visible box at score 0.9 (confirmed at birth)."""

    def __init__(self, wd: World) -> None:
        self.wd = wd

    def detect(self, image: np.ndarray, prompt: Any, frame_index: int):
        from gsam2_video.types import Detections

        pids = self.wd.visible_ids(frame_index)
        if not pids:
            return Detections.empty()
        boxes = np.stack([self.wd.visible_box(p, frame_index) for p in pids])
        return Detections(boxes, np.full(len(pids), 0.9, np.float32), np.zeros(len(pids), np.int64),
                          ["person"] * len(pids))


class NoPointers:
    """A propagator session without object pointers (as a custom one may be): only SegmentationSession's
    methods, and box masks without ``pointers``."""

    def __init__(self, inner: OracleSession) -> None:
        self._inner = inner
        self.device, self.mask_threshold, self.amp_dtype = inner.device, inner.mask_threshold, inner.amp_dtype
        self.config = inner.config

    def new_session(self, height: int, width: int, num_frames: int | None = None) -> NoPointers:
        self._inner.new_session(height, width, num_frames)
        return self

    def encode(self, image, frame_idx):
        return self._inner.encode(image, frame_idx)

    def propagate(self, feats):
        return self._inner.propagate(feats)

    def segment_boxes(self, feats, boxes):
        boxed = self._inner.segment_boxes(feats, boxes)

        class Plain:
            keep, low_res = boxed.keep, boxed.low[:, None]

            def __len__(self) -> int:
                return len(boxed)

            def masks(self, threshold: float = 0.0, boxes_per_step: int = 8) -> torch.Tensor:
                return boxed.masks(threshold)

        return Plain()

    def add_object(self, obj_id, feats, *, mask=None, box=None):
        self._inner.add_object(obj_id, feats, mask=mask, box=box)

    def refresh(self, obj_id, feats, mask):
        self._inner.refresh(obj_id, feats, mask)

    def remove(self, obj_id):
        self._inner.remove(obj_id)

    def commit(self, feats):
        return self._inner.commit(feats)

    def backfill(self, obj_id, feats_at_birth, mask, past):
        return self._inner.backfill(obj_id, feats_at_birth, mask, past)


def run_world(wd: World, mode: str = "live", pointers: bool = True, **overrides: Any):
    """Track ``wd`` with the oracle (SAM 2 never picks a person up again after an absence by itself, so
    every return goes through re-identification). Returns (id -> person per frame, run)."""
    prop: Any = OracleSession(wd, Noise(p_lost_after_occlusion=1.0), 0, Clock())
    if not pointers:
        prop = NoPointers(prop)
    tracker = Tracker(TruthDetector(wd), prop, TrackerConfig(keyframes=KeyframeConfig(detect_every=10)))
    frames = []
    with tracker.track(OracleSource(wd), "person.", mode=mode, **overrides) as run:
        for res in run:
            shown = {}
            for tid, m in zip(res.track_ids, res.masks):
                pids = [p for p in wd.boxes[res.frame_index] if np.array_equal(m, wd.region(p, res.frame_index))]
                assert len(pids) == 1
                shown[int(tid)] = pids[0]
            frames.append(shown)
    return frames, run


def two_lost_world() -> World:
    """People 1 and 2 stand side by side (A1, A2) for frames 0-4, then both are gone; from frame 25 only
    person 1 is back, a step towards where person 2 stood: its box overlaps both last boxes (box IoU 0.33
    with its own, 0.39 with person 2's), so position alone would revive track 2."""
    back = (36.0, 20.0, 66.0, 100.0)
    boxes = [{1: A1, 2: A2} if t < 5 else {1: back} if t >= 25 else {} for t in range(36)]
    return world_from_boxes("reid", 25.0, 120, 160,
                            [{pid: np.array(b, np.float32) for pid, b in frame.items()} for frame in boxes])


@pytest.mark.parametrize("mode", ["live", "offline"])
def test_end_to_end_the_pointer_revives_the_right_one_of_two_lost_tracks(mode: str) -> None:
    wd = two_lost_world()
    frames, run = run_world(wd, mode)
    assert frames[0] == {1: 1, 2: 2}
    assert frames[30] == {1: 1}  # person 1 under its own id
    assert run.stats.tracks_reidentified == 1 and run.stats.tracks_created == 2
    # position and motion only: person 1 comes back as track 2
    frames, run = run_world(wd, mode, reid_min_similarity=None)
    assert frames[30] == {2: 1} and run.stats.tracks_reidentified == 1


def test_end_to_end_a_stranger_in_the_lost_persons_spot_gets_a_new_id() -> None:
    """Person 1 leaves at frame 10; person 3 stands exactly there from frame 25. Position would give the
    stranger id 1; the pointers say it is someone else."""
    wd = still(40, {1: A1, 2: (100.0, 20.0, 130.0, 100.0), 3: A1},
               {1: range(10), 2: range(40), 3: range(25, 40)})
    frames, run = run_world(wd)
    assert frames[0] == {1: 1, 2: 2}
    assert frames[35] == {2: 2, 3: 3} and run.stats.tracks_reidentified == 0
    frames, run = run_world(wd, reid_min_similarity=None)
    assert frames[35] == {1: 3, 2: 2} and run.stats.tracks_reidentified == 1
    # the person themself coming back is re-identified with pointers on
    wd = still(40, {1: A1, 2: (100.0, 20.0, 130.0, 100.0)}, {1: [*range(10), *range(25, 40)], 2: range(40)})
    frames, run = run_world(wd)
    assert frames[35] == {1: 1, 2: 2} and run.stats.tracks_reidentified == 1


@pytest.mark.parametrize("world_fn", [two_lost_world, lambda: still(
    40, {1: A1, 2: (100.0, 20.0, 130.0, 100.0), 3: A1}, {1: range(10), 2: range(40), 3: range(25, 40)})])
def test_end_to_end_a_session_without_pointers_behaves_as_before(world_fn) -> None:
    """A propagator without object pointers is not a PointerSession; the run equals pointer re-id off."""
    wd = world_fn()
    assert not isinstance(NoPointers(OracleSession(wd, Noise(), 0, Clock())), PointerSession)
    assert isinstance(OracleSession(wd, Noise(), 0, Clock()), PointerSession)
    plain, run_plain = run_world(wd, pointers=False)
    off, run_off = run_world(wd, reid_min_similarity=None)
    assert plain == off
    assert run_plain.stats.to_json() | {"stage_seconds": 0} == run_off.stats.to_json() | {"stage_seconds": 0}
    assert run_plain.stats.tracks_reidentified == 1


def test_run_stats_count_confirmed_discarded_and_reidentified_tracks() -> None:
    """Person 1 (0.9) leaves at 5 and is back at 25 (re-identified), person 2 (0.9) stays, person 3 is
    detected once at 0.45 (tentative, discarded at 20 unseen), person 4 at 0.45 on every keyframe
    (confirmed at 10). run.json's stats carry the counts."""
    wd = still(36, {1: A1, 2: (100.0, 20.0, 130.0, 100.0), 3: (60.0, 20.0, 80.0, 60.0),
                    4: (130.0, 20.0, 155.0, 100.0)},
               {1: [*range(5), *range(25, 36)], 2: range(36), 3: range(36), 4: range(36)})

    class Scored(TruthDetector):
        def detect(self, image, prompt, frame_index):
            from gsam2_video.types import Detections

            dets = super().detect(image, prompt, frame_index)
            pids = self.wd.visible_ids(frame_index)
            scores = np.array([{3: 0.45 if frame_index == 0 else 0.0, 4: 0.45}.get(p, 0.9) for p in pids],
                              np.float32)
            keep = scores > 0.35
            return Detections(dets.boxes[keep], scores[keep], dets.class_ids[keep],
                              [lb for lb, k in zip(dets.labels, keep) if k])

    prop = OracleSession(wd, Noise(p_lost_after_occlusion=1.0), 0, Clock())
    tracker = Tracker(Scored(wd), prop, TrackerConfig(keyframes=KeyframeConfig(detect_every=10)))
    with tracker.track(OracleSource(wd), "person.", mode="live") as run:
        shown = {int(t) for r in run for t in r.track_ids}
    stats = run.stats.to_json()
    assert (stats["tracks_created"], stats["tracks_confirmed"], stats["tracks_discarded"],
            stats["tracks_reidentified"], stats["tracks_removed"]) == (4, 3, 1, 1, 1)
    assert shown == {1, 2, 4}  # the discarded tentative track (id 3) was never shown


def test_pointer_similarity_is_one_small_keyframe_read(tiny_models: dict[str, Path], videos_dir: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """On the real SAM 2 session, with lost tracks on keyframes (SAM 2's propagated masks of four tracks
    blanked, as when it loses them), re-identification reads only the lost x new similarity matrix on the
    host: keyframes stay within the budget of tests/test_frame_budget.py and non-keyframes at two reads."""
    from host_reads import count_host_reads, reads_per_result
    from test_frame_budget import KEYFRAME_READS, SMALL_ARRAYS, GridDetector

    from gsam2_video.config import PropagatorConfig
    from gsam2_video.models.propagator import Sam2Propagator
    from gsam2_video.models.sam2_session import Sam2Session
    from gsam2_video.models.sam2_types import FrameOutput
    from gsam2_video.tracking import association

    monkeypatch.setattr(association, "_use_dense", lambda *args: True)  # the GPU's path (see the budget test)
    keyframes = {10, 20}
    propagate = Sam2Session.propagate

    def losing(self: Sam2Session, feats) -> FrameOutput:
        out = propagate(self, feats)
        if feats.frame_idx in keyframes:
            lost = torch.tensor([oid in (1, 2, 3, 4) for oid in out.obj_ids])
            out.low_res[lost] = -1024.0
        return out

    monkeypatch.setattr(Sam2Session, "propagate", losing)
    calls = []
    similarity = association._pointer_similarity

    def spy(*args: Any) -> np.ndarray:
        calls.append(args[2].tolist())
        return similarity(*args)

    monkeypatch.setattr(association, "_pointer_similarity", spy)
    prop = Sam2Propagator.from_pretrained(str(tiny_models["sam2"]), PropagatorConfig(), device="cpu",
                                          dtype="fp32")
    config = TrackerConfig(keyframes=KeyframeConfig(detect_every=10, score_trigger=False,
                                                    scene_cut_threshold=None),
                           association=AssociationConfig(max_missed_keyframes=100, iou_threshold=1.0,
                                                         duplicate_coverage=1.0, weak_iou=None))
    tracker = Tracker(GridDetector(240, 320), prop, config)
    frames = []
    with tracker.track(videos_dir / "tree.avi", "person.", mode="live", max_frames=21) as run, \
            count_host_reads() as reads:
        frames.extend((result.is_keyframe, got) for result, got in reads_per_result(run, reads))
    assert [k for k, _ in frames].count(True) == 3
    assert len(calls) == 2 and all(rows == [0, 1, 2, 3] for rows in calls)  # the four lost tracks, twice
    for is_key, got in frames:
        big = [c for c in got if c[1] > SMALL_ARRAYS]
        assert len(big) == 1, got  # only the label map
        assert len(got) <= (KEYFRAME_READS if is_key else 2), got
