"""Heavier kernel verification (marked slow): host emulation at real sizes.

Run with: pytest -m slow tests/test_kernels_slow.py
"""

from __future__ import annotations

import shutil

import pytest
import torch
from _kernel_cases import blob_masks, level_inputs

from gsam2_video.kernels.connected_components import connected_components_cuda
from gsam2_video.kernels.deformable_attention import multi_scale_deformable_attention_cuda
from gsam2_video.kernels.mask_iou import overlap_counts_cuda
from gsam2_video.kernels.preprocess import preprocess_frames_cuda
from gsam2_video.kernels.rle import run_starts_cuda
from gsam2_video.kernels.runtime import EmulationRunner, build_emulation_library
from gsam2_video.ops.connected_components import connected_components_reference
from gsam2_video.ops.deformable_attention import multi_scale_deformable_attention_reference
from gsam2_video.ops.mask_iou import overlap_counts_reference
from gsam2_video.ops.preprocess import IMAGENET_MEAN, IMAGENET_STD, preprocess_frames_reference
from gsam2_video.ops.rle import run_starts_reference

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def emu(tmp_path_factory) -> EmulationRunner:
    if shutil.which("g++") is None:
        pytest.skip("g++ not installed")
    return EmulationRunner(build_emulation_library(tmp_path_factory.mktemp("gsam2_emu_slow")))


def test_msda_decoder_shape_grounding_dino_t(emu):
    levels = [(100, 167), (50, 84), (25, 42), (13, 21)]
    for dtype in (torch.float32, torch.float16):
        value, ss, starts, loc, w = level_inputs(levels, 1, 900, 8, 32, 4, spread=0.05)
        value = value.to(dtype)
        got = multi_scale_deformable_attention_cuda(value, ss, starts, loc, w, runner=emu)
        ref = multi_scale_deformable_attention_reference(value, ss, starts, loc, w)
        torch.testing.assert_close(got.float(), ref.float(), rtol=1e-3 if dtype == torch.float16 else 1e-5,
                                   atol=1e-3 if dtype == torch.float16 else 2e-5)


def test_mask_kernels_at_1080p(emu):
    masks = blob_masks(6, 1080, 1920, seed=11)
    masks[:, 500:503, 700:704] = False  # holes
    masks[0] = False
    got, ref = connected_components_cuda(masks, runner=emu), connected_components_reference(masks)
    assert torch.equal(got[0], ref[0]) and torch.equal(got[1], ref[1])
    for g, r in zip(overlap_counts_cuda(masks, masks.flip(0), runner=emu), overlap_counts_reference(masks, masks.flip(0))):
        assert torch.equal(g, r)
    assert torch.equal(run_starts_cuda(masks, runner=emu), run_starts_reference(masks))


def test_preprocess_1080p_to_1024(emu):
    frames = torch.randint(0, 256, (1, 1080, 1920, 3), dtype=torch.uint8)
    for mode in ("bicubic", "bilinear"):
        got = preprocess_frames_cuda(frames, (1024, 1024), IMAGENET_MEAN, IMAGENET_STD, mode, runner=emu)
        ref = preprocess_frames_reference(frames, (1024, 1024), IMAGENET_MEAN, IMAGENET_STD, mode)
        torch.testing.assert_close(got, ref, rtol=0, atol=5e-5)
