"""Model and session apart: one loaded Tracker serves several runs at once, each with its own SAM 2 session."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gsam2_video import AssociationConfig, Detections, KeyframeConfig, PropagatorConfig, TrackerConfig
from gsam2_video.errors import ConfigError
from gsam2_video.models.sam2_model import Sam2Model
from gsam2_video.models.sam2_session import Sam2Session
from gsam2_video.pipeline import Tracker


class FixedDetector:
    """Stateless: the same two boxes on every keyframe of any run."""

    def detect(self, image: np.ndarray, prompt, frame_index: int) -> Detections:
        h, w = image.shape[:2]
        boxes = np.array([[0.1 * w, 0.1 * h, 0.5 * w, 0.6 * h], [0.55 * w, 0.3 * h, 0.9 * w, 0.9 * h]], np.float32)
        return Detections(boxes, np.array([0.9, 0.8], np.float32), np.array([0, 1]), ["person", "car"])


@pytest.fixture(scope="module")
def tracker(tiny_models: dict[str, Path]) -> Tracker:
    sam2 = Sam2Model.from_pretrained(str(tiny_models["sam2"]), PropagatorConfig(), device="cpu", dtype="fp32")
    config = TrackerConfig(keyframes=KeyframeConfig(detect_every=4, score_trigger=False, scene_cut_threshold=None),
                           association=AssociationConfig(max_missed_keyframes=2))
    return Tracker(FixedDetector(), sam2, config)


def _key(results) -> list[tuple[int, list[int], bytes]]:
    return [(r.frame_index, r.track_ids.tolist(), r.labels.tobytes()) for r in results]


def test_two_runs_from_one_tracker_iterate_at_the_same_time(tracker: Tracker, videos_dir: Path) -> None:
    a_src, b_src = videos_dir / "carphone_pristine.mp4", videos_dir / "tree.avi"
    with tracker.track(a_src, "person. car.", mode="offline", max_frames=10) as run:
        alone_a = _key(run)
    with tracker.track(b_src, "person. car.", mode="live", max_frames=10) as run:
        alone_b = _key(run)
    with tracker.track(a_src, "person. car.", mode="offline", max_frames=10) as ra, \
            tracker.track(b_src, "person. car.", mode="live", max_frames=10) as rb:
        pairs = list(zip(ra, rb))  # one frame of A, then one of B, and so on
        assert ra.session is not rb.session
        assert isinstance(ra.session, Sam2Session) and ra.session.model is rb.session.model is tracker.propagator
    assert len(pairs) == 10
    assert _key(p[0] for p in pairs) == alone_a
    assert _key(p[1] for p in pairs) == alone_b
    assert any(len(ids) for _, ids, _ in alone_a) and any(len(ids) for _, ids, _ in alone_b)


def test_tracker_rejects_objects_that_are_not_models(tracker: Tracker) -> None:
    with pytest.raises(ConfigError, match="detect"):
        Tracker(object(), tracker.propagator)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="segmentation model"):
        Tracker(FixedDetector(), object())  # type: ignore[arg-type]
