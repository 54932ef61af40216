"""examples/custom_detector.py: a ground-truth detector plugged into the real Tracker (tiny SAM 2)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from gsam2_video.config import PropagatorConfig
from gsam2_video.protocols import Detector

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "custom_detector.py"


def load_example():
    spec = importlib.util.spec_from_file_location("custom_detector_example", EXAMPLE)
    mod = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(mod)
    return mod


def test_ground_truth_detector_replays_boxes_by_frame_index(tmp_path: Path) -> None:
    mod = load_example()
    gt = tmp_path / "gt.txt"
    gt.write_text("1,1,20,30,70,90,1,-1,-1,-1\n1,2,110,20,60,80,1,-1,-1,-1\n3,1,22,30,70,90,1,-1,-1,-1\n"
                  "3,9,5,5,0,10,1,-1,-1,-1\n")
    det = mod.GroundTruthDetector.from_mot(gt)
    assert isinstance(det, Detector)
    from gsam2_video.prompts import parse_prompt

    image = np.zeros((144, 176, 3), np.uint8)
    d0 = det.detect(image, parse_prompt("person."), frame_index=0)
    np.testing.assert_array_equal(d0.boxes, [[20, 30, 90, 120], [110, 20, 170, 100]])
    assert d0.scores.tolist() == [1.0, 1.0] and d0.labels == ["person", "person"]
    assert len(det.detect(image, parse_prompt("person."), frame_index=1)) == 0
    assert len(det.detect(image, parse_prompt("person."), frame_index=2)) == 1  # the zero-width row skipped


def test_bad_ground_truth_line_is_one_clear_error(tmp_path: Path) -> None:
    gt = tmp_path / "gt.txt"
    gt.write_text("1,1,20,30,70,90\nnot,a,row\n")
    proc = subprocess.run([sys.executable, str(EXAMPLE), "video.mp4", str(gt)], capture_output=True, text=True,
                          check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"error: {gt}:2: expected frame,id,x,y,w,h,... got 'not,a,row'"]


def test_tracker_with_the_ground_truth_detector(tiny_models, videos_dir: Path, tmp_path: Path) -> None:
    from gsam2_video.models.propagator import Sam2Propagator
    from gsam2_video.pipeline import Tracker

    mod = load_example()
    gt = tmp_path / "gt.txt"
    gt.write_text("".join(f"{f},1,20,30,70,90,1\n{f},2,110,20,60,80,1\n" for f in range(1, 13)))
    prop = Sam2Propagator.from_pretrained(str(tiny_models["sam2"]), PropagatorConfig(), device="cpu", dtype="fp32")
    tracker = Tracker(mod.GroundTruthDetector.from_mot(gt), prop)
    with tracker.track(videos_dir / "carphone_pristine.mp4", "person.", mode="live", max_frames=12,
                       detect_every=5) as run:
        results = list(run)
    assert len(results) == 12 and run.stats.keyframes >= 3
    assert run.stats.detections == 2 * run.stats.keyframes  # both boxes on every keyframe, all confident
    # the first keyframe's two boxes are tracks 1 and 2 (random weights: a mask may come out empty)
    assert set(results[0].track_ids.tolist()) <= {1, 2} and run.stats.tracks_created >= 2
    assert set().union(*(set(r.track_ids.tolist()) for r in results)) <= set(range(1, run.stats.tracks_created + 1))
    assert all(r.class_names == ["person"] * len(r) for r in results)


@pytest.mark.parametrize("frame_index", [None])
def test_missing_frame_index_returns_nothing(frame_index) -> None:
    det = load_example().GroundTruthDetector({0: np.array([[1, 1, 5, 5]], np.float32)})
    from gsam2_video.prompts import parse_prompt

    assert len(det.detect(np.zeros((8, 8, 3), np.uint8), parse_prompt("a."), frame_index=frame_index)) == 0
