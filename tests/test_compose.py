"""Mask composition: contested pixels go to the highest logit; boxes are tight pixel-edge boxes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gsam2_video.compose import masks_to_boxes, non_overlapping_masks


@pytest.mark.parametrize("shift, rounded, threshold", [
    (0.0, False, 0.0),    # dense overlap: the running-maximum branch
    (-4.0, False, 0.0),   # few contested pixels: the gather branch
    (0.0, True, 0.0),     # ties: the lower index wins, as argmax's first maximum
    (-4.0, True, -1.0),   # ties and a threshold other than 0 on the gather branch
    (1.0, True, 0.5),
])
def test_non_overlapping_equals_dense_argmax_rule(shift: float, rounded: bool, threshold: float) -> None:
    g = torch.Generator().manual_seed(0)
    for n in (0, 1, 2, 5, 40):
        logits = torch.randn(n, 37, 53, generator=g) * 3 + shift
        if rounded:
            logits = logits.round()
        got = non_overlapping_masks(logits, threshold)
        if n == 0:
            assert got.shape == (0, 37, 53)
            continue
        owner = torch.arange(n).view(-1, 1, 1) == logits.argmax(dim=0, keepdim=True)
        assert torch.equal(got, (logits > threshold) & owner), n
        assert int(got.sum(dim=0).max()) <= 1


def test_both_branches_are_exercised() -> None:
    """The parametrised cases above must hit both the sparse and the dense branch."""
    g = torch.Generator().manual_seed(0)
    for shift, dense in ((0.0, True), (-4.0, False)):
        logits = torch.randn(2, 37, 53, generator=g) * 3 + shift
        contested = int(((logits > 0).sum(dim=0) > 1).sum())
        assert (contested * 16 >= 37 * 53) is dense and contested > 0


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
