"""Hole filling inside the tracking loop, end to end against Meta's SAM2VideoPredictor (fill_hole_area=8).

Meta fills holes in every low-res mask and encodes a prompted frame's memory from the *filled* mask, while
tracked frames' memories come from the unfilled logits; a wrong choice there shows up on later frames.
Meta's CUDA connected-components extension is replaced by scipy's CPU labelling (test_postprocess), the
weights are Meta's seeded random init converted into transformers, and the call pattern is the parity one:
box at frame 0, box for a second object later, a mask-prompted third object, a refresh of the first.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("sam2")

from sam2_reference import (
    MetaRun,
    Prompt,
    build_meta_predictor,
    compare_runs,
    read_frames,
    run_meta,
    write_jpeg_folder,
)
from test_postprocess import scipy_connected_components

from gsam2_video.config import PropagatorConfig
from gsam2_video.models.convert import model_from_meta_state_dict
from gsam2_video.models.propagator import Sam2Propagator

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny models: one thread is faster here


def test_hole_filling_in_the_loop_equals_meta(videos_dir: Path, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from sam2.utils import misc

    monkeypatch.setattr(misc, "get_connected_components", scipy_connected_components)
    n, size = 16, 128
    frames = write_jpeg_folder(read_frames(videos_dir / "bikes.mp4", n), tmp_path / "jpg")
    h, w = frames[0].shape[:2]
    m3 = np.zeros((h, w), bool)
    m3[h // 3:h // 2, w // 2:w // 2 + w // 6] = True
    m1 = np.zeros((h, w), bool)
    m1[h // 4:h // 2, w // 5:w // 2] = True
    prompts = [Prompt(0, 1, box=(0.1 * w, 0.2 * h, 0.45 * w, 0.7 * h)),
               Prompt(3, 2, box=(0.5 * w, 0.1 * h, 0.9 * w, 0.6 * h)), Prompt(6, 3, mask=m3), Prompt(9, 1, mask=m1)]
    meta = build_meta_predictor("tiny", size, seed=0, fill_hole_area=8, weight_noise=0.05)
    ref = run_meta(meta, tmp_path / "jpg", prompts, n)

    model = model_from_meta_state_dict(meta.state_dict(), image_size=size)
    runs = {}
    for fill in (8, 0):
        prop = Sam2Propagator(model, PropagatorConfig(fill_hole_area=fill), device="cpu", dtype="fp32")
        prop.reset(h, w, num_frames=n)
        run = MetaRun({}, {}, {}, {})
        for t, frame in enumerate(frames):
            feats = prop.encode(frame, t)
            prop.propagate(feats)
            for p in (p for p in prompts if p.frame == t):
                if p.obj_id in prop.obj_ids:
                    prop.refresh(p.obj_id, feats, p.mask)
                elif p.box is not None:
                    prop.add_object(p.obj_id, feats, box=p.box)
                else:
                    prop.add_object(p.obj_id, feats, mask=p.mask)
            out = prop.commit(feats)
            run.obj_ids[t], run.low_res[t], run.video_res[t] = out.obj_ids, out.low_res, out.logits[:, None]
        runs[fill] = run
    stats = compare_runs(ref, runs[8])
    print(f"\nfill_hole_area=8 vs Meta: {stats}")
    for obj_id, s in stats.items():
        assert s["min_iou"] >= 0.999 and s["max_logit_diff"] <= 1e-4, (obj_id, s)
    filled = sum(int(((runs[8].low_res[t] > 0) != (runs[0].low_res[t] > 0)).sum()) for t in range(n))
    print(f"pixels changed by hole filling over {n} frames: {filled}")
    assert filled > 100  # hole filling really changed the masks (so the comparison above can see it)


def test_mask_prompt_pointer_like_meta_when_the_object_is_present(videos_dir: Path, tmp_path: Path) -> None:
    """With random weights the decoder usually calls the object absent, and then every path yields the same
    'no object' pointer. Biasing the object-score head makes it present: Meta's mask prompt takes the pointer
    from the single-mask token, transformers' ``_use_mask_as_output`` from the best multimask token. Ours
    follows Meta (the run equals Meta's) and differs measurably from transformers' helper."""
    n, size = 10, 128
    frames = write_jpeg_folder(read_frames(videos_dir / "bikes.mp4", n), tmp_path / "jpg")
    h, w = frames[0].shape[:2]
    mask = np.zeros((h, w), bool)
    mask[h // 4:3 * h // 4, w // 5:w // 2] = True
    meta = build_meta_predictor("tiny", size, seed=1, fill_hole_area=0, weight_noise=0.05)
    with torch.no_grad():
        meta.sam_mask_decoder.pred_obj_score_head.layers[2].bias += 8.0
    prompts = [Prompt(0, 1, mask=mask), Prompt(2, 2, box=(0.5 * w, 0.1 * h, 0.9 * w, 0.6 * h))]
    ref = run_meta(meta, tmp_path / "jpg", prompts, n)
    prop = Sam2Propagator(model_from_meta_state_dict(meta.state_dict(), image_size=size),
                          PropagatorConfig(fill_hole_area=0), device="cpu", dtype="fp32")
    prop.reset(h, w, num_frames=n)
    run = MetaRun({}, {}, {}, {})
    for t, frame in enumerate(frames):
        feats = prop.encode(frame, t)
        prop.propagate(feats)
        if t == 0:
            prop.add_object(1, feats, mask=mask)
            ours_ptr = prop.session._pending[1].pointer
            s = prop.image_size
            m = torch.nn.functional.interpolate(torch.from_numpy(mask)[None, None].float(), size=(s, s),
                                                mode="bilinear", antialias=True) >= 0.5
            with torch.no_grad():
                theirs = prop.model._use_mask_as_output(prop.sam2.top_feature(feats.feats), prop.sam2.hr_features(feats.feats, 1),
                                                        m.float()).object_pointer.reshape(1, -1)
        elif t == 2:
            prop.add_object(2, feats, box=prompts[1].box)
        out = prop.commit(feats)
        assert (out.object_scores > 0).all()
        run.obj_ids[t], run.low_res[t], run.video_res[t] = out.obj_ids, out.low_res, out.logits[:, None]
    stats = compare_runs(ref, run)
    gap = float((ours_ptr - theirs).abs().max())
    print(f"\nmask-prompt pointer: ours vs transformers' _use_mask_as_output max diff {gap:.3g}; vs Meta: {stats}")
    for obj_id, st in stats.items():
        assert st["min_iou"] >= 0.999 and st["max_logit_diff"] <= 1e-4, (obj_id, st)
    assert gap > 1e-3
