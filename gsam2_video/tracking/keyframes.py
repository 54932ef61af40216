"""When the detector runs: the first frame, every K frames, and when tracking is likely to be going wrong.

The detector is the expensive, occasional stage; SAM 2 carries masks in between. Per processed frame the
pipeline encodes, propagates (which yields every live track's object score), then asks the policy whether
this frame is a keyframe, and only then runs the detector. Reasons, in priority order:

* ``"first"``: the first processed frame;
* ``"interval"``: ``detect_every`` frames have passed since the last keyframe of any kind (so the longest
  gap between detections is K, which also bounds the offline back-fill lag);
* ``"scene_cut"``: the colour histogram of a downscaled copy of the frame moved more than
  ``scene_cut_threshold`` (total-variation distance, 0..1) from the previous frame's;
* ``"score"``: a live track's object score crossed from >= 0 to < 0 (SAM 2 lost it). Only the crossing
  counts, so an object that stays occluded does not trigger detection on every frame. The pipeline passes
  only *confirmed* tracks' scores: a tentative track fading out is usually a false positive SAM 2 lets go
  of, and detecting again then mostly finds the next false positive.

Adaptive triggers (scene cut, score) fire only when at least ``min_gap`` frames have passed since the last
keyframe; a trigger that arrives too early waits and fires once the gap allows (a score trigger only if the
track is still lost then); any keyframe clears pending triggers. Score triggers are also rate-limited:
two score-triggered keyframes are at least ``score_trigger_gap`` frames apart (default ``detect_every``), so
one occlusion after another cannot chain detections (each extra detection was found to shorten nothing but
to add false positives); at most one extra detector run per interval. Counts are in processed frames (calls), not source frame numbers.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ..config import KeyframeConfig
from ..errors import ModelError

_HIST_SIDE = 64  # long side of the frame copy the histogram is computed on
_BINS = 8  # per channel; 8**3 joint colour bins


def frame_histogram(image: np.ndarray) -> np.ndarray:
    """Normalised joint colour histogram (512 bins; grey frames use 8 bins) of a strided ~64 px copy."""
    if not isinstance(image, np.ndarray) or image.ndim not in (2, 3) or image.size == 0:
        raise ModelError(f"keyframe policy needs an H x W x 3 (or H x W) image array, got "
                         f"{getattr(image, 'shape', type(image).__name__)}")
    if image.ndim == 3 and image.shape[2] not in (1, 3):
        raise ModelError(f"keyframe policy needs 1 or 3 colour channels, got {image.shape[2]}")
    step = max(1, max(image.shape[0], image.shape[1]) // _HIST_SIDE)
    small = image[::step, ::step]
    if small.dtype != np.uint8:
        small = np.clip(small, 0, 255).astype(np.uint8)
    q = (small >> 5).astype(np.int64)  # 256 / 8 = 32 levels per bin
    if q.ndim == 3 and q.shape[2] == 3:
        idx = (q[..., 0] * _BINS + q[..., 1]) * _BINS + q[..., 2]
        hist = np.bincount(idx.reshape(-1), minlength=_BINS ** 3)
    else:
        hist = np.bincount(q.reshape(-1), minlength=_BINS)
    return hist.astype(np.float64) / max(1, int(hist.sum()))


def histogram_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Total-variation distance between two normalised histograms: 0 identical, 1 disjoint."""
    if a.shape != b.shape:
        return 1.0
    return 0.5 * float(np.abs(a - b).sum())


class KeyframePolicy:
    """Decides, frame by frame, whether the detector runs. One instance per tracking session."""

    def __init__(self, config: KeyframeConfig) -> None:
        config.validate()
        self.config = config
        self._frame = -1  # index of the last processed frame
        self._last_keyframe: int | None = None
        self._last_score_keyframe: int | None = None
        self._prev_hist: np.ndarray | None = None
        self._prev_scores: dict[int, float] = {}
        self._pending_lost: set[int] = set()
        self._pending_cut = False
        self.last_distance = 0.0  # histogram distance of the latest frame to the one before it

    @property
    def frames_processed(self) -> int:
        return self._frame + 1

    def is_keyframe(self, image: np.ndarray | None,
                    object_scores: Mapping[int, float] | None = None) -> tuple[bool, str]:
        """(is this frame a keyframe, reason). ``object_scores`` are this frame's propagated SAM 2 object
        score logits per live track id; ``image`` may be None to skip scene-cut detection."""
        self._frame += 1
        cfg = self.config
        if image is not None and cfg.scene_cut_threshold is not None:
            hist = frame_histogram(image)
            if self._prev_hist is not None:
                self.last_distance = histogram_distance(hist, self._prev_hist)
                self._pending_cut |= self.last_distance > cfg.scene_cut_threshold
            self._prev_hist = hist
        scores = {int(k): float(v) for k, v in (object_scores or {}).items()}
        if cfg.score_trigger:
            for tid, s in scores.items():
                if s < 0 and self._prev_scores.get(tid, 0.0) >= 0:
                    self._pending_lost.add(tid)
            self._pending_lost = {tid for tid in self._pending_lost if scores.get(tid, 0.0) < 0 and tid in scores}
        self._prev_scores = scores

        if self._last_keyframe is None:
            return self._fire("first")
        gap = self._frame - self._last_keyframe
        if gap >= cfg.detect_every:
            return self._fire("interval")
        if gap >= cfg.min_gap:
            if self._pending_cut:
                return self._fire("scene_cut")
            score_gap = cfg.score_trigger_gap if cfg.score_trigger_gap is not None else cfg.detect_every
            if self._pending_lost and (self._last_score_keyframe is None
                                       or self._frame - self._last_score_keyframe >= score_gap):
                self._last_score_keyframe = self._frame
                return self._fire("score")
        return False, ""

    def _fire(self, reason: str) -> tuple[bool, str]:
        self._last_keyframe = self._frame
        self._pending_lost.clear()
        self._pending_cut = False
        return True, reason
