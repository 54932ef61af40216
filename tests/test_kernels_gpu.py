"""CuPy kernels on a real GPU against the torch references (marked gpu; skipped without CUDA + CuPy).

Run with: pytest -m gpu tests/test_kernels_gpu.py
"""

from __future__ import annotations

import importlib.util

import pytest
import torch
from _kernel_cases import blob_masks, level_inputs, mask_batch

from gsam2_video.models.sam2_preprocess import preprocess_frame, preprocess_frame_tensor
from gsam2_video.ops import (
    connected_components,
    kernel_record,
    mask_iou_matrix,
    multi_scale_deformable_attention,
    rle_from_label_map,
)
from gsam2_video.ops.connected_components import connected_components_reference
from gsam2_video.ops.deformable_attention import multi_scale_deformable_attention_reference

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device"),
    pytest.mark.skipif(importlib.util.find_spec("cupy") is None, reason="CuPy not installed"),
]


@pytest.fixture(autouse=True)
def _kernels_on(monkeypatch):
    monkeypatch.delenv("GSAM2_FORCE_TORCH", raising=False)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
def test_msda_gpu(dtype):
    value, ss, starts, loc, weights = level_inputs([(50, 67), (25, 34), (13, 17), (7, 9), (1, 1)], 2, 300, 8,
                                                   32, 4, spread=0.2)
    cuda = [t.cuda() for t in (value.to(dtype), ss, starts, loc, weights)]
    got = multi_scale_deformable_attention(*cuda)
    ref = multi_scale_deformable_attention_reference(value.to(dtype), ss, starts, loc, weights)
    tol = {torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 2e-2}[dtype]
    torch.testing.assert_close(got.cpu().float(), ref.float(), rtol=tol, atol=tol)


def test_ccl_gpu():
    masks = torch.cat([mask_batch(4, 97, 130, 0.55, seed=1), blob_masks(4, 97, 130, seed=2)])
    labels, areas = connected_components(masks.cuda())
    ref = connected_components_reference(masks)
    assert torch.equal(labels.cpu(), ref[0]) and torch.equal(areas.cpu(), ref[1])


def _label_map(masks: torch.Tensor, ids: list[int], dtype: torch.dtype) -> torch.Tensor:
    labels = torch.zeros(masks.shape[1:], dtype=torch.int64)
    for i, m in zip(ids, masks):
        labels[m] = i
    return labels.to(dtype)


def test_iou_and_rle_gpu():
    a, b = blob_masks(7, 270, 481, seed=3), blob_masks(5, 270, 481, seed=4)
    torch.testing.assert_close(mask_iou_matrix(a.cuda(), b.cuda()).cpu(), mask_iou_matrix(a, b))
    for dtype, ids in ((torch.uint8, [1, 2, 3, 200, 255, 7, 9]), (torch.uint16, [1, 256, 300, 65535, 4, 5, 6]),
                       (torch.int32, [70000, 2, 3, 4, 5, 6, 1])):
        labels = _label_map(a, ids, dtype)
        assert rle_from_label_map(labels.cuda(), [*ids, 77]) == rle_from_label_map(labels, [*ids, 77])


def _within_one_ulp(got: torch.Tensor, ref: torch.Tensor) -> bool:
    spacing = torch.nextafter(ref.abs(), torch.tensor(float("inf"))) - ref.abs()
    return bool(((got - ref).abs() <= spacing).all())


def test_preprocess_gpu_equals_pil_path(videos_dir):
    """Resized pixels equal PIL's; normalised values within 1 ulp of Meta's CPU path (emulation: equal)."""
    import av
    import numpy as np
    from PIL import Image

    from gsam2_video.kernels.preprocess import resize_bicubic_cuda

    frames = []
    for path in sorted(videos_dir.iterdir()):
        with av.open(str(path)) as container:
            frames.append(next(container.decode(video=0)).to_ndarray(format="rgb24"))
    rng = np.random.default_rng(0)
    frames += [rng.integers(0, 256, (1080, 1920, 3), dtype=np.uint8), rng.integers(0, 256, (1920, 1080, 3),
                                                                                     dtype=np.uint8)]
    for frame in frames:
        for size in (1024, 517):
            resized = resize_bicubic_cuda(torch.from_numpy(frame).cuda(), size, size).cpu().numpy()
            assert np.array_equal(resized, np.asarray(Image.fromarray(frame).resize((size, size)))), frame.shape
            ref = preprocess_frame(frame, size)
            got = preprocess_frame_tensor(frame, size, "cuda")  # numpy: pinned upload
            on_device = preprocess_frame_tensor(torch.from_numpy(frame).cuda(), size, torch.device("cuda"))
            assert got.shape == (1, 3, size, size) and got.is_cuda
            assert torch.equal(got, on_device)
            assert _within_one_ulp(got[0].cpu(), ref), (frame.shape, size)


def test_record_counts_kernel_runs_on_gpu():
    import numpy as np

    masks = blob_masks(3, 64, 64, seed=6).cuda()
    value, ss, starts, loc, weights = level_inputs([(5, 6), (2, 3)], 1, 7, 2, 8, 2)
    with kernel_record() as record:
        mask_iou_matrix(masks, masks)
        connected_components(masks)
        rle_from_label_map(_label_map(masks.cpu(), [1, 2, 3], torch.uint8).cuda(), [1, 2, 3])
        preprocess_frame_tensor(np.zeros((48, 64, 3), np.uint8), 32, "cuda")
        multi_scale_deformable_attention(*(t.cuda() for t in (value, ss, starts, loc, weights)))
    assert record.report() == {op: {"kernel": 1, "torch": 0} for op in (
        "connected_components", "deformable_attention", "mask_iou", "preprocess", "rle")}


def test_kernels_run_on_torch_current_stream():
    masks = blob_masks(3, 64, 64, seed=5).cuda()
    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream):
        labels, _ = connected_components(masks)
    stream.synchronize()
    assert torch.equal(labels.cpu(), connected_components_reference(masks.cpu())[0])


def test_dlpack_shares_memory_without_copies():
    from gsam2_video.kernels.runtime import _as_cupy

    for dtype in (torch.float32, torch.float16, torch.bfloat16, torch.bool, torch.int32):
        t = torch.zeros(4, 8, dtype=dtype, device="cuda")
        assert _as_cupy(t).data.ptr == t.data_ptr()


def test_grounding_dino_on_cuda_uses_kernel_and_matches_torch():
    from transformers import BertConfig, GroundingDinoConfig, GroundingDinoModel, SwinConfig

    from gsam2_video.kernels import patch_grounding_dino

    torch.manual_seed(0)
    cfg = GroundingDinoConfig(
        backbone_config=SwinConfig(embed_dim=16, depths=[1, 1, 1, 1], num_heads=[1, 1, 1, 1], window_size=4,
                                   image_size=64, out_features=["stage2", "stage3", "stage4"]),
        text_config=BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                               intermediate_size=64),
        d_model=32, encoder_layers=1, decoder_layers=2, encoder_ffn_dim=32, decoder_ffn_dim=32, num_queries=10,
        encoder_attention_heads=2, decoder_attention_heads=2, encoder_n_points=2, decoder_n_points=2,
        num_feature_levels=4)
    model = GroundingDinoModel(cfg).eval().cuda()
    inputs = {"pixel_values": torch.randn(1, 3, 64, 80, device="cuda"),
              "input_ids": torch.tensor([[1, 5, 7, 2]], device="cuda")}
    with torch.no_grad():
        ref = model(**inputs).last_hidden_state
    assert patch_grounding_dino(model) == 3
    calls = []
    import gsam2_video.kernels.deformable_attention as kda

    original = kda.multi_scale_deformable_attention_cuda

    def counting(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    kda.multi_scale_deformable_attention_cuda = counting
    try:
        with torch.no_grad():
            got = model(**inputs).last_hidden_state
    finally:
        kda.multi_scale_deformable_attention_cuda = original
    assert len(calls) == 3
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-4)


def test_frame_extras_on_gpu_equal_cpu_and_never_synchronise():
    """The per-frame device work of a run with video and RLE outputs (compose, overlay, packed label
    changes) raises under CUDA's sync debug mode if any step waits for the GPU, and equals the CPU path."""
    from gsam2_video.compose import compose_frame
    from gsam2_video.drawing_torch import overlay_torch
    from gsam2_video.ops.rle import label_changes_packed, unpack_changes
    from gsam2_video.transfer import to_host

    gen = torch.Generator().manual_seed(0)
    low_res = torch.randn(6, 1, 64, 64, generator=gen) * 4
    image = torch.randint(0, 256, (270, 480, 3), dtype=torch.uint8, generator=gen)
    ids, scores = [3, 5, 8, 13, 21, 300], [0.9, 0.4, 0.7, 0.5, 0.8, 0.6]
    outs = []
    for device in ("cpu", "cuda"):
        lr, img = low_res.to(device), image.to(device)
        torch.cuda.synchronize()
        if device == "cuda":
            torch.cuda.set_sync_debug_mode("error")
        try:
            composed = compose_frame(lr, ids, 270, 480, 0.0)
            drawn = overlay_torch(img, composed.labels, ids, scores, thickness=1)
            changes = label_changes_packed(composed.labels, 270 * 480)
        finally:
            torch.cuda.set_sync_debug_mode("default")
        host = to_host(composed, overlay=drawn, changes=changes)
        outs.append(host)
    cpu, gpu = outs
    assert (cpu.labels == gpu.labels).all()
    assert abs(cpu.overlay.astype(int) - gpu.overlay.astype(int)).max() <= 1
    for a, b in zip(cpu.changes, gpu.changes):
        assert (a == b).all()
    assert unpack_changes(label_changes_packed(torch.from_numpy(cpu.labels), 270 * 480).numpy())[0].shape == \
        cpu.changes[0].shape


def test_pipeline_on_gpu_synchronises_at_most_twice_per_frame(tiny_models, videos_dir):
    """The whole frame loop on CUDA with the extras a video + JSON run builds, under CUDA's sync debug
    mode: every implicit synchronisation (``.item()``, pageable copies, ``nonzero``) warns, so counting
    warnings per frame counts what a GPU waits for. Non-keyframes: the scores and the frame's one copy."""
    import warnings

    from test_frame_budget import GridDetector

    from gsam2_video import AssociationConfig, FrameExtras, KeyframeConfig, PropagatorConfig, TrackerConfig
    from gsam2_video.models.sam2_model import Sam2Model
    from gsam2_video.pipeline import Tracker

    sam2 = Sam2Model.from_pretrained(str(tiny_models["sam2"]), PropagatorConfig(), device="cuda", dtype="fp32")
    config = TrackerConfig(keyframes=KeyframeConfig(detect_every=10, score_trigger=False, scene_cut_threshold=None),
                           association=AssociationConfig(max_missed_keyframes=100, iou_threshold=1.0,
                                                         duplicate_coverage=1.0, weak_iou=None, reacquire_iou=None))
    tracker = Tracker(GridDetector(240, 320), sam2, config)
    per_frame = []
    with tracker.track(videos_dir / "tree.avi", "person.", mode="live", max_frames=12,
                       extras=FrameExtras(overlay=True, rle=True)) as run:
        it = iter(run)
        torch.cuda.set_sync_debug_mode("warn")
        try:
            while True:
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    result = next(it, None)
                if result is None:
                    break
                syncs = [w for w in caught if "synchroniz" in str(w.message).lower()]
                per_frame.append((result.is_keyframe, len(syncs), result.overlay is not None))
        finally:
            torch.cuda.set_sync_debug_mode("default")
    assert len(per_frame) == 12
    plain = [f for f in per_frame if not f[0]]
    assert plain and all(n <= 2 for _, n, _ in plain), per_frame
    assert all(drawn for _, _, drawn in per_frame)
