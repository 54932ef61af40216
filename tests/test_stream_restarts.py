"""Streams that restart or jump (issue 16 item 2): timestamps stay strictly increasing, nothing is lost.

A streamer process on 127.0.0.1 is killed and restarted 3 times during one ``gsam2-video track`` run (each
restart begins the clip again, so its pts start over); a stream whose pts jump backwards inside one
connection is read to the end. SessionClock's rules are checked on their own too. Every wait is bounded.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image
from stream_media import encode_ts, free_udp_port, remux_ts, serve_ts_over_http, start_udp_streamer

from gsam2_video.sources import ReconnectPolicy, open_source
from gsam2_video.sources.stream import SessionClock

REPO = Path(__file__).resolve().parents[1]
CLIP = "carphone_pristine.mp4"  # 120 frames at 30 fps, 176 x 144


# -- the clock on its own ------------------------------------------------------------------------------
def test_clock_keeps_real_timing_and_rebases_jumps() -> None:
    clock = SessionClock(0.04, wall_gaps=False, max_jump_s=5.0)
    clock.new_connection()
    stamps = [clock.stamp(p) for p in (100.0, 100.04, 100.12)]  # a dropped frame leaves its gap
    assert [round(t, 6) for t, _ in stamps] == [0.0, 0.04, 0.12] and all(j is None for _, j in stamps)
    t, jump = clock.stamp(1.4)  # a restarted muxer: pts go back
    assert jump == pytest.approx(1.4 - 100.12) and t == pytest.approx(0.16)
    t, jump = clock.stamp(1.44)
    assert jump is None and t == pytest.approx(0.20)
    t, jump = clock.stamp(1.44)  # an equal pts is not a jump but never repeats a time
    assert jump is None and 0.20 < t < 0.201
    t, jump = clock.stamp(3600.0)  # a forward leap beyond max_jump_s
    assert jump == pytest.approx(3600.0 - 1.44) and t == pytest.approx(0.20 + 0.04 / 1000 + 0.04)
    wrap = 2**33 / 90000
    clock.stamp(wrap - 0.04)
    t0 = clock.last
    t, jump = clock.stamp(0.0)  # MPEG-TS 33-bit wrap-around
    assert jump is not None and t == pytest.approx(t0 + 0.04)
    t, _ = clock.stamp(None)  # no pts at all: one step
    assert t == pytest.approx(t0 + 0.08)


def test_clock_new_connection_restarts_from_the_next_slot() -> None:
    clock = SessionClock(0.5, wall_gaps=False)
    clock.new_connection()
    clock.stamp(10.0)
    clock.stamp(10.5)
    clock.new_connection()
    t, jump = clock.stamp(10.0)  # same pts again on the new connection: placed after the old ones
    assert t == pytest.approx(1.0) and jump is None


def test_clock_on_a_live_source_shows_the_outage() -> None:
    clock = SessionClock(0.04, wall_gaps=True)
    clock.new_connection()
    clock.stamp(5.0)
    time.sleep(0.3)
    clock.new_connection()
    t, _ = clock.stamp(1.0)
    assert 0.3 <= t < 1.0  # the wall-clock gap, not one frame step


# -- a stream whose pts jump backwards inside one connection ---------------------------------------------
@pytest.fixture()
def twice_over_http(videos_dir: Path) -> Iterator[str]:
    data = remux_ts(videos_dir / CLIP) * 2  # the second copy repeats the first's pts: one jump back
    with serve_ts_over_http(data, "twice.ts", content_length=True) as url:
        yield url


def test_pts_jumping_back_is_rebased_and_nothing_is_lost(twice_over_http: str) -> None:
    with open_source(twice_over_http, live=False, open_timeout=5.0, read_timeout=5.0) as src:
        frames = [(f.index, f.timestamp) for f in src]
    assert [i for i, _ in frames] == list(range(240))
    ts = np.array([t for _, t in frames])
    assert np.all(np.diff(ts) > 0)
    assert np.diff(ts).max() == pytest.approx(1 / 30, rel=0.01)  # the join is one frame step, not a jump
    assert src.stats["discontinuities"] == 1 and src.stats["reconnects"] == 0
    assert [(e["event"], e["frame"]) for e in src.events] == [("discontinuity", 120)]
    assert src.events[0]["pts_jump_s"] < -3.5


# -- a stream slower to probe than the timeout -----------------------------------------------------------
def test_slow_udp_stream_probe_is_not_cut_short(tmp_path, videos_dir, caplog) -> None:
    """At 12 fps with a 1 s timeout, FFmpeg's probe (up to a GOP, then ~20 frames to measure the frame rate:
    about 2 s) takes longer than the timeout while datagrams keep coming. Data arriving is not silence: the
    source must read on without a single "stream broke" or reconnect (a probe cut at the timeout left the
    connection failing right after its probed frames, reported as "no data within 1 s", then reconnecting)."""
    ts_file = tmp_path / "clip.ts"
    ts_file.write_bytes(encode_ts(videos_dir / CLIP, gop=10))
    port = free_udp_port()
    streamer = start_udp_streamer(ts_file, port, seconds_per_loop=10.0, max_seconds=60)  # 12 fps
    try:
        caplog.set_level("INFO", logger="gsam2_video")
        with open_source(f"udp://127.0.0.1:{port}", live=False, open_timeout=1.0, read_timeout=1.0,
                         max_frames=45) as src:
            indices = [f.index for f in src]
            stats = dict(src.stats)
    finally:
        streamer.kill()
        streamer.wait(10)
    assert indices == list(range(45))
    assert stats["reconnects"] == 0, [r.getMessage() for r in caplog.records]
    assert not [r for r in caplog.records if "stream broke" in r.getMessage()]


def test_silent_udp_stream_still_breaks_within_the_timeout(tmp_path, videos_dir, caplog) -> None:
    """The streamer killed mid-read: silence is still noticed after about the timeout (FFmpeg's inactivity
    timeout), reported as "no data within 1 s", and the non-live reader tries to reconnect."""
    ts_file = tmp_path / "clip.ts"
    ts_file.write_bytes(encode_ts(videos_dir / CLIP, gop=10))
    port = free_udp_port()
    streamer = start_udp_streamer(ts_file, port, seconds_per_loop=4.0, max_seconds=60)
    caplog.set_level("INFO", logger="gsam2_video")
    try:
        with open_source(f"udp://127.0.0.1:{port}", live=False, open_timeout=1.0, read_timeout=1.0,
                         reconnect=ReconnectPolicy(max_attempts=0)) as src:
            it = iter(src)
            assert next(it).index == 0
            streamer.kill()
            streamer.wait(10)
            killed = time.monotonic()
            rest = sum(1 for _ in it)
            ended = time.monotonic() - killed
    finally:
        streamer.kill()
        streamer.wait(10)
    assert rest < 120 and ended < 1.0 + 2.0
    broke = [r.getMessage() for r in caplog.records if "stream broke" in r.getMessage()]
    assert len(broke) == 1 and "no data within 1 s" in broke[0], broke


# -- the streamer killed and restarted 3 times during one run ------------------------------------------
def _masks_done(out: Path) -> int:
    """Mask PNGs written so far (the hidden temporary folder while the run goes on)."""
    return sum(1 for d in out.glob(".masks.*partial") for _ in d.glob("*.png"))


def _wait(predicate, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def test_streamer_killed_and_restarted_three_times(tmp_path, tiny_models, videos_dir) -> None:
    ts_file = tmp_path / "clip.ts"
    ts_file.write_bytes(encode_ts(videos_dir / CLIP, gop=10))
    port = free_udp_port()
    out = tmp_path / "run"
    total = 70
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONPATH": str(REPO),
           "OMP_NUM_THREADS": "1"}
    streamer = start_udp_streamer(ts_file, port, seconds_per_loop=4.0, max_seconds=120)
    run = subprocess.Popen(
        [sys.executable, "-m", "gsam2_video", "track", f"udp://127.0.0.1:{port}", "--prompt", "person.",
         "--out", str(out), "--live", "--max-frames", str(total), "--save", "video,masks,json",
         "--stream-timeout", "1", "--detector", str(tiny_models["detector"]), "--sam2", str(tiny_models["sam2"]),
         "--device", "cpu", "--box-threshold", "0.05", "--text-threshold", "0.05", "--no-progress"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO)
    try:
        for mark in (10, 25, 40):
            assert _wait(lambda m=mark: _masks_done(out) >= m or run.poll() is not None, 120), "run stalled"
            assert run.poll() is None, run.communicate()[1]
            streamer.kill()  # the streamer dies, as a process killed by a user or a crash would
            streamer.wait(10)
            time.sleep(2.5)  # longer than --stream-timeout: the reader must notice and reconnect
            streamer = start_udp_streamer(ts_file, port, seconds_per_loop=4.0, max_seconds=120)
        _, err = run.communicate(timeout=240)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait(10)
        streamer.kill()
        streamer.wait(10)
    assert run.returncode == 0, err
    doc = json.loads((out / "run.json").read_text())
    assert doc["status"] == "completed"
    stats = doc["source_stats"]
    reconnects = [e for e in doc["source_events"] if e["event"] == "reconnect"]
    assert stats["reconnects"] == len(reconnects) >= 3
    assert stats["stream_lost"] == 0
    # no loss: every frame the pipeline read was written, in every output
    assert doc["frames"]["read"] == doc["frames"]["written"] == total
    pngs = sorted((out / "masks").glob("*.png"))
    assert len(pngs) == total
    for p in pngs:
        np.array(Image.open(p))
    tracks = json.loads((out / "tracks.json").read_text())
    stamps = np.array(tracks["videos"][0]["timestamps"])
    assert len(stamps) == total and np.all(np.diff(stamps) > 0)
    # the outages show as gaps of at least the time the streamer was down, at the frames after reconnects
    assert (np.diff(stamps) > 2.0).sum() >= 3
    with av.open(str(out / "video.mp4")) as container:
        pts = [f.pts for f in container.decode(video=0)]
    assert len(pts) == total and np.all(np.diff(pts) > 0)
