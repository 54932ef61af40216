"""SAM 2's object pointers as the session exposes them for re-identification (issue 14, item 5).

A lost track is re-identified by comparing the pointer SAM 2 produced for it on its last visible frame with
the pointers of the keyframe's detection boxes. These tests check, on a real (tiny, random-weight) SAM 2
session, that the pointer kept per object is exactly the one from its latest frame with object score > 0,
that box decodes carry the pointer a box prompt would store, and, against Meta's SAM2VideoPredictor, that
the kept pointer is the ``obj_ptr`` Meta's model produced on that frame.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from test_propagator import BOX1, BOX2

from gsam2_video.config import PropagatorConfig
from gsam2_video.errors import ModelError
from gsam2_video.models.propagator import Sam2Propagator
from gsam2_video.models.sam2_session import Sam2Session
from gsam2_video.protocols import PointerSession

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def make(sam_dir: Path, prune: bool = True) -> Sam2Propagator:
    return Sam2Propagator.from_pretrained(str(sam_dir), PropagatorConfig(model=str(sam_dir)), device="cpu",
                                          dtype="fp32", prune=prune)


def blob(h: int, w: int, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    m = np.zeros((h, w), bool)
    m[y0:y1, x0:x1] = True
    return m


def _step_pointer(session: Sam2Session, obj_id: int, step: int) -> torch.Tensor:
    """The pointer SAM 2 stored in the memory bank for this object on this step (an unpruned session
    keeps every step)."""
    obj = session._objects[obj_id]
    mem = obj.cond.get(step) or obj.noncond[step]
    return mem.pointer


def test_kept_pointer_is_the_one_from_the_last_visible_frame(tiny_models: dict[str, Path],
                                                            tree_frames: list[np.ndarray]) -> None:
    """Object 1 is made invisible on frame 4 (an empty mask prompt: object score -10, SAM 2's "no object"
    pointer) and object 3 on the last frame; after every commit each object's kept pointer must equal the
    memory-bank pointer of its latest step with a positive object score."""
    prop = make(tiny_models["sam2"], prune=False)  # unpruned: the memory bank keeps every step's pointer
    frames = tree_frames[:8]
    h, w = frames[0].shape[:2]
    prop.reset(h, w)
    session = prop.session
    assert isinstance(session, PointerSession)
    last_visible: dict[int, int] = {}
    invisible_seen = []
    for t, frame in enumerate(frames):
        feats = prop.encode(frame, t)
        prop.propagate(feats)
        if t == 0:
            prop.add_object(1, feats, box=BOX1)
            prop.add_object(2, feats, mask=blob(h, w, 50, 200, 170, 300))
        if t == 2:
            prop.add_object(3, feats, mask=blob(h, w, 10, 80, 10, 90))
        if t == 4:
            prop.refresh(1, feats, np.zeros((h, w), bool))
        if t == 7:
            prop.refresh(3, feats, np.zeros((h, w), bool))
        out = prop.commit(feats)
        step = feats.step
        for oid, score in zip(out.obj_ids, out.object_scores.tolist()):
            if score > 0:
                last_visible[oid] = step
            else:
                invisible_seen.append((oid, t))
        got = prop.object_pointers(out.obj_ids)
        assert got.shape == (len(out.obj_ids), prop.sam2.pointer_dim) and got.dtype == torch.float32
        for row, oid in enumerate(out.obj_ids):
            assert torch.equal(got[row:row + 1], _step_pointer(session, oid, last_visible[oid])), (t, oid)
    assert (1, 4) in invisible_seen and (3, 7) in invisible_seen
    # the kept pointer is not the invisible frame's ("no object") one, which every object shares
    no_object = _step_pointer(session, 1, 4)
    torch.testing.assert_close(no_object, prop.model.no_object_pointer.float())
    assert not torch.equal(prop.object_pointers([3]), no_object)
    assert not torch.equal(prop.object_pointers([3]), prop.object_pointers([1]))
    # order follows the ids asked for; an unknown id is an error, not a silent row
    both = prop.object_pointers([2, 1])
    assert torch.equal(both[0], prop.object_pointers([2])[0]) and torch.equal(both[1], prop.object_pointers([1])[0])
    assert prop.object_pointers([]).shape == (0, prop.sam2.pointer_dim)
    with pytest.raises(ModelError, match="not tracked"):
        prop.object_pointers([9])
    prop.remove(2)
    with pytest.raises(ModelError, match="not tracked"):
        prop.object_pointers([2])


def test_object_never_visible_has_a_nan_pointer(tiny_models: dict[str, Path],
                                                tree_frames: list[np.ndarray]) -> None:
    """An object prompted with an empty mask was never seen: no appearance to compare (NaN row), so
    re-identification falls back to its position."""
    prop = make(tiny_models["sam2"])
    h, w = tree_frames[0].shape[:2]
    prop.reset(h, w)
    feats = prop.encode(tree_frames[0], 0)
    prop.add_object(1, feats, mask=np.zeros((h, w), bool))
    prop.add_object(2, feats, mask=blob(h, w, 50, 200, 170, 300))
    with pytest.raises(ModelError, match="not tracked"):
        prop.object_pointers([5])
    assert torch.isnan(prop.object_pointers([1, 2])).all(dim=1).tolist() == [True, True]  # nothing committed
    out = prop.commit(feats)
    assert out.object_scores.tolist() == [-10.0, 10.0]
    kept = prop.object_pointers([1, 2])
    assert torch.isnan(kept[0]).all() and torch.isfinite(kept[1]).all()


def test_box_decodes_carry_the_pointer_a_box_prompt_stores(tiny_models: dict[str, Path],
                                                           tree_frames: list[np.ndarray]) -> None:
    """BoxMasks.pointers row k is SAM 2's pointer for box keep[k]: the same as an object prompted with that
    box on the same features keeps (both come from one mask-decoder pass over the box)."""
    prop = make(tiny_models["sam2"])
    h, w = tree_frames[0].shape[:2]
    prop.reset(h, w)
    feats = prop.encode(tree_frames[0], 0)
    boxes = np.array([BOX1, [100, 100, 100, 180], BOX2], np.float32)  # the zero-area box is dropped
    bm = prop.segment_boxes(feats, boxes)
    assert bm.keep.tolist() == [0, 2] and bm.pointers.shape == (2, prop.sam2.pointer_dim)
    assert (bm.object_scores > 0).all(), "the check below needs visible box decodes"
    prop.add_object(1, feats, box=BOX1)
    prop.add_object(2, feats, box=BOX2)
    prop.commit(feats)
    torch.testing.assert_close(prop.object_pointers([1, 2]), bm.pointers, rtol=0, atol=1e-5)
    # the pointers tell the two boxes apart (they are not the shared "no object" pointer)
    assert not torch.allclose(bm.pointers[0], bm.pointers[1])
    none = prop.segment_boxes(feats, np.zeros((0, 4), np.float32))
    assert none.pointers.shape == (0, prop.sam2.pointer_dim)


def test_removed_objects_release_their_pointer(tiny_models: dict[str, Path],
                                               tree_frames: list[np.ndarray]) -> None:
    """The kept pointers are one small N x C tensor per session: removing objects shrinks what is held."""
    prop = make(tiny_models["sam2"])
    h, w = tree_frames[0].shape[:2]
    prop.reset(h, w)
    for t in range(3):
        feats = prop.encode(tree_frames[t], t)
        prop.propagate(feats)
        if t == 0:
            for k in range(4):
                prop.add_object(k + 1, feats, mask=blob(h, w, 10 + 40 * k, 40 + 40 * k, 10, 60))
        prop.commit(feats)
    kept = prop.session._visible_pointers
    assert sorted(kept) == [1, 2, 3, 4]
    assert len({p.untyped_storage().data_ptr() for p in kept.values()}) == 1  # one storage for all
    c = prop.sam2.pointer_dim
    assert next(iter(kept.values())).untyped_storage().nbytes() == 4 * c * 4
    prop.remove(3)
    feats = prop.encode(tree_frames[3], 3)
    prop.commit(feats)
    kept = prop.session._visible_pointers
    assert sorted(kept) == [1, 2, 4]
    assert next(iter(kept.values())).untyped_storage().nbytes() == 3 * c * 4


def test_kept_pointer_is_metas_obj_ptr_on_the_last_visible_frame(videos_dir: Path, tmp_path: Path) -> None:
    """Against Meta's SAM2VideoPredictor on the same random weights and frames: object 1 (box on frame 0)
    is blanked by an empty mask on frame 6 (Meta: object score -10, its no-object pointer); object 2 (box on
    frame 2) is tracked throughout. After each frame our kept pointer must equal Meta's stored ``obj_ptr``
    of the latest frame on which Meta's object score was > 0."""
    pytest.importorskip("sam2", reason="Meta's sam2==1.1.0 is the reference")
    from sam2_reference import build_meta_predictor, read_frames, write_jpeg_folder

    from gsam2_video.models.convert import model_from_meta_state_dict

    n, size = 10, 128
    frames = write_jpeg_folder(read_frames(videos_dir / "bikes.mp4", n), tmp_path / "frames")
    h, w = frames[0].shape[:2]
    box1 = np.array([0.18 * w, 0.22 * h, 0.52 * w, 0.85 * h], np.float32)
    box2 = np.array([0.58 * w, 0.08 * h, 0.93 * w, 0.62 * h], np.float32)
    empty = np.zeros((h, w), bool)
    prompts = {0: [(1, box1, None)], 2: [(2, box2, None)], 6: [(1, None, empty)]}
    predictor = build_meta_predictor("tiny", size, seed=0, fill_hole_area=0, weight_noise=0.1)
    model = model_from_meta_state_dict(predictor.state_dict(), image_size=size)

    with torch.inference_mode():
        state = predictor.init_state(video_path=str(tmp_path / "frames"))
        starts = sorted(prompts)
        for i, start in enumerate(starts):
            for oid, box, mask in prompts[start]:
                if box is not None:
                    predictor.add_new_points_or_box(state, frame_idx=start, obj_id=oid, box=box)
                else:
                    predictor.add_new_mask(state, frame_idx=start, obj_id=oid, mask=torch.from_numpy(mask))
            stop = starts[i + 1] - 1 if i + 1 < len(starts) else n - 1
            for _ in predictor.propagate_in_video(state, start_frame_idx=start,
                                                  max_frame_num_to_track=stop - start):
                pass

    def meta_output(oid: int, t: int) -> dict | None:
        out = state["output_dict_per_obj"][state["obj_id_to_idx"][oid]]
        return out["cond_frame_outputs"].get(t) or out["non_cond_frame_outputs"].get(t)

    prop = Sam2Propagator(model, PropagatorConfig(fill_hole_area=0, max_sprinkle_area=0), dtype="fp32")
    prop.reset(h, w, num_frames=n)
    last_visible: dict[int, int] = {}
    with torch.inference_mode():
        for t, frame in enumerate(frames):
            feats = prop.encode(frame, t)
            prop.propagate(feats)
            for oid, box, mask in prompts.get(t, []):
                if oid in prop.obj_ids:
                    prop.refresh(oid, feats, mask)
                else:
                    prop.add_object(oid, feats, box=tuple(box))
            out = prop.commit(feats)
            for oid in out.obj_ids:
                ref = meta_output(oid, t)
                assert ref is not None, (oid, t)
                if float(ref["object_score_logits"].reshape(-1)[0]) > 0:
                    last_visible[oid] = t
            kept = prop.object_pointers(out.obj_ids)
            for row, oid in enumerate(out.obj_ids):
                expected = meta_output(oid, last_visible[oid])["obj_ptr"].reshape(-1)
                torch.testing.assert_close(kept[row], expected, rtol=0, atol=1e-4, msg=f"object {oid}, frame {t}")
    # the blanked frame was invisible on Meta's side, so object 1's kept pointer really is an older one
    assert float(meta_output(1, 6)["object_score_logits"].reshape(-1)[0]) < 0
    assert last_visible[1] != 6
    assert not torch.allclose(prop.object_pointers([1])[0], meta_output(1, 6)["obj_ptr"].reshape(-1), atol=1e-3)
