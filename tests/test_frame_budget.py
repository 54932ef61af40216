"""The per-frame host budget of the GPU-first frame path, counted on the code path a GPU runs.

A non-keyframe reads device data on the host exactly twice: the object scores (they decide
score-triggered keyframes) and one buffer holding the label map and the per-track array. Anything more
is a GPU synchronisation the design does not allow. See tests/host_reads.py for what is counted.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from host_reads import count_host_reads, reads_per_result

from gsam2_video import (
    AssociationConfig,
    Detections,
    FrameExtras,
    KeyframeConfig,
    PropagatorConfig,
    TrackerConfig,
)
from gsam2_video.models.propagator import Sam2Propagator
from gsam2_video.pipeline import RLE_CHANGES_PER_EDGE_PIXEL, Tracker
from gsam2_video.tracking import association

N_OBJECTS = 10
SMALL_ARRAYS = 4096  # bytes of per-track arrays a frame may read besides its label map
# the keyframe budget: scores, track and detection boxes, the IoU and coverage matrices, non-empty flags of
# both mask sets, the IoU and coverage among new detections (duplicates), and the frame: 10 small reads + 2
KEYFRAME_READS = 12


class GridDetector:
    """The same N boxes (a 5 x 2 grid) on every keyframe."""

    def __init__(self, height: int, width: int) -> None:
        xs, ys = np.linspace(0, width, 6), np.linspace(0, height, 3)
        self.boxes = np.array([[xs[i] + 4, ys[j] + 4, xs[i + 1] - 4, ys[j + 1] - 4]
                               for j in range(2) for i in range(5)], np.float32)

    def detect(self, image: np.ndarray, prompt, frame_index: int) -> Detections:
        n = len(self.boxes)
        return Detections(self.boxes, np.full(n, 0.9, np.float32), np.zeros(n, np.int64), ["person"] * n)


def _run(tiny_models: dict[str, Path], videos_dir: Path,
         extras: FrameExtras | None = None) -> list[tuple[bool, int, list[tuple[str, int]]]]:
    prop = Sam2Propagator.from_pretrained(str(tiny_models["sam2"]), PropagatorConfig(), device="cpu",
                                          dtype="fp32")
    config = TrackerConfig(keyframes=KeyframeConfig(detect_every=10, score_trigger=False,
                                                    scene_cut_threshold=None),
                           # random weights give overlapping masks: keep every grid box as its own track
                           association=AssociationConfig(max_missed_keyframes=100, iou_threshold=1.0,
                                                         duplicate_coverage=1.0, weak_iou=None,
                                                         reacquire_iou=None))
    tracker = Tracker(GridDetector(240, 320), prop, config)
    frames = []
    with tracker.track(videos_dir / "tree.avi", "person.", mode="live", max_frames=30, extras=extras) as run, \
            count_host_reads() as reads:
        for result, got in reads_per_result(run, reads):
            assert run.session is not None
            frames.append((result.is_keyframe, len(run.session.obj_ids), got))
    return frames


@pytest.fixture(scope="module")
def counted(tiny_models: dict[str, Path], videos_dir: Path) -> list[tuple[bool, int, list[tuple[str, int]]]]:
    # association picks its dense (mask IoU op) path for masks on a GPU; on the CPU it may bit-pack masks on
    # the host instead, a CPU-only choice: take the GPU's choice so the count is the GPU path's
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(association, "_use_dense", lambda *args: True)
        return _run(tiny_models, videos_dir)


@pytest.fixture(scope="module")
def counted_extras(tiny_models: dict[str, Path], videos_dir: Path) -> list[tuple[bool, int, list[tuple[str, int]]]]:
    """The same run with what a GPU builds for video and RLE outputs (FrameExtras) in the frame's copy."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(association, "_use_dense", lambda *args: True)
        return _run(tiny_models, videos_dir, FrameExtras(overlay=True, rle=True))


def test_non_keyframes_read_the_device_twice(counted) -> None:
    assert len(counted) == 30
    plain = [f for f in counted if not f[0]]
    assert len(plain) == 27  # keyframes 0, 10, 20
    for _, live, calls in plain:
        assert live >= N_OBJECTS
        assert len(calls) <= 2, calls
        big = [c for c in calls if c[1] > SMALL_ARRAYS]
        assert len(big) == 1 and big[0][0] == "numpy", calls
        assert big[0][1] <= 240 * 320 * 2 + SMALL_ARRAYS
        assert sum(c[1] for c in calls) - big[0][1] <= SMALL_ARRAYS


def test_keyframe_budget(counted) -> None:
    """Keyframes also read detections, mask boxes and IoU matrices (all small) and the frame once."""
    keys = [f for f in counted if f[0]]
    assert len(keys) == 3
    for _, _, calls in keys:
        assert len(calls) <= KEYFRAME_READS, calls
        big = [c for c in calls if c[1] > SMALL_ARRAYS]
        assert len(big) == 1, calls  # only the label map: masks and prompts stay on the device


def test_extras_ride_in_the_same_single_copy(counted_extras) -> None:
    """With the overlay and the RLE changes built on the device a non-keyframe still reads twice: the copy
    grows by the picture (H x W x 3) and the fixed-size change buffer, never by another transfer."""
    h, w = 240, 320
    changes = (1 + 3 * RLE_CHANGES_PER_EDGE_PIXEL * (h + w)) * 4
    plain = [f for f in counted_extras if not f[0]]
    assert len(plain) == 27
    for _, _, calls in plain:
        assert len(calls) <= 2, calls
        big = [c for c in calls if c[1] > SMALL_ARRAYS]
        assert len(big) == 1 and big[0][0] == "numpy", calls
        # the change buffer starts at 8 x (H + W) entries and doubles after a frame that overflowed it
        # (random weights give ragged masks with many changes here): at most twice on this clip
        assert h * w * 4 + changes < big[0][1] <= h * w * (1 + 3) + 4 * changes + SMALL_ARRAYS
    for _, _, calls in (f for f in counted_extras if f[0]):
        assert len(calls) <= KEYFRAME_READS, calls
        assert len([c for c in calls if c[1] > SMALL_ARRAYS]) == 1, calls
