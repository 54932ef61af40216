"""Video files through every decoder: exact counts on the shared clips, timestamps, selection, colour, bad files."""

from __future__ import annotations

import logging
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from stream_media import remux

from gsam2_video.errors import ConfigError, SourceError
from gsam2_video.sources import DECODERS, open_source
from tests.conftest import CLIP_FRAMES

DECODER_PARAMS = [pytest.param(d, id=d) for d in DECODERS]


def _read_all(path: Path, decoder: str, **kw) -> tuple[list[int], list[float], list[np.ndarray], dict, object]:
    with open_source(path, decoder=decoder, **kw) as src:
        info = src.info
        idx, ts, imgs = [], [], []
        for frame in src:
            idx.append(frame.index)
            ts.append(frame.timestamp)
            imgs.append(frame.image)
        stats = src.stats
    return idx, ts, imgs, stats, info


@pytest.fixture(scope="module")
def av_reference(videos_dir: Path) -> dict[str, tuple[list[float], list[float]]]:
    """Per clip: PyAV's own pts*time_base for every decoded frame, and the per-frame mean pixel value."""
    ref = {}
    for name in CLIP_FRAMES:
        with av.open(str(videos_dir / name)) as c:
            s = c.streams.video[0]
            t0 = s.start_time or 0
            ts, means = [], []
            for f in c.decode(s):
                ts.append(float((f.pts - t0) * s.time_base))
                means.append(float(f.to_ndarray(format="rgb24").mean()))
        ref[name] = (ts, means)
    return ref


@pytest.mark.parametrize("decoder", DECODER_PARAMS)
@pytest.mark.parametrize("clip", list(CLIP_FRAMES))
def test_every_decoder_every_clip_full_decode(videos_dir, av_reference, clip, decoder):
    """Exact frame count, indices 0..n-1, strictly increasing timestamps equal to PyAV's pts (1 ms)."""
    idx, ts, imgs, stats, info = _read_all(videos_dir / clip, decoder)
    n = CLIP_FRAMES[clip]
    assert len(idx) == n and info.frame_count == n
    assert idx == list(range(n))
    assert np.all(np.diff(ts) > 0)
    ref_ts, ref_means = av_reference[clip]
    np.testing.assert_allclose(ts, ref_ts, atol=1e-3)
    assert stats["frames_read"] == stats["frames_yielded"] == n
    assert stats["frames_missing"] == 0 and stats["decode_errors"] == 0
    h, w = imgs[0].shape[:2]
    assert (w, h) == (info.width, info.height)
    for img in imgs[:: max(1, n // 10)]:
        assert img.dtype == np.uint8 and img.shape == (h, w, 3) and img.flags.c_contiguous
    # Same pictures as PyAV up to colour-conversion rounding (catches BGR/RGB mix-ups and frame shifts).
    means = [float(img.mean()) for img in imgs]
    assert np.max(np.abs(np.array(means) - np.array(ref_means))) < 2.0


def test_tree_avi_header_disagrees_and_count_is_decodable_frames(videos_dir):
    """tree.avi declares 444 index entries (376 empty = skipped frames); every backend decodes 68."""
    with open_source(videos_dir / "tree.avi") as src:
        assert src.probe.declared_frames == 444
        assert src.info.frame_count == 68
        # variable frame rate: gaps between timestamps differ
        ts = [f.timestamp for f in src]
    gaps = np.round(np.diff(ts), 4)
    assert len(set(gaps.tolist())) > 1
    assert ts[1] == pytest.approx(11 * 66667 / 1_000_000, abs=1e-9)  # pts 11 * time_base, exactly


@pytest.mark.parametrize("decoder", DECODER_PARAMS)
def test_backends_agree_on_pixels_and_colour_order(videos_dir, decoder):
    """Same frames from every backend: mean abs difference to PyAV small, channels not swapped."""
    _, _, ref, _, _ = _read_all(videos_dir / "carphone_pristine.mp4", "av", max_frames=10)
    _, _, got, _, _ = _read_all(videos_dir / "carphone_pristine.mp4", decoder, max_frames=10)
    for a, b in zip(ref, got):
        diff = np.abs(a.astype(np.int16) - b.astype(np.int16))
        assert diff.mean() < 1.5
        swapped = np.abs(a.astype(np.int16) - b[..., ::-1].astype(np.int16)).mean()
        assert swapped > diff.mean() + 1.0


@pytest.mark.parametrize("decoder", DECODER_PARAMS)
def test_start_stride_max_frames_equal_full_decode(videos_dir, decoder):
    _idx_all, ts_all, imgs_all, _, _ = _read_all(videos_dir / "bikes.mp4", decoder, max_frames=40)
    idx, ts, imgs, stats, info = _read_all(videos_dir / "bikes.mp4", decoder, start=5, stride=3, max_frames=7)
    assert idx == [5, 8, 11, 14, 17, 20, 23]
    assert info.frame_count == 7 and info.fps == pytest.approx(25.0 / 3)
    assert stats["frames_read"] == 7
    for i, t, img in zip(idx, ts, imgs):
        assert t == pytest.approx(ts_all[i], abs=1e-6)
        np.testing.assert_array_equal(img, imgs_all[i])


@pytest.mark.parametrize("decoder", DECODER_PARAMS)
def test_selection_counts_without_max_frames(videos_dir, decoder):
    idx, _ts, _, _, info = _read_all(videos_dir / "tree.avi", decoder, start=60, stride=2)
    assert idx == [60, 62, 64, 66] and info.frame_count == 4
    idx, _, _, _, info = _read_all(videos_dir / "tree.avi", decoder, start=68)
    assert idx == [] and info.frame_count == 0


def _write_video(path: Path, frames: list[np.ndarray], codec: str, pix_fmt: str, in_fmt: str,
                 rate: int = 10) -> None:
    with av.open(str(path), "w") as c:
        s = c.add_stream(codec, rate=rate)
        s.width, s.height, s.pix_fmt = frames[0].shape[1], frames[0].shape[0], pix_fmt
        for arr in frames:
            for p in s.encode(av.VideoFrame.from_ndarray(arr, format=in_fmt)):
                c.mux(p)
        for p in s.encode(None):
            c.mux(p)


@pytest.mark.parametrize("decoder", DECODER_PARAMS)
def test_video_colour_order_is_rgb(tmp_path, decoder):
    """A lossless clip of pure red, green, blue frames comes out as exactly those RGB triples."""
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255)]
    frames = [np.tile(np.array(c, np.uint8), (32, 48, 1)) for c in colours]
    path = tmp_path / "rgb.mkv"
    _write_video(path, frames, "ffv1", "bgr0", "rgb24")
    _, _, imgs, _, _ = _read_all(path, decoder)
    assert [tuple(int(v) for v in img[5, 5]) for img in imgs] == colours


@pytest.mark.parametrize("decoder", DECODER_PARAMS)
def test_gray_and_16bit_video_become_rgb_uint8(tmp_path, decoder):
    ramp8 = np.tile(np.arange(0, 256, 4, dtype=np.uint8), (16, 1))  # 16 x 64
    gray = tmp_path / "gray.mkv"
    _write_video(gray, [ramp8, ramp8[::-1].copy()], "ffv1", "gray", "gray")
    _, _, imgs, _, _ = _read_all(gray, decoder)
    assert len(imgs) == 2
    for img, ref in zip(imgs, [ramp8, ramp8[::-1]]):
        assert img.shape == (16, 64, 3) and img.dtype == np.uint8
        assert np.array_equal(img[..., 0], img[..., 1]) and np.array_equal(img[..., 1], img[..., 2])
        assert np.abs(img[..., 0].astype(int) - ref).max() <= 1
    ramp16 = (ramp8.astype(np.uint16) * 257)
    deep = tmp_path / "gray16.mkv"
    _write_video(deep, [ramp16], "ffv1", "gray16le", "gray16le")
    _, _, imgs, _, _ = _read_all(deep, decoder)
    assert len(imgs) == 1 and imgs[0].dtype == np.uint8 and imgs[0].shape == (16, 64, 3)
    assert np.abs(imgs[0][..., 0].astype(int) - ramp8).max() <= 1


def test_variable_frame_rate_timestamps_are_exact(tmp_path):
    """A VFR file (irregular pts) gives exactly pts * time_base from PyAV; other backends within 1 ms."""
    path = tmp_path / "vfr.mkv"
    pts_ms = [0, 40, 50, 200, 210, 1000, 1033]
    with av.open(str(path), "w") as c:
        s = c.add_stream("ffv1", rate=1000)
        s.width, s.height, s.pix_fmt = 32, 16, "yuv420p"
        s.time_base = Fraction(1, 1000)
        for i, p in enumerate(pts_ms):
            f = av.VideoFrame.from_ndarray(np.full((16, 32, 3), i * 30, np.uint8), format="rgb24")
            f.pts, f.time_base = p, Fraction(1, 1000)
            for pk in s.encode(f):
                c.mux(pk)
        for pk in s.encode(None):
            c.mux(pk)
    for decoder in DECODERS:
        _, ts, _, _, info = _read_all(path, decoder)
        assert info.frame_count == len(pts_ms)
        np.testing.assert_allclose(ts, np.array(pts_ms) / 1000.0, atol=1e-9 if decoder == "av" else 1e-3)


# -- bad input ---------------------------------------------------------------------------------------------

def _one_line(exc: pytest.ExceptionInfo, *needles: str) -> str:
    msg = str(exc.value)
    assert "\n" not in msg
    for n in needles:
        assert n in msg, msg
    return msg


@pytest.mark.parametrize("decoder", DECODER_PARAMS)
def test_truncated_video_yields_what_decodes_then_warns(videos_dir, tmp_path, caplog, decoder):
    path = tmp_path / "vtest_100k.avi"
    path.write_bytes((videos_dir / "vtest.avi").read_bytes()[:100_000])
    with caplog.at_level(logging.WARNING, logger="gsam2_video"):
        idx, _ts, imgs, stats, info = _read_all(path, decoder)
    assert idx == [0, 1, 2] and info.frame_count == 3
    assert all(img.shape == (576, 768, 3) for img in imgs)
    assert stats["frames_missing"] == 792
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "vtest_100k.avi" in warnings[0] and "3 of 795" in warnings[0]


@pytest.fixture(scope="module")
def damaged_bikes(videos_dir, tmp_path_factory) -> Path:
    """bikes.mp4 with ten 2 KB runs of random bytes written over its middle third (header intact)."""
    data = bytearray((videos_dir / "bikes.mp4").read_bytes())
    rng = np.random.default_rng(1)
    for off in range(len(data) // 3, len(data) // 3 + 200_000, 20_000):
        data[off:off + 2000] = rng.integers(0, 256, 2000, dtype=np.uint8).tobytes()
    path = tmp_path_factory.mktemp("damaged") / "bikes_damaged.mp4"
    path.write_bytes(bytes(data))
    return path


def test_damaged_middle_yields_surviving_frames_with_one_warning(damaged_bikes, caplog):
    """Damaged packets are counted and skipped; PyAV and OpenCV recover to the same frames, decord (which
    stops resynchronising after repeated failures) yields fewer; each warns once with its counts."""
    counts = {}
    for decoder in DECODERS:
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="gsam2_video"):
            idx, ts, _, stats, _ = _read_all(damaged_bikes, decoder)
        counts[decoder] = len(idx)
        assert idx == sorted(set(idx)) and np.all(np.diff(ts) > 0)
        assert stats["decode_errors"] > 0 and stats["frames_missing"] == 250 - len(idx)
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1 and f"decoded {len(idx)} of 250" in warnings[0]
    assert counts["av"] == counts["opencv"] > 200
    assert 0 < counts["decord"] <= counts["av"]


def test_truncated_mp4_with_index_up_front_warns(videos_dir, tmp_path, caplog):
    """An mp4 whose moov atom comes first keeps its header; cutting its data loses frames, reported once."""
    src_path = videos_dir / "carphone_pristine.mp4"
    fast = tmp_path / "fast.mp4"
    remux(src_path, str(fast), options={"movflags": "faststart"})
    data = fast.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    with caplog.at_level(logging.WARNING, logger="gsam2_video"):
        idx, _, _, stats, info = _read_all(cut, "av")
    assert info.frame_count == 120  # the header still says so
    assert 0 < len(idx) < 120 and idx == list(range(len(idx)))
    assert stats["frames_missing"] == 120 - len(idx)
    assert any(f"{len(idx)} of 120" in r.getMessage() for r in caplog.records)


def test_corrupt_and_empty_files(videos_dir, tmp_path):
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(np.random.default_rng(0).integers(0, 256, 50_000, dtype=np.uint8).tobytes())
    with pytest.raises(SourceError) as e:
        open_source(garbage)
    _one_line(e, "garbage.mp4", "not a readable video")
    half_mp4 = tmp_path / "bikes_100k.mp4"  # moov atom at the end: nothing to index
    half_mp4.write_bytes((videos_dir / "bikes.mp4").read_bytes()[:100_000])
    with pytest.raises(SourceError) as e:
        open_source(half_mp4)
    _one_line(e, "bikes_100k.mp4")
    empty = tmp_path / "empty.avi"
    empty.write_bytes(b"")
    with pytest.raises(SourceError) as e:
        open_source(empty)
    _one_line(e, "empty.avi", "empty")
    text = tmp_path / "notes.txt"
    text.write_text("hello\n")
    with pytest.raises(SourceError) as e:
        open_source(text)
    _one_line(e, "notes.txt")


def test_zero_frame_files(tmp_path):
    """A container with a video stream but no frames, and one with no video stream at all."""
    no_frames = tmp_path / "noframes.avi"
    with av.open(str(no_frames), "w") as c:
        s = c.add_stream("mpeg4", rate=10)
        s.width, s.height, s.pix_fmt = 32, 16, "yuv420p"
        c.start_encoding()
    with pytest.raises(SourceError) as e:
        open_source(no_frames)
    _one_line(e, "noframes.avi", "no video frames")
    header_only = tmp_path / "header_only.mkv"
    with av.open(str(header_only), "w") as c:
        s = c.add_stream("ffv1", rate=10)
        s.width, s.height, s.pix_fmt = 32, 16, "yuv420p"
        c.start_encoding()
    with pytest.raises(SourceError) as e:
        open_source(header_only)
    _one_line(e, "header_only.mkv", "no frames")
    audio = tmp_path / "audio.mka"
    with av.open(str(audio), "w") as c:
        s = c.add_stream("pcm_s16le", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16", layout="mono")
        frame.sample_rate = 8000
        for p in s.encode(frame):
            c.mux(p)
        for p in s.encode(None):
            c.mux(p)
    with pytest.raises(SourceError) as e:
        open_source(audio)
    _one_line(e, "audio.mka", "no video stream")


def test_bad_options(videos_dir):
    clip = videos_dir / "tree.avi"
    with pytest.raises(ConfigError, match="unknown decoder 'ffmpeg'"):
        open_source(clip, decoder="ffmpeg")
    for kw in ({"start": -1}, {"stride": 0}, {"max_frames": 0}, {"prefetch": -1}):
        with pytest.raises(SourceError):
            open_source(clip, **kw)


def test_live_replay_of_a_file_paces_and_drops(videos_dir):
    """live=True on a file plays it on its own clock; a consumer at a third of the rate sees every ~3rd frame."""
    t0 = time.monotonic()
    seen = []
    with open_source(videos_dir / "carphone_pristine.mp4", live=True, max_frames=12) as src:
        assert src.info.is_live
        for frame in src:
            seen.append(frame.index)
            time.sleep(0.1)  # 10 fps consumer on a 29.97 fps clip
        stats = src.stats
    elapsed = time.monotonic() - t0
    assert len(seen) == 12 and seen == sorted(set(seen))
    assert stats["frames_dropped"] > 12  # roughly two of every three frames
    assert 20 <= seen[-1] <= 45  # about 1.2 s of video went by, not 12 frames' worth (0.4 s)
    assert elapsed >= 1.1
