"""SAM 2's image-encoder position encodings are built once per shape (models.position_cache), not per frame.

What must hold: the image features and the tracking results are bit-identical to the uncached model's; the
encodings are computed once per FPN level however many frames run; and after a tracking run (prompts,
memory, back-fill) every cached tensor still equals a fresh computation, i.e. nothing downstream wrote into
the shared tensors.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from test_sessions import FixedDetector

from gsam2_video import AssociationConfig, KeyframeConfig, PropagatorConfig, TrackerConfig
from gsam2_video.models.position_cache import CachedPositionEncoding, cache_position_encodings
from gsam2_video.models.sam2_model import Sam2Model
from gsam2_video.pipeline import Tracker


def _load(tiny_models: dict[str, Path], cached: bool) -> Sam2Model:
    model = Sam2Model.from_pretrained(str(tiny_models["sam2"]), PropagatorConfig(), device="cpu", dtype="fp32")
    if not cached:  # the neck as transformers builds it
        neck = model.model.vision_encoder.neck
        neck.position_encoding = neck.position_encoding.inner
    return model


class CountingInner(torch.nn.Module):
    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner, self.calls = inner, 0

    def forward(self, *args, **kwargs):
        self.calls += 1
        return self.inner(*args, **kwargs)


def test_features_identical_and_built_once_per_level(tiny_models, tree_frames, one_torch_thread) -> None:
    plain, cached = _load(tiny_models, cached=False), _load(tiny_models, cached=True)
    cache = cached.position_cache
    assert isinstance(cache, CachedPositionEncoding)
    counting = cache.inner = CountingInner(cache.inner)
    h, w = tree_frames[0].shape[:2]
    with torch.inference_mode():
        for frame in tree_frames[:4]:
            (feats_a, pos_a), (feats_b, pos_b) = plain.encode_image(frame, h, w), cached.encode_image(frame, h, w)
            assert len(feats_a) == len(feats_b)
            for a, b in zip(feats_a, feats_b):
                assert torch.equal(a, b)
            assert torch.equal(pos_a, pos_b)
    levels = len(plain.model.vision_encoder.neck.convs)
    assert counting.calls == levels  # the first frame built every level; the next three reused them
    assert len(cache._cache) == levels and cache.cached_bytes > 0


def test_cached_encodings_survive_a_tracking_run(tiny_models, videos_dir, one_torch_thread) -> None:
    """Offline mode (back-fill, a reverse session), prompts on two keyframes: the results equal the uncached
    model's, and the cached tensors equal fresh ones afterwards."""
    config = TrackerConfig(keyframes=KeyframeConfig(detect_every=4, score_trigger=False, scene_cut_threshold=None),
                           association=AssociationConfig(max_missed_keyframes=2))
    out = []
    for cached in (False, True):
        tracker = Tracker(FixedDetector(), _load(tiny_models, cached), config)
        with tracker.track(videos_dir / "carphone_pristine.mp4", "person. car.", mode="offline",
                           max_frames=10) as run:
            out.append([(r.frame_index, r.track_ids.tolist(), r.labels.copy()) for r in run])
    assert len(out[0]) == len(out[1]) == 10
    assert any(ids for _, ids, _ in out[0])
    for (fa, ia, la), (fb, ib, lb) in zip(*out):
        assert (fa, ia) == (fb, ib)
        np.testing.assert_array_equal(la, lb)
    cache = tracker.propagator.position_cache
    assert cache is not None and cache._cache
    for (shape, device, dtype), kept in cache._cache.items():
        assert torch.equal(kept, cache.inner(torch.Size(shape), device, dtype))


def test_install_is_idempotent_and_skips_models_without_a_neck(tiny_models) -> None:
    model = _load(tiny_models, cached=True)
    assert cache_position_encodings(model.model) is model.position_cache
    assert cache_position_encodings(torch.nn.Linear(2, 2)) is None


def test_masked_calls_are_not_cached(tiny_models) -> None:
    cache = _load(tiny_models, cached=True).position_cache
    mask = torch.ones(1, 4, 4, dtype=torch.bool)
    shape = torch.Size((1, 8, 4, 4))
    assert torch.equal(cache(shape, "cpu", torch.float32, mask), cache.inner(shape, "cpu", torch.float32, mask))
    assert not cache._cache


def test_cache_is_bounded(tiny_models, monkeypatch) -> None:
    from gsam2_video.models import position_cache

    monkeypatch.setattr(position_cache, "MAX_ENTRIES", 3)
    cache = _load(tiny_models, cached=True).position_cache
    sizes = []
    for size in range(2, 9):
        cache(torch.Size((1, 8, size, size)), "cpu", torch.float32)
        sizes.append(len(cache._cache))
    assert sizes == [1, 2, 3, 1, 2, 3, 1]
