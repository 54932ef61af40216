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
from gsam2_video.kernels.preprocess import resize_bicubic_cuda
from gsam2_video.kernels.rle import label_changes_cuda
from gsam2_video.kernels.runtime import EmulationRunner, build_emulation_library
from gsam2_video.ops.connected_components import connected_components_reference
from gsam2_video.ops.deformable_attention import multi_scale_deformable_attention_reference
from gsam2_video.ops.mask_iou import overlap_counts_reference
from gsam2_video.ops.rle import change_flags_reference

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
    labels = torch.zeros(masks.shape[1:], dtype=torch.int32)
    for k, m in enumerate(masks):  # later masks overwrite: a label map with overlapping blobs cut apart
        labels[m] = 300 + k
    assert torch.equal(label_changes_cuda(labels, runner=emu), change_flags_reference(labels))


def test_preprocess_1080p_to_1024_both_orientations(emu):
    """Landscape 1080p (horizontal pass first) and portrait (Pillow 13 runs the vertical pass first)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for shape in ((1080, 1920, 3), (1920, 1080, 3)):
        frame = rng.integers(0, 256, shape, dtype=np.uint8)
        frame[200:700, 300:900] = 255  # flat areas and hard edges, where clipping and rounding matter
        got = resize_bicubic_cuda(torch.from_numpy(frame), 1024, 1024, runner=emu).numpy()
        assert np.array_equal(got, np.asarray(Image.fromarray(frame).resize((1024, 1024)))), shape
