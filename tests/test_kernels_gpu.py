"""CuPy kernels on a real GPU against the torch references (marked gpu; skipped without CUDA + CuPy).

Run with: pytest -m gpu tests/test_kernels_gpu.py
"""

from __future__ import annotations

import importlib.util

import pytest
import torch
from _kernel_cases import blob_masks, level_inputs, mask_batch

from gsam2_video.ops import (
    connected_components,
    mask_iou_matrix,
    multi_scale_deformable_attention,
    preprocess_frames,
    rle_encode,
)
from gsam2_video.ops.connected_components import connected_components_reference
from gsam2_video.ops.deformable_attention import multi_scale_deformable_attention_reference
from gsam2_video.ops.preprocess import IMAGENET_MEAN, IMAGENET_STD, preprocess_frames_reference

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


def test_iou_and_rle_gpu():
    a, b = blob_masks(7, 270, 481, seed=3), blob_masks(5, 270, 481, seed=4)
    torch.testing.assert_close(mask_iou_matrix(a.cuda(), b.cuda()).cpu(), mask_iou_matrix(a, b))
    assert rle_encode(a.cuda()) == rle_encode(a)


@pytest.mark.parametrize("mode", ["bicubic", "bilinear"])
def test_preprocess_gpu(mode):
    frames = torch.randint(0, 256, (2, 270, 480, 3), dtype=torch.uint8)
    got = preprocess_frames(frames.cuda(), 1024, mode=mode).cpu()
    ref = preprocess_frames_reference(frames, (1024, 1024), IMAGENET_MEAN, IMAGENET_STD, mode)
    torch.testing.assert_close(got, ref, rtol=0, atol=5e-5)


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
