"""Mask composition: contested pixels go to the highest logit; boxes are tight pixel-edge boxes."""

from __future__ import annotations

import numpy as np
import torch

from gsam2_video.compose import masks_to_boxes, non_overlapping_masks


def test_non_overlapping_equals_dense_argmax_rule() -> None:
    g = torch.Generator().manual_seed(0)
    for n in (0, 1, 2, 5):
        logits = torch.randn(n, 37, 53, generator=g) * 3
        got = non_overlapping_masks(logits)
        if n == 0:
            assert got.shape == (0, 37, 53)
            continue
        owner = torch.arange(n).view(-1, 1, 1) == logits.argmax(dim=0, keepdim=True)
        assert torch.equal(got, (logits > 0) & owner)
        assert int(got.sum(dim=0).max()) <= 1


def test_threshold_and_uncontested_pixels_kept() -> None:
    logits = torch.full((2, 4, 4), -5.0)
    logits[0, :2] = 1.0
    logits[1, 1:3] = 2.0
    got = non_overlapping_masks(logits)
    assert got[0].nonzero().tolist() == [[0, c] for c in range(4)]
    assert got[1, 1:3].all() and not got[1, 0].any()
    assert not non_overlapping_masks(logits, threshold=1.5)[0].any()


def test_masks_to_boxes_pixel_edges_and_empty() -> None:
    m = torch.zeros(3, 10, 12, dtype=torch.bool)
    m[0, 2:5, 3:9] = True
    m[1, 9, 11] = True
    boxes = masks_to_boxes(m).numpy()
    assert np.array_equal(boxes, [[3, 2, 9, 5], [11, 9, 12, 10], [0, 0, 0, 0]])
    assert masks_to_boxes(torch.zeros(0, 4, 4, dtype=torch.bool)).shape == (0, 4)
