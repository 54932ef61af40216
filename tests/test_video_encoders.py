"""Choosing the video encoder (NVENC, software fallback, missing codecs) and writing with each one here."""

from __future__ import annotations

import av
import numpy as np
import pytest
from test_sinks_data import CATEGORIES, scripted_results, video_info

from gsam2_video.errors import ConfigError
from gsam2_video.sinks import make_sinks
from gsam2_video.sinks.encoders import CODECS, NVENC, choose_encoder, encoder_in_build, encoder_opens


def test_auto_prefers_nvenc_when_it_opens_and_falls_back_to_libx264():
    with_gpu = choose_encoder("auto", in_build=lambda n: True, opens=lambda n: True)
    assert (with_gpu.name, with_gpu.codec, with_gpu.hardware) == ("h264_nvenc", "h264", True)
    assert with_gpu.options == {"preset": "p2", "rc": "vbr", "cq": "23", "b": "0"}
    without = choose_encoder("auto", in_build=lambda n: True, opens=lambda n: False)
    assert (without.name, without.hardware, without.options) == ("libx264", False,
                                                                  {"crf": "23", "preset": "veryfast"})
    no_nvenc_build = choose_encoder("hevc", in_build=lambda n: n not in NVENC, opens=lambda n: True)
    assert no_nvenc_build.name == "libx265"


def test_missing_codec_is_one_clear_line():
    with pytest.raises(ConfigError) as info:
        choose_encoder("hevc", in_build=lambda n: n == "libx264", opens=lambda n: False)
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith("--video-codec hevc: no usable encoder")
    assert "hevc_nvenc (not in this FFmpeg build), libx265 (not in this FFmpeg build)" in msg
    assert msg.endswith("try --video-codec h264")
    with pytest.raises(ConfigError, match="unknown codec 'vp9'; choose from auto, h264, hevc, av1"):
        choose_encoder("vp9")
    with pytest.raises(ConfigError, match="threads must be >= 0"):
        choose_encoder("h264", threads=-1)


def test_choice_with_the_encoders_this_pyav_has():
    """What this machine's PyAV really offers: every listed encoder is checked by name, NVENC by opening."""
    have = {name for names in CODECS.values() for name in names if encoder_in_build(name)}
    assert "libx264" in have  # PyAV's wheels always carry x264
    assert not encoder_in_build("no_such_encoder")
    gpu = {name for name in have & NVENC if encoder_opens(name)}
    assert choose_encoder("auto").name == ("h264_nvenc" if "h264_nvenc" in gpu else "libx264")
    for codec, names in CODECS.items():
        usable = [n for n in names if n in have and (n not in NVENC or n in gpu)]
        if usable:
            assert choose_encoder(codec).name == usable[0]
        else:
            with pytest.raises(ConfigError, match=f"--video-codec {codec}: no usable encoder"):
                choose_encoder(codec)
    if "libaom-av1" not in have:  # an encoder asked for by name that this build lacks
        with pytest.raises(ConfigError, match=r"libaom-av1 \(not in this FFmpeg build\)"):
            choose_encoder("libaom-av1")
    if "h264_nvenc" in have and "h264_nvenc" not in gpu:  # listed, but no GPU to run it here
        with pytest.raises(ConfigError, match=r"h264_nvenc \(no usable NVIDIA GPU/driver\)"):
            choose_encoder("h264_nvenc")
    with pytest.raises(ConfigError, match="unknown codec"):
        make_sinks(["video"], "/nonexistent-never-created", video_codec="prores")


@pytest.mark.parametrize("codec", ["libx264", "libx265", "libsvtav1"])
def test_video_sink_writes_with_each_software_encoder(tmp_path, codec):
    if not encoder_in_build(codec):
        pytest.skip(f"{codec} not in this PyAV build")
    results = scripted_results(scale=4)  # 200 x 148: above every encoder's minimum size
    (sink,) = make_sinks(["video"], tmp_path, video_codec=codec, video_threads=1)
    sink.open(video_info(), CATEGORIES)
    for r in results:
        sink.write(r)
    sink.close()
    with av.open(str(tmp_path / "video.mp4")) as c:
        s = c.streams.video[0]
        assert s.codec_context.name in {"h264": ("h264",), "hevc": ("hevc",), "av1": ("libdav1d", "av1")}[
            sink.encoder.codec]
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(s)]
    assert len(frames) == len(results)
    # the picture survives the encoder: the background gradient is close to the source's
    bg = ~results[2].masks.any(axis=0) if len(results[2]) else np.ones(frames[2].shape[:2], bool)
    assert np.abs(frames[2][bg].astype(int) - results[2].image[bg]).mean() < 6
