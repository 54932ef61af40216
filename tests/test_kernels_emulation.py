"""The CUDA sources, compiled for the CPU with host_emulation.h, against the torch references.

The library is built once per session (g++, a few seconds); each test runs the same launcher code the GPU
path runs (buffers, grid sizes, prefix sums) with an EmulationRunner instead of CuPy. Skips without g++.
"""

from __future__ import annotations

import shutil

import pytest
import torch
from _kernel_cases import blob_masks, level_inputs, mask_batch

from gsam2_video.kernels.connected_components import connected_components_cuda
from gsam2_video.kernels.deformable_attention import channel_pack, multi_scale_deformable_attention_cuda
from gsam2_video.kernels.mask_iou import overlap_counts_cuda
from gsam2_video.kernels.preprocess import preprocess_frames_cuda
from gsam2_video.kernels.rle import run_starts_cuda
from gsam2_video.kernels.runtime import EmulationRunner, build_emulation_library
from gsam2_video.ops.connected_components import connected_components_reference
from gsam2_video.ops.deformable_attention import multi_scale_deformable_attention_reference
from gsam2_video.ops.mask_iou import overlap_counts_reference
from gsam2_video.ops.preprocess import IMAGENET_MEAN, IMAGENET_STD, preprocess_frames_reference
from gsam2_video.ops.rle import run_starts_reference


@pytest.fixture(scope="session")
def emu(tmp_path_factory) -> EmulationRunner:
    if shutil.which("g++") is None:
        pytest.skip("g++ not installed: host emulation unavailable")
    return EmulationRunner(build_emulation_library(tmp_path_factory.mktemp("gsam2_emu")))


# ---------------------------------------------------------------- fp16 / bf16 storage conversions
def _float_probe() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    special = torch.tensor([0.0, -0.0, 65504.0, 65519.99, 65520.0, 1e6, -1e6, 2.0 ** -24, 2.0 ** -25,
                            2.0 ** -25 * 1.0001, 3 * 2.0 ** -26, 2.0 ** -14, 6.1e-5, float("inf"), float("-inf")])
    mags = torch.exp2(torch.rand(200_000, generator=g) * 60 - 40)  # 2^-40 .. 2^20, all half ranges
    signs = torch.where(torch.rand(200_000, generator=g) < 0.5, -1.0, 1.0)
    halves = torch.arange(0, 1 << 16, dtype=torch.int32).to(torch.int16).view(torch.float16).float()
    ties = (halves[:-1] + halves[1:]) / 2  # exact midpoints between neighbouring halves
    return torch.cat([special, mags * signs, halves, ties]).float()


def test_software_half_and_bf16_conversions_match_torch(emu):
    bits = torch.arange(0, 1 << 16, dtype=torch.int32).to(torch.int16)
    for name, dtype in (("g_half_to_float", torch.float16), ("g_bf16_to_float", torch.bfloat16)):
        got = emu.convert(name, bits, torch.float32)
        ref = bits.view(dtype).float()
        finite = ~ref.isnan()
        assert torch.equal(got[finite], ref[finite]) and torch.all(got[~finite].isnan())
    x = _float_probe()
    x = x[~x.isnan()]
    for name, dtype in (("g_float_to_half", torch.float16), ("g_float_to_bf16", torch.bfloat16)):
        got = emu.convert(name, x, torch.int16)
        assert torch.equal(got, x.to(dtype).view(torch.int16)), name


# ---------------------------------------------------------------- deformable attention
MSDA_CASES = {
    "four_levels_with_1x1": ([(7, 9), (4, 5), (1, 1), (2, 3)], 2, 11, 3, 8, 4),
    "single_1x1_level": ([(1, 1)], 1, 5, 2, 4, 3),
    "odd_sizes_odd_dim": ([(5, 3), (3, 2), (1, 7)], 1, 9, 2, 6, 2),
    "dim_not_packable": ([(6, 5), (3, 3)], 2, 4, 1, 3, 4),
}


@pytest.mark.parametrize("case", list(MSDA_CASES))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
def test_msda_kernel_matches_reference(emu, case, dtype):
    shapes, b, q, h, d, p = MSDA_CASES[case]
    value, ss, starts, loc, weights = level_inputs(shapes, b, q, h, d, p, seed=len(case), spread=0.4)
    value = value.to(dtype)
    got = multi_scale_deformable_attention_cuda(value, ss, starts, loc, weights, runner=emu)
    ref = multi_scale_deformable_attention_reference(value, ss, starts, loc, weights)
    assert got.dtype == dtype and got.shape == ref.shape
    if dtype == torch.float32:
        torch.testing.assert_close(got, ref, rtol=0, atol=5e-6)
    else:  # both accumulate in fp32 and round once: at most one unit in the last place apart
        ulp = torch.finfo(dtype).eps * ref.float().abs().clamp_min(torch.finfo(dtype).tiny)
        assert torch.all((got.float() - ref.float()).abs() <= ulp + 1e-6)


def test_msda_kernel_points_outside_and_on_borders(emu):
    value, ss, starts, loc, weights = level_inputs([(4, 6), (1, 1)], 1, 6, 2, 4, 4)
    edges = torch.tensor([-1.0, -0.2, 0.0, 1.0, 1.2, 2.0, 0.5, 0.999])
    loc = edges[torch.randint(0, len(edges), loc.shape, generator=torch.Generator().manual_seed(1))]
    got = multi_scale_deformable_attention_cuda(value, ss, starts, loc, weights, runner=emu)
    ref = multi_scale_deformable_attention_reference(value, ss, starts, loc, weights)
    torch.testing.assert_close(got, ref, rtol=0, atol=5e-6)
    far = torch.full_like(loc, -5.0)
    assert torch.all(multi_scale_deformable_attention_cuda(value, ss, starts, far, weights, runner=emu) == 0)


def test_channel_pack_choice():
    assert channel_pack(32, torch.float32, 0, 64) == 4
    assert channel_pack(32, torch.float16, 0, 64) == 8
    assert channel_pack(6, torch.float16, 0, 0) == 2
    assert channel_pack(32, torch.float32, 4, 0) == 1  # misaligned pointer -> scalar loads


def test_grounding_dino_patched_with_kernel_matches_torch_path(emu):
    from transformers import BertConfig, GroundingDinoConfig, GroundingDinoModel, SwinConfig

    from gsam2_video.kernels import KernelDeformableAttention, patch_grounding_dino

    torch.manual_seed(0)
    cfg = GroundingDinoConfig(
        backbone_config=SwinConfig(embed_dim=16, depths=[1, 1, 1, 1], num_heads=[1, 1, 1, 1], window_size=4,
                                   image_size=64, out_features=["stage2", "stage3", "stage4"]),
        text_config=BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                               intermediate_size=64),
        d_model=32, encoder_layers=1, decoder_layers=2, encoder_ffn_dim=32, decoder_ffn_dim=32, num_queries=10,
        encoder_attention_heads=2, decoder_attention_heads=2, encoder_n_points=2, decoder_n_points=2,
        num_feature_levels=4)
    model = GroundingDinoModel(cfg).eval()
    inputs = {"pixel_values": torch.randn(1, 3, 64, 80), "input_ids": torch.tensor([[1, 5, 7, 2]])}
    with torch.no_grad():
        ref = model(**inputs).last_hidden_state
    # CPU model, no runner: wrapped but the torch path stays
    assert patch_grounding_dino(model) == 3  # 1 encoder + 2 decoder deformable attentions
    assert patch_grounding_dino(model) == 0
    with torch.no_grad():
        assert torch.equal(model(**inputs).last_hidden_state, ref)
    # force the kernel path through the emulation runner
    for module in model.modules():
        if isinstance(module, KernelDeformableAttention):
            module.runner = emu
    with torch.no_grad():
        got = model(**inputs).last_hidden_state
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-4)


def test_patched_module_keeps_autograd_on_torch_path(emu):
    from transformers.models.grounding_dino.modeling_grounding_dino import MultiScaleDeformableAttention

    from gsam2_video.kernels import KernelDeformableAttention

    value, ss, starts, loc, weights = level_inputs([(4, 5), (2, 3)], 1, 6, 2, 4, 2)
    wrapped = KernelDeformableAttention(MultiScaleDeformableAttention(), runner=emu)
    shapes = [(4, 5), (2, 3)]
    value.requires_grad_(True)
    out = wrapped(value, ss, shapes, starts, loc, weights, 64)
    out.sum().backward()  # forward-only kernel: training must take the differentiable torch path
    assert value.grad is not None and value.grad.abs().sum() > 0
    with torch.no_grad():
        fast = wrapped(value, ss, shapes, starts, loc, weights, 64)
    torch.testing.assert_close(fast, out.detach(), rtol=0, atol=5e-6)


# ---------------------------------------------------------------- connected components
@pytest.mark.parametrize("shape,density", [((5, 37, 23), 0.5), ((3, 1, 1), 0.5), ((2, 1, 19), 0.6),
                                           ((2, 21, 1), 0.6), ((3, 64, 48), 0.62)])
def test_ccl_kernel_matches_reference(emu, shape, density):
    masks = mask_batch(*shape, density=density, seed=shape[1])
    masks[0] = False
    if shape[0] > 2:
        masks[1] = True
    got = connected_components_cuda(masks, runner=emu)
    ref = connected_components_reference(masks)
    assert torch.equal(got[0], ref[0]) and torch.equal(got[1], ref[1])


def test_ccl_kernel_spirals_and_blobs(emu):
    # a long snake forces deep union-find chains; blobs give large components
    snake = torch.zeros(1, 15, 15, dtype=torch.bool)
    for r in range(0, 15, 2):
        snake[0, r, :] = True
        snake[0, r + 1 if r + 1 < 15 else r, 14 if (r // 2) % 2 == 0 else 0] = True
    masks = torch.cat([snake, blob_masks(3, 15, 15, seed=4)])
    got = connected_components_cuda(masks, runner=emu)
    ref = connected_components_reference(masks)
    assert torch.equal(got[0], ref[0]) and torch.equal(got[1], ref[1])
    assert int(got[0][0].max()) == 1 and int(got[1][0].max()) == int(snake.sum())


# ---------------------------------------------------------------- mask IoU
@pytest.mark.parametrize("n,m,h,w", [(4, 3, 33, 35), (1, 1, 1, 1), (2, 5, 8, 4), (3, 2, 1, 97)])
def test_iou_kernel_counts_match_reference(emu, n, m, h, w):
    a, b = mask_batch(n, h, w, 0.5, seed=1), blob_masks(m, h, w, seed=2)
    a[0] = False
    b[-1] = True
    got = overlap_counts_cuda(a, b, runner=emu)
    ref = overlap_counts_reference(a, b)
    for g, r in zip(got, ref):
        assert torch.equal(g, r)


# ---------------------------------------------------------------- RLE
@pytest.mark.parametrize("shape", [(4, 33, 35), (2, 1, 1), (3, 7, 1), (2, 1, 9)])
def test_rle_kernel_matches_reference(emu, shape):
    masks = mask_batch(*shape, seed=5)
    masks[0] = True
    got = run_starts_cuda(masks, runner=emu)
    assert torch.equal(got, run_starts_reference(masks))


# ---------------------------------------------------------------- preprocessing
@pytest.mark.parametrize("size", [(16, 20), (64, 80), (37, 53), (1, 1), (5, 90)])
@pytest.mark.parametrize("mode", ["bicubic", "bilinear"])
def test_preprocess_kernel_matches_reference(emu, size, mode):
    frames = torch.randint(0, 256, (2, 37, 53, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    got = preprocess_frames_cuda(frames, size, IMAGENET_MEAN, IMAGENET_STD, mode, runner=emu)
    ref = preprocess_frames_reference(frames, size, IMAGENET_MEAN, IMAGENET_STD, mode)
    torch.testing.assert_close(got, ref, rtol=0, atol=2e-5)


def test_preprocess_kernel_gray_and_rgba(emu):
    for c in (1, 4):
        frames = torch.randint(0, 256, (1, 9, 7, c), dtype=torch.uint8)
        mean, std = (0.5,) * c, (0.25,) * c
        got = preprocess_frames_cuda(frames, (5, 12), mean, std, "bicubic", runner=emu)
        torch.testing.assert_close(got, preprocess_frames_reference(frames, (5, 12), mean, std, "bicubic"),
                                   rtol=0, atol=2e-5)
