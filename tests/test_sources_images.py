"""Image folders, globs and single images: natural order, formats, gray/alpha/16-bit conversion, bad folders."""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from gsam2_video.errors import SourceError
from gsam2_video.sources import natural_key, open_source, to_rgb, to_uint8


def _frame(value: int, h: int = 12, w: int = 16) -> np.ndarray:
    """RGB image whose pixels encode ``value`` (R = value, G = 255 - value, B = 7)."""
    img = np.zeros((h, w, 3), np.uint8)
    img[..., 0], img[..., 1], img[..., 2] = value, 255 - value, 7
    return img


def _write_png(path: Path, rgb: np.ndarray) -> None:
    Image.fromarray(rgb).save(path)


def test_natural_order_and_hidden_and_non_images_skipped(tmp_path):
    numbers = [10, 2, 1, 33, 100, 3]
    for n in numbers:
        _write_png(tmp_path / f"{n}.png", _frame(n))
    (tmp_path / ".hidden.png").write_bytes(b"not an image")
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "sub").mkdir()
    _write_png(tmp_path / "sub" / "0.png", _frame(0))
    with open_source(tmp_path) as src:
        assert src.info.frame_count == 6 and src.info.fps == 30.0
        assert (src.info.width, src.info.height) == (16, 12)
        frames = list(src)
    assert [int(f.image[0, 0, 0]) for f in frames] == sorted(numbers)
    assert [f.index for f in frames] == list(range(6))
    assert [f.timestamp for f in frames] == pytest.approx([i / 30 for i in range(6)])


def test_natural_key_mixed_names():
    names = ["frame10.jpg", "Frame2.jpg", "frame1.jpg", "frame1b.jpg", "a.png", "frame002.jpg"]
    assert sorted(names, key=natural_key) == ["a.png", "frame1.jpg", "frame1b.jpg", "Frame2.jpg",
                                              "frame002.jpg", "frame10.jpg"]


def test_jpeg_folder_and_glob(tmp_path):
    for n in range(12):
        ok = cv2.imwrite(str(tmp_path / f"img_{n}.jpg"), cv2.cvtColor(_frame(n * 20), cv2.COLOR_RGB2BGR))
        assert ok
        _write_png(tmp_path / f"img_{n}.png", _frame(n * 20))
    with open_source(str(tmp_path / "img_*.jpg")) as src:
        assert src.info.frame_count == 12 and src.info.name == str(tmp_path / "img_*.jpg")
        values = [int(f.image[6, 8, 0]) for f in src]
    assert np.abs(np.array(values) - np.arange(12) * 20).max() <= 3  # JPEG loss, order intact
    with open_source(str(tmp_path / "img_1?.png")) as src:  # 10, 11
        assert [int(f.image[0, 0, 0]) for f in src] == [200, 220]
    nested = tmp_path / "a" / "b"
    nested.mkdir(parents=True)
    _write_png(nested / "5.png", _frame(5))
    with open_source(str(tmp_path / "**" / "5.png")) as src:
        assert [int(f.image[0, 0, 0]) for f in src] == [5]


def test_start_stride_max_frames_and_image_fps(tmp_path):
    for n in range(20):
        _write_png(tmp_path / f"{n}.png", _frame(n))
    with open_source(tmp_path, start=3, stride=4, max_frames=3, image_fps=10.0) as src:
        assert src.info.frame_count == 3 and src.info.fps == pytest.approx(2.5)
        frames = list(src)
    assert [f.index for f in frames] == [3, 7, 11]
    assert [int(f.image[0, 0, 0]) for f in frames] == [3, 7, 11]
    assert [f.timestamp for f in frames] == pytest.approx([0.3, 0.7, 1.1])
    with open_source(tmp_path, start=18, stride=5, prefetch=0) as src:
        assert src.info.frame_count == 1 and [f.index for f in src] == [18]


def test_gray_alpha_16bit_images_become_rgb_uint8(tmp_path):
    h, w = 8, 10
    gray8 = np.arange(h * w, dtype=np.uint8).reshape(h, w) * 3
    rgba = np.dstack([_frame(90, h, w), np.full((h, w), 17, np.uint8)])
    gray16 = (np.arange(h * w, dtype=np.uint16).reshape(h, w) * 800)
    rgb16 = np.dstack([gray16, 65535 - gray16, np.full((h, w), 257 * 9, np.uint16)])
    Image.fromarray(gray8, mode="L").save(tmp_path / "0_gray8.png")
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "1_rgba.png")
    assert cv2.imwrite(str(tmp_path / "2_gray16.png"), gray16)
    assert cv2.imwrite(str(tmp_path / "3_rgb16.png"), rgb16[..., ::-1])  # OpenCV writes BGR
    Image.fromarray(gray8, mode="L").convert("LA").save(tmp_path / "4_gray_alpha.png")
    Image.fromarray(_frame(40, h, w)).convert("P").save(tmp_path / "5_palette.png")
    assert cv2.imwrite(str(tmp_path / "6_gray16.tif"), gray16)
    # 16-bit read back by PIL as a check that the file really is 16-bit
    assert np.array(Image.open(tmp_path / "2_gray16.png")).max() > 255
    with open_source(tmp_path) as src:
        imgs = [f.image for f in src]
    assert len(imgs) == 7
    for img in imgs:
        assert img.dtype == np.uint8 and img.shape == (h, w, 3) and img.flags.c_contiguous
    expected16 = ((gray16.astype(np.uint32) + 128) // 257).astype(np.uint8)
    np.testing.assert_array_equal(imgs[0], np.dstack([gray8] * 3))
    np.testing.assert_array_equal(imgs[1], _frame(90, h, w))  # alpha dropped, colour order RGB
    np.testing.assert_array_equal(imgs[2], np.dstack([expected16] * 3))
    np.testing.assert_array_equal(imgs[3], np.dstack([expected16, 255 - expected16, np.full((h, w), 9)]))
    np.testing.assert_array_equal(imgs[4], np.dstack([gray8] * 3))
    np.testing.assert_array_equal(imgs[5], np.array(Image.open(tmp_path / "5_palette.png").convert("RGB")))
    np.testing.assert_array_equal(imgs[6], np.dstack([expected16] * 3))


def test_convert_helpers():
    assert to_uint8(np.array([0, 128, 257, 65535], np.uint16)).tolist() == [0, 0, 1, 255]
    assert to_uint8(np.array([0.0, 0.5, 1.0, 2.0, -1.0], np.float32)).tolist() == [0, 128, 255, 255, 0]
    assert to_uint8(np.array([False, True])).tolist() == [0, 255]
    bgr = np.zeros((2, 2, 3), np.uint8)
    bgr[..., 0] = 200  # blue in BGR order
    out = to_rgb(bgr, "BGR")
    assert out[0, 0].tolist() == [0, 0, 200] and out.flags.c_contiguous
    assert to_rgb(np.full((2, 2, 4), 9, np.uint8), "BGRA").shape == (2, 2, 3)
    with pytest.raises(ValueError):
        to_rgb(np.zeros((2, 2, 5), np.uint8))


def test_single_image_file(tmp_path):
    _write_png(tmp_path / "one.png", _frame(42))
    with open_source(tmp_path / "one.png") as src:
        frames = list(src)
    assert len(frames) == 1 and frames[0].index == 0 and frames[0].timestamp == 0.0
    assert int(frames[0].image[0, 0, 0]) == 42


def test_bad_folders(tmp_path, caplog):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("no images here")
    with pytest.raises(SourceError) as e:
        open_source(empty)
    assert str(e.value) == f"{empty}: folder has no images"
    with pytest.raises(SourceError) as e:
        open_source(str(tmp_path / "nothing_*.png"))
    assert "glob matches no images" in str(e.value) and "nothing_*.png" in str(e.value)
    # mixed sizes: an error naming the odd file
    sizes = tmp_path / "sizes"
    sizes.mkdir()
    _write_png(sizes / "1.png", _frame(1))
    _write_png(sizes / "2.png", _frame(2, h=20))
    with open_source(sizes) as src, pytest.raises(SourceError) as e:
        list(src)
    assert "2.png" in str(e.value) and "16x20" in str(e.value) and "\n" not in str(e.value)
    # a corrupt image in the middle is skipped with a warning, counted, and leaves a gap in the index
    broken = tmp_path / "broken"
    broken.mkdir()
    for n in range(4):
        _write_png(broken / f"{n}.png", _frame(n))
    (broken / "2.png").write_bytes(b"\x89PNG garbage")
    with caplog.at_level(logging.WARNING, logger="gsam2_video"), open_source(broken) as src:
        idx = [f.index for f in src]
        assert src.stats["decode_errors"] == 1
    assert idx == [0, 1, 3]
    assert any("2.png" in r.getMessage() for r in caplog.records)
    # a corrupt first image fails at open
    (broken / "0.png").write_bytes(b"")
    with pytest.raises(SourceError, match="0.png: not a readable image"):
        open_source(broken)
    with pytest.raises(SourceError, match="image fps must be a number > 0"):
        open_source(sizes, image_fps=0)
