"""The CUDA sources, compiled for the CPU with host_emulation.h, against the torch references.

The library is built once per session (g++, a few seconds); each test runs the same launcher code the GPU
path runs (buffers, grid sizes, prefix sums) with an EmulationRunner instead of CuPy. Skips without g++.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from _kernel_cases import blob_masks, clip_label_maps, level_inputs, mask_batch
from PIL import Image

from gsam2_video.errors import ModelError
from gsam2_video.kernels.connected_components import connected_components_cuda
from gsam2_video.kernels.deformable_attention import channel_pack, multi_scale_deformable_attention_cuda
from gsam2_video.kernels.mask_iou import overlap_counts_cuda
from gsam2_video.kernels.preprocess import normalize_cuda, resize_bicubic_cuda
from gsam2_video.kernels.rle import label_changes_cuda
from gsam2_video.kernels.runtime import EmulationRunner, build_emulation_library
from gsam2_video.models.sam2_preprocess import IMAGENET_MEAN, IMAGENET_STD, preprocess_frame
from gsam2_video.ops.connected_components import connected_components_reference
from gsam2_video.ops.deformable_attention import multi_scale_deformable_attention_reference
from gsam2_video.ops.mask_iou import overlap_counts_reference
from gsam2_video.ops.pil_resize import bicubic_coefficients, kernel_size, resize_bicubic_reference
from gsam2_video.ops.rle import change_flags_reference, changes_on_device, run_lengths_from_changes


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


# ---------------------------------------------------------------- RLE from a label map
@pytest.mark.parametrize("dtype", [torch.uint8, torch.uint16, torch.int32, torch.int64], ids=str)
@pytest.mark.parametrize("shape", [(33, 35), (1, 1), (7, 1), (1, 9)])
def test_rle_kernel_change_flags_match_reference(emu, shape, dtype):
    values = torch.tensor([0, 2, 255] if dtype == torch.uint8 else [0, 2, 300, 65535])
    labels = values[torch.randint(0, len(values), shape, generator=torch.Generator().manual_seed(5))].to(dtype)
    assert torch.equal(label_changes_cuda(labels, runner=emu), change_flags_reference(labels))


@pytest.mark.parametrize("ids", [(0, 1, 2, 3, 200, 255), (0, 4, 256, 300, 1000, 65535), (0, 2, 70000, 9)])
def test_rle_kernel_on_clip_label_maps_equals_pycocotools(emu, videos_dir, ids):
    """The kernel's flags, compacted as on the GPU, give pycocotools' RLE of every id, byte for byte."""
    import pycocotools.mask as mask_utils

    for labels in clip_label_maps(videos_dir, ids):
        t = torch.from_numpy(labels)
        flags = label_changes_cuda(t, runner=emu)
        assert torch.equal(flags, change_flags_reference(t))
        pos, before, after = changes_on_device(t, flags)
        runs = run_lengths_from_changes(pos, before, after, labels.size, np.array(ids[1:]))
        h, w = labels.shape
        got = mask_utils.frPyObjects([{"size": [h, w], "counts": r} for r in runs], h, w)
        assert got == [mask_utils.encode(np.asfortranarray((labels == i).astype(np.uint8))) for i in ids[1:]]


# ---------------------------------------------------------------- preprocessing (PIL bicubic, exactly)
def _clip_frames(videos_dir, per_clip: int = 2) -> dict[str, list[np.ndarray]]:
    """The first frame and a later one of each shared clip, decoded as the sources decode them (RGB24)."""
    import av

    frames: dict[str, list[np.ndarray]] = {}
    for path in sorted(videos_dir.iterdir()):
        with av.open(str(path)) as container:
            decoded = [f.to_ndarray(format="rgb24") for _, f in zip(range(12), container.decode(video=0))]
        frames[path.name] = [decoded[0], decoded[-1]][:per_clip]
    assert len(frames) == 4, sorted(frames)
    return frames


def _pil(frame: np.ndarray, height: int, width: int) -> np.ndarray:
    return np.asarray(Image.fromarray(frame).resize((width, height)))  # default filter: bicubic, as Meta


def test_preprocess_kernel_resize_equals_pil_on_every_clip(emu, videos_dir):
    """1024 x 1024 as SAM 2 uses it (up from 176x144 to down from 768x576) plus odd and non-square sizes."""
    sizes = [(1024, 1024), (333, 333), (517, 291), (97, 1203), (120, 90)]
    for name, frames in _clip_frames(videos_dir).items():
        for frame in frames:
            for h, w in sizes:
                got = resize_bicubic_cuda(torch.from_numpy(frame), h, w, runner=emu).numpy()
                assert np.array_equal(got, _pil(frame, h, w)), (name, frame.shape, (h, w))


def test_preprocess_kernel_normalisation_equals_preprocess_frame(emu, videos_dir):
    for name, frames in _clip_frames(videos_dir, per_clip=1).items():
        frame = frames[0]
        resized = resize_bicubic_cuda(torch.from_numpy(frame), 1024, 1024, runner=emu)
        got = normalize_cuda(resized, IMAGENET_MEAN, IMAGENET_STD, runner=emu)
        ref = preprocess_frame(frame, 1024)
        assert got.dtype == torch.float32 and got.shape == ref.shape == (3, 1024, 1024)
        # the same IEEE operations in the same order: equal to the bit (the GPU test allows 1 ulp)
        assert torch.equal(got, ref), (name, float((got - ref).abs().max()))


@pytest.mark.parametrize("seed", range(4))
def test_preprocess_kernel_resize_equals_pil_on_random_sizes(emu, seed):
    """Up, down, mixed, 1-pixel, strong reductions (wide filters) and both pass orders of Pillow 13."""
    rng = np.random.default_rng(seed)
    cases = [(1, 1, 5, 7), (9, 1, 1, 4), (37, 53, 16, 20), (53, 37, 16, 20), (120, 30, 7, 29), (30, 120, 29, 7),
             (200, 60, 9, 61)]
    cases += [tuple(int(v) for v in rng.integers(1, 90, 4)) for _ in range(12)]
    for h, w, oh, ow in cases:
        frame = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        got = resize_bicubic_cuda(torch.from_numpy(frame), oh, ow, runner=emu).numpy()
        assert np.array_equal(got, _pil(frame, oh, ow)), (h, w, oh, ow)
        assert np.array_equal(got, resize_bicubic_reference(frame, oh, ow))


def test_preprocess_kernel_coefficients_equal_reference(emu):
    """The fixed-point taps computed on the device equal the numpy reference's (the double arithmetic)."""
    for in_size, out_size in [(1920, 1024), (144, 1024), (1024, 1024), (7, 3), (1000, 13), (3, 1000)]:
        bounds = torch.empty(2 * out_size, dtype=torch.int32)
        ksize = kernel_size(in_size, out_size)
        kk = torch.empty(out_size * ksize, dtype=torch.int32)
        emu.launch("preprocess.cu", "pp_coeffs", (4, 1, 1), (256, 1, 1),
                   (np.int32(in_size), np.int32(out_size), np.int32(ksize), bounds, kk))
        xmin, taps, fixed = bicubic_coefficients(in_size, out_size)
        assert np.array_equal(bounds.view(-1, 2)[:, 0].numpy(), xmin)
        assert np.array_equal(bounds.view(-1, 2)[:, 1].numpy(), taps)
        assert np.array_equal(kk.view(out_size, ksize).numpy(), fixed)


def test_preprocess_kernel_rejects_bad_input(emu):
    with pytest.raises(ModelError, match="uint8"):
        resize_bicubic_cuda(torch.zeros(4, 4, 3), 2, 2, runner=emu)
    with pytest.raises(ModelError, match="positive"):
        resize_bicubic_cuda(torch.zeros(4, 4, 3, dtype=torch.uint8), 0, 2, runner=emu)
    with pytest.raises(ModelError, match="H x W x 3"):
        normalize_cuda(torch.zeros(4, 4, 1, dtype=torch.uint8), IMAGENET_MEAN, IMAGENET_STD, runner=emu)
