"""SAM 2 frame preprocessing: the numpy reimplementation of PIL's 8-bit bicubic resize against PIL itself,
and ``preprocess_frame_tensor``'s CPU path against ``preprocess_frame`` (the kernels: test_kernels_*.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from gsam2_video.errors import ModelError
from gsam2_video.models.sam2_preprocess import preprocess_frame, preprocess_frame_tensor
from gsam2_video.ops.pil_resize import _resample_axis, resize_bicubic_reference, vertical_first


def _pil(frame: np.ndarray, height: int, width: int) -> np.ndarray:
    return np.asarray(Image.fromarray(frame).resize((width, height)))


@pytest.mark.parametrize("seed", range(3))
def test_reference_resize_equals_pil(seed):
    rng = np.random.default_rng(seed)
    for _ in range(40):
        h, w, oh, ow = (int(v) for v in rng.integers(1, 70, 4))
        frame = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        assert np.array_equal(resize_bicubic_reference(frame, oh, ow), _pil(frame, oh, ow)), (h, w, oh, ow)


def test_reference_resize_on_clip_frames(videos_dir):
    import av

    frames = []
    for path in sorted(videos_dir.iterdir()):
        with av.open(str(path)) as container:
            frames.append(next(container.decode(video=0)).to_ndarray(format="rgb24"))
    for frame in frames:
        assert np.array_equal(resize_bicubic_reference(frame, 1024, 1024), _pil(frame, 1024, 1024)), frame.shape


def test_pass_order_follows_pillow():
    """Where the two pass orders give different pixels, PIL matches the order ``vertical_first`` picks."""
    rng = np.random.default_rng(5)
    for h, w, oh, ow in [(120, 30, 7, 29), (30, 120, 29, 7), (60, 40, 10, 16), (60, 40, 10, 15), (50, 60, 20, 100)]:
        frame = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        h_first = _resample_axis(_resample_axis(frame, ow, 1), oh, 0)
        v_first = _resample_axis(_resample_axis(frame, oh, 0), ow, 1)
        assert not np.array_equal(h_first, v_first), "case does not tell the orders apart"
        expected = v_first if vertical_first(h, w, oh, ow) else h_first
        assert np.array_equal(_pil(frame, oh, ow), expected), (h, w, oh, ow)


def test_preprocess_frame_tensor_cpu_is_preprocess_frame():
    frame = np.random.default_rng(2).integers(0, 256, (45, 61, 3), dtype=np.uint8)
    ref = preprocess_frame(frame, 64)
    for image in (frame, torch.from_numpy(frame)):
        got = preprocess_frame_tensor(image, 64, "cpu")
        assert got.shape == (1, 3, 64, 64) and got.dtype == torch.float32
        assert torch.equal(got[0], ref)
    with pytest.raises(ModelError, match="H x W x 3"):
        preprocess_frame_tensor(frame[..., 0], 64, "cpu")
