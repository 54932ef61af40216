"""Torch reference ops (the CPU path) against independent oracles: numpy, scipy, pycocotools,
transformers' Grounding DINO attention, PIL, and SAM 2's own hole-filling code."""

from __future__ import annotations

import numpy as np
import pycocotools.mask as mask_utils
import pytest
import torch
from _kernel_cases import blob_masks, level_inputs, mask_batch
from scipy import ndimage

from gsam2_video.errors import ModelError
from gsam2_video.ops import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    _dispatch,
    connected_components,
    mask_coverage_matrix,
    mask_iou_matrix,
    multi_scale_deformable_attention,
    preprocess_frames,
    rle_encode,
)


# ---------------------------------------------------------------- mask IoU / coverage
def _pairwise_numpy(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    iou = np.zeros((len(a), len(b)), np.float32)
    cov = np.zeros((len(a), len(b)), np.float32)
    for i in range(len(a)):
        for j in range(len(b)):
            inter = np.logical_and(a[i], b[j]).sum()
            union = np.logical_or(a[i], b[j]).sum()
            iou[i, j] = inter / union if union else 0.0
            cov[i, j] = inter / a[i].sum() if a[i].sum() else 0.0
    return iou, cov


def test_mask_iou_and_coverage_match_pairwise_numpy():
    a, b = blob_masks(5, 31, 47, seed=1), blob_masks(4, 31, 47, seed=2)
    a[0] = False  # empty mask: IoU with anything non-empty is 0, coverage row is 0
    b[1] = True   # full mask
    iou, cov = _pairwise_numpy(a.numpy(), b.numpy())
    got_iou, got_cov = mask_iou_matrix(a, b), mask_coverage_matrix(a, b)
    assert got_iou.dtype == torch.float32 and got_iou.shape == (5, 4)
    torch.testing.assert_close(got_iou, torch.from_numpy(iou), rtol=0, atol=1e-6)
    torch.testing.assert_close(got_cov, torch.from_numpy(cov), rtol=0, atol=1e-6)
    assert float(mask_iou_matrix(a[:1], a[:1])) == 0.0  # empty vs empty: union 0 -> 0
    assert torch.all(mask_iou_matrix(b, b).diagonal() == 1.0)


def test_mask_iou_empty_batches_and_uint8():
    a = mask_batch(3, 8, 9)
    assert mask_iou_matrix(a, a[:0]).shape == (3, 0)
    assert mask_coverage_matrix(a[:0], a).shape == (0, 3)
    torch.testing.assert_close(mask_iou_matrix(a.to(torch.uint8), a), mask_iou_matrix(a, a))


@pytest.mark.parametrize("shape", [(3, 4, 1, 1), (5, 2, 7, 9), (4, 6, 33, 17), (2, 3, 8, 8)])
def test_mask_overlap_bit_path_equals_matmul_path(shape):
    from gsam2_video.ops.mask_iou import _overlap_counts_bits, _overlap_counts_matmul

    n, m, h, w = shape
    a, b = mask_batch(n, h, w, seed=1), mask_batch(m, h, w, seed=2)
    for x, y in zip(_overlap_counts_bits(a, b), _overlap_counts_matmul(a, b)):
        assert torch.equal(x, y)


def test_mask_iou_rejects_bad_input():
    with pytest.raises(ModelError, match="differ in size"):
        mask_iou_matrix(mask_batch(2, 4, 4), mask_batch(2, 4, 5))
    with pytest.raises(ModelError, match="threshold logits"):
        mask_iou_matrix(torch.zeros(2, 4, 4), mask_batch(2, 4, 4))
    with pytest.raises(ModelError, match="3 dimensions"):
        mask_coverage_matrix(mask_batch(2, 4, 4)[0], mask_batch(2, 4, 4))


# ---------------------------------------------------------------- connected components
def _scipy_components(m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    labels, _ = ndimage.label(m, structure=np.ones((3, 3), int))
    counts = np.bincount(labels.ravel())
    counts[0] = 0
    return labels, counts[labels]


@pytest.mark.parametrize("shape", [(4, 37, 23), (2, 1, 1), (3, 1, 17), (2, 16, 1), (2, 64, 64)])
def test_connected_components_match_scipy_8_connectivity(shape):
    masks = mask_batch(*shape, density=0.45, seed=sum(shape))
    masks[0] = False
    if shape[0] > 1:
        masks[1] = True
    labels, areas = connected_components(masks)
    assert labels.dtype == torch.int32 and areas.dtype == torch.int32 and labels.shape == shape
    for i in range(shape[0]):
        ref_labels, ref_areas = _scipy_components(masks[i].numpy())
        np.testing.assert_array_equal(areas[i].numpy(), ref_areas)
        # same partition: a bijection between our labels and scipy's on foreground pixels
        fg = ref_labels > 0
        pairs = np.unique(np.stack([labels[i].numpy()[fg], ref_labels[fg]]), axis=1)
        assert pairs.shape[1] == ref_labels.max() == labels[i].max()
        # canonical numbering: labels 1..K in raster order of each component's first pixel
        flat = labels[i].numpy().ravel()
        firsts = [int(np.argmax(flat == k)) for k in range(1, int(flat.max()) + 1)]
        assert firsts == sorted(firsts)
    assert torch.all(labels[0] == 0) and torch.all(areas[0] == 0)
    if shape[0] > 1:
        assert torch.all(labels[1] == 1) and torch.all(areas[1] == shape[1] * shape[2])


def test_connected_components_diagonal_touch_is_one_component():
    m = torch.tensor([[1, 0, 0], [0, 1, 0], [0, 0, 1]], dtype=torch.bool)[None]
    labels, areas = connected_components(m)
    assert labels.max() == 1 and areas.max() == 3


def test_connected_components_keep_sam2_layout_and_drive_sam2_hole_filling(monkeypatch):
    import sam2.utils.misc as sam2_misc

    scores = torch.where(blob_masks(3, 40, 48, seed=5), 2.0, -2.0)[:, None]  # N x 1 x H x W like SAM 2
    scores[:, :, 10:12, 10:13] = -1.0  # a 2x3 hole (filled when inside an object)
    labels, _ = connected_components(scores <= 0)
    assert labels.shape == scores.shape
    monkeypatch.setattr(sam2_misc, "get_connected_components", lambda m: connected_components(m))
    filled = sam2_misc.fill_holes_in_mask_scores(scores, max_area=8)
    expected = scores.clone()
    for i in range(3):  # independent oracle: background components of <= 8 pixels become 0.1
        lab, area = _scipy_components((scores[i, 0] <= 0).numpy())
        hole = torch.from_numpy((lab > 0) & (area <= 8))
        expected[i, 0][hole] = 0.1
    assert torch.equal(filled, expected)


# ---------------------------------------------------------------- RLE
@pytest.mark.parametrize("shape", [(5, 4, 5), (3, 1, 1), (2, 7, 3), (6, 33, 17), (1, 0, 4), (0, 5, 5)])
def test_rle_encode_equals_pycocotools(shape):
    masks = mask_batch(*shape, seed=3)
    if shape[0] >= 2:
        masks[0], masks[1] = False, True
    ref = mask_utils.encode(np.asfortranarray(masks.permute(1, 2, 0).numpy().astype(np.uint8))) if shape[0] else []
    got = rle_encode(masks)
    assert got == ref
    if shape[0] and shape[1] * shape[2]:
        np.testing.assert_array_equal(mask_utils.decode(got), masks.permute(1, 2, 0).numpy())


@pytest.mark.parametrize("shape", [(5, 4, 5), (3, 1, 9), (3, 8, 1), (6, 33, 17)])
def test_rle_device_path_run_lengths_equal_pycocotools(shape):
    from gsam2_video.ops.rle import run_lengths, run_starts_reference

    masks = mask_batch(*shape, seed=4)
    masks[0], masks[1] = False, True
    runs = run_lengths(run_starts_reference(masks))  # the path CUDA tensors take after the kernel
    ref = mask_utils.encode(np.asfortranarray(masks.permute(1, 2, 0).numpy().astype(np.uint8)))
    assert mask_utils.frPyObjects([{"size": list(shape[1:]), "counts": r} for r in runs], *shape[1:]) == ref


def test_rle_encode_blobs_at_video_size():
    masks = blob_masks(4, 270, 480, seed=7)
    ref = mask_utils.encode(np.asfortranarray(masks.permute(1, 2, 0).numpy().astype(np.uint8)))
    assert rle_encode(masks) == ref


# ---------------------------------------------------------------- deformable attention
@pytest.mark.parametrize("shapes", [[(7, 9), (4, 5), (1, 1), (2, 3)], [(1, 1)], [(5, 3), (3, 2)]])
def test_deformable_attention_matches_transformers(shapes):
    from transformers.models.grounding_dino.modeling_grounding_dino import MultiScaleDeformableAttention

    value, ss, starts, loc, weights = level_inputs(shapes, batch=2, queries=13, heads=3, dim=8, points=4)
    ref = MultiScaleDeformableAttention()(value, ss, [tuple(s) for s in shapes], starts, loc, weights, 64)
    got = multi_scale_deformable_attention(value, ss, starts, loc, weights)
    assert got.shape == (2, 13, 24)
    torch.testing.assert_close(got, ref, rtol=0, atol=1e-6)


def test_deformable_attention_points_all_outside_give_zero_and_half_precision():
    value, ss, starts, loc, weights = level_inputs([(4, 4), (2, 2)], 1, 5, 2, 4, 2)
    far = torch.full_like(loc, 3.0)
    assert torch.all(multi_scale_deformable_attention(value, ss, starts, far, weights) == 0)
    out16 = multi_scale_deformable_attention(value.half(), ss, starts, loc, weights)
    assert out16.dtype == torch.float16
    ref = multi_scale_deformable_attention(value.half().float(), ss, starts, loc, weights)
    torch.testing.assert_close(out16.float(), ref, rtol=1e-3, atol=1e-3)


def test_deformable_attention_rejects_mismatched_shapes():
    value, ss, starts, loc, weights = level_inputs([(4, 4)], 1, 5, 2, 4, 2)
    with pytest.raises(ModelError, match="cover"):
        multi_scale_deformable_attention(value[:, :10], ss, starts, loc, weights)
    with pytest.raises(ModelError, match="weights"):
        multi_scale_deformable_attention(value, ss, starts, loc, weights[..., :1])


# ---------------------------------------------------------------- preprocessing
def _pil_reference(frame: np.ndarray, size: tuple[int, int]) -> torch.Tensor:
    from PIL import Image

    img = np.array(Image.fromarray(frame).resize((size[1], size[0]), Image.BICUBIC)) / 255.0
    x = torch.from_numpy(img).permute(2, 0, 1).float()
    return (x - torch.tensor(IMAGENET_MEAN).view(3, 1, 1)) / torch.tensor(IMAGENET_STD).view(3, 1, 1)


def test_preprocess_bicubic_tracks_pil_within_stated_tolerance(videos_dir):
    import av

    with av.open(str(videos_dir / "bikes.mp4")) as container:
        frame = next(container.decode(video=0)).to_ndarray(format="rgb24")
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    for size in [(1024, 1024), (256, 256), (400, 333)]:
        out = preprocess_frames(torch.from_numpy(frame), size)
        assert out.shape == (3, *size) and out.dtype == torch.float32
        diff = (out - _pil_reference(frame, size)).abs() * std * 255  # back to 0-255 units
        assert float(diff.max()) <= 2.5 and float(diff.mean()) <= 0.3, (size, float(diff.max()))


def test_preprocess_identity_size_is_exact_normalisation_and_batches():
    frames = torch.randint(0, 256, (2, 9, 11, 3), dtype=torch.uint8)
    out = preprocess_frames(frames, (9, 11), mode="bilinear")
    expect = (frames.permute(0, 3, 1, 2).float() / 255 - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) \
        / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    torch.testing.assert_close(out, expect, rtol=0, atol=1e-5)
    assert preprocess_frames(frames, 4, dtype=torch.float16).dtype == torch.float16


def test_preprocess_rejects_bad_input():
    with pytest.raises(ModelError, match="uint8"):
        preprocess_frames(torch.zeros(4, 4, 3), 2)
    with pytest.raises(ModelError, match="mode"):
        preprocess_frames(torch.zeros(4, 4, 3, dtype=torch.uint8), 2, mode="nearest")
    with pytest.raises(ModelError, match="channels"):
        preprocess_frames(torch.zeros(4, 4, 3, dtype=torch.uint8), 2, mean=(0.5,))


# ---------------------------------------------------------------- dispatch
def test_dispatch_uses_reference_on_cpu_and_honours_force_env(monkeypatch):
    t = torch.zeros(2)
    assert not _dispatch.use_kernel(t)
    monkeypatch.setenv(_dispatch.FORCE_TORCH_ENV, "1")
    assert _dispatch.force_torch()
    monkeypatch.setenv(_dispatch.FORCE_TORCH_ENV, "0")
    assert not _dispatch.force_torch()
