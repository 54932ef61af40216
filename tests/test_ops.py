"""Torch reference ops (the CPU path) against independent oracles: numpy, scipy, pycocotools,
transformers' Grounding DINO attention, PIL, and SAM 2's own hole-filling code; the kernel-or-torch dispatch
and its run record."""

from __future__ import annotations

import numpy as np
import pycocotools.mask as mask_utils
import pytest
import torch
from _kernel_cases import blob_masks, clip_label_maps, level_inputs, mask_batch
from scipy import ndimage

from gsam2_video.errors import ModelError
from gsam2_video.ops import (
    _dispatch,
    connected_components,
    mask_coverage_matrix,
    mask_iou_matrix,
    multi_scale_deformable_attention,
    rle_from_label_map,
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


# ---------------------------------------------------------------- RLE from a label map
def _coco(labels: np.ndarray, ids) -> list[dict]:
    return [mask_utils.encode(np.asfortranarray((labels == i).astype(np.uint8))) for i in ids]


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int32])
@pytest.mark.parametrize("shape", [(5, 4), (1, 1), (1, 9), (7, 1), (33, 17), (0, 4)])
def test_rle_from_label_map_equals_pycocotools(shape, dtype):
    rng = np.random.default_rng(shape[0] * 100 + shape[1])
    big = {np.uint8: 255, np.uint16: 65535, np.int32: 70000}[dtype]
    labels = rng.choice(np.array([0, 3, 5, big], dtype=dtype), size=shape, p=[0.4, 0.3, 0.2, 0.1])
    ids = [5, big, 3, 9]  # any order, one absent
    got = rle_from_label_map(torch.from_numpy(labels), ids)
    assert got == _coco(labels, ids)
    assert rle_from_label_map(labels, np.array(ids)) == got  # numpy map and ids: the same
    if labels.size:
        np.testing.assert_array_equal(mask_utils.decode(got[0]), labels == 5)


def test_rle_from_label_map_edge_cases():
    labels = np.full((4, 3), 7, np.uint8)
    assert rle_from_label_map(labels, [7, 1]) == _coco(labels, [7, 1])  # all one track / none
    full, absent = rle_from_label_map(labels, [7, 1])
    assert mask_utils.decode(full).all() and not mask_utils.decode(absent).any()
    assert rle_from_label_map(labels, []) == []
    labels[-1, -1] = 2  # last pixel only
    labels[0, 0] = 2  # first pixel: the leading background run is empty
    assert rle_from_label_map(labels, [2, 7]) == _coco(labels, [2, 7])
    with pytest.raises(ModelError, match="unique"):
        rle_from_label_map(labels, [2, 2])
    with pytest.raises(ModelError, match="H x W integer"):
        rle_from_label_map(torch.zeros(2, 3, 4, dtype=torch.uint8), [1])
    with pytest.raises(ModelError, match="H x W integer"):
        rle_from_label_map(torch.zeros(2, 3), [1])


@pytest.mark.parametrize("ids", [(0, 1, 2, 3, 200, 255), (0, 4, 256, 300, 1000, 65535), (0, 2, 70000, 9)])
def test_rle_from_label_map_on_clip_label_maps(videos_dir, ids):
    for labels in clip_label_maps(videos_dir, ids):
        assert rle_from_label_map(torch.from_numpy(labels), ids[1:]) == _coco(labels, ids[1:])


def test_rle_device_scan_equals_pycocotools(videos_dir):
    """The CUDA-side steps (change flags, on-device compaction) run here on CPU tensors."""
    from gsam2_video.ops.rle import change_flags_reference, changes_on_device, run_lengths_from_changes

    ids = (0, 3, 256, 300, 4000)
    for labels in [*clip_label_maps(videos_dir, ids), np.array([[300, 3], [3, 3]], np.uint16)]:
        t = torch.from_numpy(labels)
        pos, before, after = changes_on_device(t, change_flags_reference(t))
        runs = run_lengths_from_changes(pos, before, after, labels.size, np.array(ids))
        h, w = labels.shape
        assert mask_utils.frPyObjects([{"size": [h, w], "counts": r} for r in runs], h, w) == _coco(labels, ids)


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


# ---------------------------------------------------------------- dispatch
def test_dispatch_uses_reference_on_cpu_and_honours_force_env(monkeypatch):
    t = torch.zeros(2)
    assert not _dispatch.use_kernel(t)
    monkeypatch.setenv(_dispatch.FORCE_TORCH_ENV, "1")
    assert _dispatch.force_torch()
    monkeypatch.setenv(_dispatch.FORCE_TORCH_ENV, "0")
    assert not _dispatch.force_torch()


def test_decision_kernel_only_on_cuda_with_cupy_and_not_forced():
    assert _dispatch.decide(on_cuda=True, cupy=True, forced=False) == (True, False)
    assert _dispatch.decide(on_cuda=True, cupy=False, forced=False) == (False, True)  # the warning case
    assert _dispatch.decide(on_cuda=True, cupy=False, forced=True) == (False, False)  # asked for torch
    assert _dispatch.decide(on_cuda=False, cupy=True, forced=False) == (False, False)
    assert _dispatch.decide(on_cuda=False, cupy=False, forced=False) == (False, False)


def test_missing_cupy_warns_once_per_run_naming_the_cuda_extra(monkeypatch, caplog):
    monkeypatch.delenv(_dispatch.FORCE_TORCH_ENV, raising=False)
    monkeypatch.setattr(_dispatch, "cupy_available", lambda: False)
    caplog.set_level("WARNING", logger="gsam2_video")
    for run in range(2):
        caplog.clear()
        with _dispatch.kernel_record() as record:
            for _ in range(3):
                assert not _dispatch.route("mask_iou", on_cuda=True)
            assert not _dispatch.route("rle", on_cuda=True)
            assert not _dispatch.route("rle", on_cuda=False)  # CPU data: no warning reason
        lines = [r.getMessage() for r in caplog.records]
        assert len(lines) == 1, (run, lines)
        assert "pip install 'gsam2-video[cuda]'" in lines[0] and "CuPy" in lines[0]
        assert record.report() == {"mask_iou": {"kernel": 0, "torch": 3}, "rle": {"kernel": 0, "torch": 2}}
    with pytest.warns(RuntimeWarning, match=r"gsam2-video\[cuda\]"):  # outside a run: python's warnings
        _dispatch.route("mask_iou", on_cuda=True)


def test_no_warning_when_cupy_present_or_forced(monkeypatch, caplog):
    caplog.set_level("WARNING", logger="gsam2_video")
    monkeypatch.setattr(_dispatch, "cupy_available", lambda: True)
    with _dispatch.kernel_record() as record:
        assert _dispatch.route("preprocess", on_cuda=True)
        monkeypatch.setenv(_dispatch.FORCE_TORCH_ENV, "1")
        monkeypatch.setattr(_dispatch, "cupy_available", lambda: False)
        assert not _dispatch.route("preprocess", on_cuda=True)
    assert record.report() == {"preprocess": {"kernel": 1, "torch": 1}}
    assert not caplog.records


def test_record_counts_every_dispatching_op_and_is_scoped_to_its_run():
    from gsam2_video.models.sam2_preprocess import preprocess_frame_tensor

    masks = blob_masks(3, 20, 24, seed=1)
    value, ss, starts, loc, weights = level_inputs([(4, 5)], 1, 3, 2, 4, 2)
    with _dispatch.kernel_record() as outer:
        mask_iou_matrix(masks, masks)
        mask_coverage_matrix(masks, masks[:0])  # empty: no kernel or torch call to count
        connected_components(masks)
        multi_scale_deformable_attention(value, ss, starts, loc, weights)
        preprocess_frame_tensor(np.zeros((8, 6, 3), np.uint8), 16, "cpu")
        with _dispatch.kernel_record() as inner:  # a nested run counts apart
            connected_components(masks)
        connected_components(masks)
    assert outer.report() == {"connected_components": {"kernel": 0, "torch": 2},
                              "deformable_attention": {"kernel": 0, "torch": 1},
                              "mask_iou": {"kernel": 0, "torch": 1}, "preprocess": {"kernel": 0, "torch": 1}}
    assert inner.report() == {"connected_components": {"kernel": 0, "torch": 1}}
    assert _dispatch.current_record() is None
    connected_components(masks)  # no run open: nothing to record into, nothing raised
    assert outer.report()["connected_components"]["torch"] == 2


def test_record_is_per_context_across_threads():
    import contextvars
    import threading

    masks = blob_masks(2, 10, 12, seed=2)
    with _dispatch.kernel_record() as record:
        worker = threading.Thread(target=contextvars.copy_context().run, args=(connected_components, masks))
        bare = threading.Thread(target=connected_components, args=(masks,))  # a thread without the context
        for t in (worker, bare):
            t.start()
            t.join()
    assert record.report() == {"connected_components": {"kernel": 0, "torch": 1}}
