"""Bounded SAM 2 session memory (issue 3, 5b), conditioning-frame cap, and backfill (reverse propagation).

Same tiny random model and real frames as test_propagator.py (shared helpers imported from there).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from test_propagator import BOX1, blob_mask, make

from gsam2_video.models.propagator import FrameFeatures, Sam2Propagator


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def sam_dir(tiny_models: dict[str, Path]) -> Path:
    return tiny_models["sam2"]


@pytest.fixture(scope="module")
def frames(tree_frames: list[np.ndarray]) -> list[np.ndarray]:
    return tree_frames


def run_long(prop: Sam2Propagator, frames, n: int) -> tuple[list[torch.Tensor], list[int]]:
    h, w = frames[0].shape[:2]
    prop.reset(h, w)
    logits, held = [], []
    for i in range(n):
        feats = prop.encode(frames[i], i)
        prop.propagate(feats)
        if i == 0:
            prop.add_object(1, feats, box=BOX1)
        if i == 3:
            prop.add_object(2, feats, mask=blob_mask(h, w, 50, 200, 170, 300))
        if i in (12, 20):
            prop.refresh(1, feats, blob_mask(h, w, 40, 190, 40, 150))
        out = prop.commit(feats)
        logits.append(out.logits)
        held.append(prop.held_bytes())
    return logits, held


def test_bounded_session_equals_unbounded_with_flat_memory(sam_dir: Path, frames) -> None:
    n = 48
    bounded, unbounded = make(sam_dir), make(sam_dir)
    unbounded.prune = False
    lb, hb = run_long(bounded, frames, n)
    lu, hu = run_long(unbounded, frames, n)
    for t in range(n):
        assert torch.equal(lb[t], lu[t]), f"frame {t} differs"
    # ours: flat once the last prompt (frame 20) is older than the 16-frame pointer window
    assert max(hb[36:]) == min(hb[36:])
    assert max(hb) == hb[-1]
    # unbounded: every frame adds each object's memory
    assert all(hu[t + 1] > hu[t] for t in range(n - 1)) and hu[-1] > 2 * hb[-1]


def test_conditioning_frames_capped(sam_dir: Path, frames) -> None:
    prop = make(sam_dir, max_conditioning_frames=2)
    h, w = frames[0].shape[:2]
    prop.reset(h, w)
    held = []
    for i, frame in enumerate(frames[:40]):
        feats = prop.encode(frame, i)
        prop.propagate(feats)
        if i == 0:
            prop.add_object(1, feats, box=BOX1)
        elif i % 2 == 0:  # a refresh every other frame: 20 conditioning prompts
            prop.refresh(1, feats, blob_mask(h, w, 40 + i, 150 + i, 40, 150))
        prop.commit(feats)
        held.append(prop.held_bytes())
    cond = prop.session._objects[1].cond
    assert list(cond) == [0, 38]  # the first prompt and the most recent one
    assert max(held[20:]) == min(held[20:])


def test_backfill_equals_forward_run_on_reversed_frames(sam_dir: Path, frames) -> None:
    """Meta's reverse propagation is symmetric (signed temporal offsets); backfill from a birth frame over
    past frames equals a fresh forward session fed those frames newest-first, and leaves live state alone."""
    h, w = frames[0].shape[:2]
    live, control = make(sam_dir), make(sam_dir)
    birth_mask = blob_mask(h, w, 50, 200, 170, 300)
    for prop in (live, control):
        prop.reset(h, w)
    buffer: list[FrameFeatures] = []
    for i in range(10):
        feats = live.encode(frames[i], i)
        cf = control.encode(frames[i], i)
        for prop, f in ((live, feats), (control, cf)):
            prop.propagate(f)
            if i == 0:
                prop.add_object(1, f, box=BOX1)
        if i == 9:
            held = live.held_bytes()
            back = live.backfill(2, feats, birth_mask, buffer[::-1])
            assert live.held_bytes() == held and live.obj_ids == [1]
            live.add_object(2, feats, mask=birth_mask)
            control.add_object(2, cf, mask=birth_mask)
        a, b = live.commit(feats), control.commit(cf)
        assert torch.equal(a.logits, b.logits)  # backfill did not disturb the live session
        buffer.append(feats)
    assert len(back) == 9
    fwd = make(sam_dir)
    fwd.reset(h, w)
    expected = []
    for k, i in enumerate(range(9, -1, -1)):
        f = fwd.encode(frames[i], k)
        if k == 0:
            fwd.add_object(2, f, mask=birth_mask)
        out = fwd.commit(f)
        if k:
            expected.append(out.logits[0])
    for got, exp in zip(back, expected):
        assert torch.equal(got, exp)


def test_backfill_equals_meta_reverse_propagation(videos_dir: Path, tmp_path: Path) -> None:
    """The same random weights in Meta's SAM2VideoPredictor (converted into ours): a mask added on frame 9,
    then ``propagate_in_video(reverse=True)`` down to frame 0, equals our backfill through frames 8..0."""
    pytest.importorskip("sam2")
    from sam2_reference import build_meta_predictor, read_frames, write_jpeg_folder

    from gsam2_video.config import PropagatorConfig
    from gsam2_video.models.convert import model_from_meta_state_dict

    n = 10
    frames_ = write_jpeg_folder(read_frames(videos_dir / "bikes.mp4", n), tmp_path / "jpg")
    h, w = frames_[0].shape[:2]
    mask = np.zeros((h, w), bool)
    mask[h // 4:3 * h // 4, w // 5:w // 2] = True
    meta = build_meta_predictor("tiny", 128, seed=0, fill_hole_area=0)
    with torch.inference_mode():
        state = meta.init_state(video_path=str(tmp_path / "jpg"))
        meta.add_new_mask(state, frame_idx=n - 1, obj_id=5, mask=torch.from_numpy(mask))
        ref = {t: v[0, 0].clone() for t, _, v in meta.propagate_in_video(state, start_frame_idx=n - 1,
                                                                          reverse=True)}
    prop = Sam2Propagator(model_from_meta_state_dict(meta.state_dict(), image_size=128),
                          PropagatorConfig(fill_hole_area=0), device="cpu", dtype="fp32")
    prop.reset(h, w, num_frames=n)  # Meta knows the video length: pointer positions / min(n, 16) - 1
    feats = []
    for t, frame in enumerate(frames_):
        feats.append(prop.encode(frame, t))
        prop.commit(feats[-1])
    back = prop.backfill(5, feats[-1], mask, feats[-2::-1])
    assert sorted(ref) == list(range(n))
    for k, t in enumerate(range(n - 2, -1, -1)):
        torch.testing.assert_close(back[k], ref[t], rtol=0, atol=1e-4)
        a, b = back[k] > 0, ref[t] > 0
        assert 0 < int(b.sum()) < h * w and int((a & b).sum()) / int((a | b).sum()) >= 0.999
