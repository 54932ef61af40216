"""SAM 2 post-processing equals Meta's own code, run with a CPU connected-components function patched in.

Meta's ``fill_holes_in_mask_scores`` (video predictor) and ``SAM2Transforms.postprocess_masks`` (image
predictor, holes + sprinkles) call a compiled CUDA extension; here scipy's 8-connected labelling stands in
for it (independent of our own op), so the oracle is Meta's logic itself.
"""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest
import torch
from scipy import ndimage

from gsam2_video.ops.postprocess import fill_holes_in_mask_scores, postprocess_mask_scores, remove_sprinkles


def scipy_connected_components(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Meta's get_connected_components contract (N x 1 x H x W -> labels, areas) with scipy on the CPU."""
    m = mask.to(torch.uint8).cpu().numpy()
    labels = np.zeros(m.shape, np.int32)
    areas = np.zeros(m.shape, np.int32)
    for i in range(m.shape[0]):
        lab, _ = ndimage.label(m[i, 0], structure=np.ones((3, 3), int))
        counts = np.bincount(lab.ravel())
        counts[0] = 0
        labels[i, 0] = lab
        areas[i, 0] = counts[lab]
    return torch.from_numpy(labels), torch.from_numpy(areas)


def random_scores(seed: int, n: int = 6, h: int = 64, w: int = 80) -> torch.Tensor:
    """Blobby logit maps with holes and specks of many sizes (N x 1 x H x W float32)."""
    gen = torch.Generator().manual_seed(seed)
    base = torch.randn(n, 1, h // 8, w // 8, generator=gen)
    smooth = torch.nn.functional.interpolate(base, size=(h, w), mode="bilinear", align_corners=False)
    speck = torch.randn(n, 1, h, w, generator=gen) * 0.6
    return (smooth * 3 + speck).float()


@pytest.fixture
def meta_misc(monkeypatch: pytest.MonkeyPatch):
    from sam2.utils import misc

    monkeypatch.setattr(misc, "get_connected_components", scipy_connected_components)
    return misc


@pytest.fixture
def meta_transforms(monkeypatch: pytest.MonkeyPatch, meta_misc):
    """Meta's SAM2Transforms, importable without torchvision (only its post-processing is used)."""
    fake = types.ModuleType("torchvision")
    fake_t = types.ModuleType("torchvision.transforms")
    for name in ("Normalize", "Resize", "ToTensor"):
        setattr(fake_t, name, object)
    fake.transforms = fake_t
    monkeypatch.setitem(sys.modules, "torchvision", fake)
    monkeypatch.setitem(sys.modules, "torchvision.transforms", fake_t)
    monkeypatch.delitem(sys.modules, "sam2.utils.transforms", raising=False)
    from sam2.utils import transforms as tr

    yield tr.SAM2Transforms
    monkeypatch.delitem(sys.modules, "sam2.utils.transforms", raising=False)


def make_meta_transforms(cls, hole: int, sprinkle: int):
    t = object.__new__(cls)
    torch.nn.Module.__init__(t)
    t.mask_threshold, t.max_hole_area, t.max_sprinkle_area = 0.0, hole, sprinkle
    return t


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("area", [1, 8, 40])
def test_fill_holes_equals_meta_video_predictor(meta_misc, seed: int, area: int) -> None:
    scores = random_scores(seed)
    ref = meta_misc.fill_holes_in_mask_scores(scores, area)
    ours = fill_holes_in_mask_scores(scores, area)
    assert torch.equal(ours, ref)
    changed = int((ours != scores).sum())
    assert changed > 0  # the inputs really contain holes of that size
    assert ((ours > 0) | (scores > 0)).sum() == (ours > 0).sum()  # only background pixels change


@pytest.mark.parametrize("seed", [0, 3])
@pytest.mark.parametrize("hole,sprinkle", [(8, 0), (0, 8), (8, 8), (30, 12)])
def test_holes_and_sprinkles_equal_meta_image_postprocess(meta_transforms, seed: int, hole: int,
                                                          sprinkle: int) -> None:
    scores = random_scores(seed, n=4)
    t = make_meta_transforms(meta_transforms, hole, sprinkle)
    h, w = scores.shape[-2:]
    ref = t.postprocess_masks(scores, (h, w))  # bilinear resize to the same size is the identity
    ours = postprocess_mask_scores(scores, hole, sprinkle)
    if hole:  # Meta's image predictor fills with threshold + 10, its video predictor with 0.1
        ours = torch.where((ours == 0.1) & (scores <= 0), torch.tensor(10.0), ours)
    assert torch.equal(ours, ref)


def test_sprinkles_removed_and_zero_areas_are_identity() -> None:
    scores = -torch.ones(1, 1, 12, 12)
    scores[0, 0, 1, 1] = 5.0  # a 1-pixel speck
    scores[0, 0, 4:10, 4:10] = 5.0  # a 36-pixel object with a 1-pixel hole
    scores[0, 0, 6, 6] = -3.0
    out = postprocess_mask_scores(scores, fill_hole_area=1, max_sprinkle_area=4)
    assert out[0, 0, 1, 1] == -10.0 and out[0, 0, 6, 6] == pytest.approx(0.1)
    assert int((out > 0).sum()) == 36
    assert torch.equal(postprocess_mask_scores(scores, 0, 0), scores)
    assert torch.equal(remove_sprinkles(scores, 0), scores)
    assert fill_holes_in_mask_scores(torch.zeros(0, 1, 4, 4), 8).shape == (0, 1, 4, 4)
