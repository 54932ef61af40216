"""Tracker behaviour with the real (tiny, random) SAM 2 propagator and a scripted detector.

The detector is replaced by a script of boxes per keyframe so the tests can say exactly which objects
exist when; everything else (propagation, box->mask on shared features, association, lifecycle, back-fill)
is the production code.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from gsam2_video.config import AssociationConfig, KeyframeConfig, PropagatorConfig, TrackerConfig
from gsam2_video.models.propagator import Sam2Propagator
from gsam2_video.pipeline import Tracker
from gsam2_video.types import Detections

CLASSES = ("person", "car")


class ScriptedDetector:
    """Returns the n-th scripted Detections on the n-th call (empty once the script runs out)."""

    def __init__(self, script: list[list[tuple[float, float, float, float, int]]]) -> None:
        self.script = script
        self.calls = 0

    def detect(self, image: np.ndarray, prompt, frame_index: int | None = None) -> Detections:
        rows = self.script[self.calls] if self.calls < len(self.script) else []
        self.calls += 1
        if not rows:
            return Detections.empty()
        arr = np.array(rows, dtype=np.float32)
        cls = arr[:, 4].astype(np.int64)
        return Detections(arr[:, :4], np.full(len(arr), 0.9, np.float32), cls, [prompt.classes[c] for c in cls])


def make_tracker(models: dict[str, Path], script, **keyframes) -> Tracker:
    prop = Sam2Propagator.from_pretrained(str(models["sam2"]), PropagatorConfig(), device="cpu", dtype="fp32")
    config = TrackerConfig(
        keyframes=KeyframeConfig(detect_every=4, score_trigger=False, scene_cut_threshold=None, **keyframes),
        association=AssociationConfig(max_missed_keyframes=2))
    return Tracker(ScriptedDetector(script), prop, config)


BOX_A = (20.0, 30.0, 90.0, 120.0, 0)
BOX_B = (110.0, 20.0, 170.0, 100.0, 1)


def run(tracker: Tracker, source, mode: str, **kw) -> tuple[list, object]:
    with tracker.track(source, "person. car.", mode=mode, **kw) as r:
        results = list(r)
    return results, r


def test_one_result_per_frame_in_order_with_source_indices(tiny_models, videos_dir: Path) -> None:
    tracker = make_tracker(tiny_models, [[BOX_A]])
    results, r = run(tracker, videos_dir / "carphone_pristine.mp4", "offline", start=3, stride=2, max_frames=11)
    assert [x.frame_index for x in results] == [3 + 2 * i for i in range(11)]
    ts = [x.timestamp for x in results]
    assert all(b > a for a, b in itertools.pairwise(ts))
    # keyframes at processed frames 0, 4, 8: the detector ran exactly there, never elsewhere
    assert tracker.detector.calls == 3 == r.stats.keyframes
    assert [x.is_keyframe for x in results] == [i % 4 == 0 for i in range(11)]
    for x in results:
        assert x.masks.sum(axis=0).max() <= 1  # non-overlapping
        assert set(x.track_ids.tolist()) <= {1}
        assert x.class_names == ["person"] * len(x)


def test_mid_video_object_gets_new_id_and_offline_backfill(tiny_models, videos_dir: Path) -> None:
    script = [[BOX_A], [BOX_A], [BOX_A, BOX_B]]  # B first detected on the third keyframe (frame 8)
    source = videos_dir / "carphone_pristine.mp4"
    live, r_live = run(make_tracker(tiny_models, script), source, "live", max_frames=12)
    offline, r_off = run(make_tracker(tiny_models, script), source, "offline", max_frames=12)
    assert len(live) == len(offline) == 12
    assert r_live.stats.tracks_created == r_off.stats.tracks_created >= 2  # B always becomes a new track
    # the keyframe each id was born on, from the live run (live never shows an object early)
    born: dict[int, int] = {}
    for i, x in enumerate(live):
        for t in x.track_ids.tolist():
            born.setdefault(t, i)
    assert all(i % 4 == 0 for i in born.values())
    assert sorted(born) == list(range(1, len(born) + 1))  # ids handed out 1, 2, 3, ... in order of birth
    late = [t for t, i in born.items() if i > 0]
    assert late, "the object detected on frame 8 must get an id of its own"
    total_backfilled = 0
    for i, (a, b) in enumerate(zip(live, offline)):
        la, lb = a.label_map(), b.label_map()
        extra = np.isin(lb, [t for t in born if born[t] > i])
        # offline = live plus, on pixels live left empty, tracks born on a later keyframe
        assert np.array_equal(lb[~extra], la[~extra]), i
        assert (la[extra] == 0).all(), i
        for t in set(lb[extra].tolist()):
            assert born[t] - i <= 4  # back-fill reaches no further than the lag (detect_every)
        total_backfilled += len(set(lb[extra].tolist()))
    assert r_off.stats.backfilled_frames == total_backfilled


def test_backfill_masks_equal_a_backwards_pass(tiny_models, videos_dir: Path) -> None:
    """The back-filled pixels are exactly the propagator's backwards pass from the birth mask."""
    import av

    script = [[], [], [BOX_B]]
    tracker = make_tracker(tiny_models, script)
    offline, _ = run(tracker, videos_dir / "carphone_pristine.mp4", "offline", max_frames=9)
    with av.open(str(videos_dir / "carphone_pristine.mp4")) as c:
        frames = [f.to_ndarray(format="rgb24") for _, f in zip(range(9), c.decode(video=0))]
    prop = Sam2Propagator.from_pretrained(str(tiny_models["sam2"]), PropagatorConfig(), device="cpu", dtype="fp32")
    h, w = frames[0].shape[:2]
    prop.reset(h, w, num_frames=120)
    feats = []
    for i, img in enumerate(frames):
        f = prop.encode(img, i)
        prop.propagate(f)
        if i == 8:
            bm = prop.segment_boxes(f, np.array([BOX_B[:4]]))
            birth = bm.logits[0] > 0
            prop.add_object(1, f, mask=birth)
        out = prop.commit(f)
        feats.append(f)
    back = prop.backfill(1, feats[8], birth, feats[7:3:-1])
    expected = {}
    for j, lg in enumerate(back):
        m = (lg > 0).cpu().numpy()
        if not m.any():
            break
        expected[7 - j] = m
    assert expected, "the backwards pass must reach at least one earlier frame for this test to mean anything"
    assert np.array_equal(offline[8].label_map() == 1, (out.logits[0] > 0).numpy())
    for i in range(8):
        got = offline[i].label_map() == 1
        assert np.array_equal(got, expected.get(i, np.zeros_like(got))), i


def test_ids_are_dense_and_results_carry_live_tracks_only(tiny_models, videos_dir: Path) -> None:
    script = [[BOX_A], [], [], [], [BOX_B]]
    results, r = run(make_tracker(tiny_models, script), videos_dir / "carphone_pristine.mp4", "live",
                     max_frames=20)
    seen = sorted({t for x in results for t in x.track_ids.tolist()})
    assert seen and seen[0] == 1
    assert set(seen) <= set(range(1, r.stats.tracks_created + 1))
    assert r.stats.tracks_created >= 2  # B, detected alone at frame 16, cannot reuse A's id
    assert any(max(x.track_ids.tolist(), default=0) >= 2 for x in results[16:])


def test_frame_size_change_is_a_clear_error(tiny_models, tmp_path: Path) -> None:
    from PIL import Image

    from gsam2_video.errors import Gsam2Error

    for i, size in enumerate([(64, 48), (64, 48), (80, 60)]):
        Image.fromarray(np.full((size[1], size[0], 3), 100 + i, np.uint8)).save(tmp_path / f"{i}.png")
    tracker = make_tracker(tiny_models, [[]])
    with pytest.raises(Gsam2Error):
        run(tracker, tmp_path, "offline")


def test_unknown_override_is_rejected(tiny_models, videos_dir: Path) -> None:
    from gsam2_video.errors import ConfigError

    tracker = make_tracker(tiny_models, [])
    with pytest.raises(ConfigError, match="frobnicate"):
        tracker.track(videos_dir / "tree.avi", "person.", frobnicate=3)
    with pytest.raises(ConfigError, match="detect-every"):
        tracker.track(videos_dir / "tree.avi", "person.", detect_every=0)


def test_detector_thresholds_override_per_run(tiny_models, videos_dir: Path) -> None:
    from gsam2_video.models.detector import Detector

    det = Detector.from_pretrained(str(tiny_models["detector"]), device="cpu", dtype="fp32")
    prop = Sam2Propagator.from_pretrained(str(tiny_models["sam2"]), PropagatorConfig(), device="cpu", dtype="fp32")
    tracker = Tracker(det, prop)
    assert tracker.config.detector is det.config
    with tracker.track(videos_dir / "tree.avi", "tree. hand.", max_frames=1, box_threshold=0.05,
                       text_threshold=0.05) as run:
        list(run)
    assert run.stats.detections > 0
    with tracker.track(videos_dir / "tree.avi", "tree. hand.", max_frames=1, box_threshold=1.0) as run:
        list(run)
    assert run.stats.detections == 0
    assert det.config.box_threshold == 0.35  # the shared detector is untouched


@pytest.mark.parametrize("dtype", ["fp32", "bf16", "auto"])
def test_config_records_the_precision_the_models_run_in(tiny_models, dtype: str) -> None:
    """'auto' differs between machines, so run.json must say what it became (fp32 or bf16), not 'auto'."""
    import torch

    from gsam2_video.models.loading import precision_name, resolve_dtype

    prop = Sam2Propagator.from_pretrained(str(tiny_models["sam2"]), PropagatorConfig(), device="cpu", dtype=dtype)
    tracker = Tracker(ScriptedDetector([]), prop, TrackerConfig(dtype="auto"))
    expected = precision_name(resolve_dtype(dtype, torch.device("cpu")))
    assert tracker.config.dtype == expected
    assert tracker.config.to_json()["dtype"] == expected


class InterruptedSource:
    """An opened source whose iteration raises KeyboardInterrupt when frame ``at`` is requested (Ctrl-C
    arriving while the tracker waits for the next frame)."""

    def __init__(self, inner, at: int) -> None:
        self.inner, self.at, self.info = inner, at, inner.info

    def __iter__(self):
        for i, frame in enumerate(self.inner):
            if i == self.at:
                raise KeyboardInterrupt
            yield frame

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.inner.close()


def test_interrupted_offline_run_drains_the_frames_held_for_backfill(tiny_models, videos_dir: Path) -> None:
    """Ctrl-C in offline mode: the up-to-K finished frames still held are handed out by drain(), equal to
    an uninterrupted run's frames (B's back-fill into frames 4-7 included), and nothing after them."""
    from gsam2_video.sources import open_source

    script = [[BOX_A], [BOX_A], [BOX_A, BOX_B]]  # keyframes 0, 4, 8; B born on 8
    video = videos_dir / "carphone_pristine.mp4"
    full, _ = run(make_tracker(tiny_models, script), video, "offline", max_frames=12)
    tracker = make_tracker(tiny_models, script)
    got = []
    with tracker.track(InterruptedSource(open_source(video, max_frames=12), at=9), "person. car.",
                       mode="offline") as r:
        with pytest.raises(KeyboardInterrupt):
            for result in r:
                got.append(result)  # noqa: PERF402 - a list() would lose the frames before the raise
        assert [x.frame_index for x in got] == [0, 1, 2, 3, 4]  # frames 5-8 held for back-fill (lag 4)
        got.extend(r.drain())
    assert [x.frame_index for x in got] == list(range(9))
    assert r.stats.frames_read == 9 and r.stats.frames_emitted == 9
    assert any(2 in x.track_ids for x in got[4:8]), "B must have been back-filled before the interruption"
    for a, b in zip(got, full[:9]):
        assert np.array_equal(a.label_map(), b.label_map()), a.frame_index
        assert a.track_ids.tolist() == b.track_ids.tolist()
    assert list(r.drain()) == []  # drained once
