"""Source plumbing: spec parsing, selection, the reader/consumer channel, prefetch depth, error hand-off,
reconnect policy, and the webcam reader (driven by recorded clips through its capture factory)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from gsam2_video.errors import SourceError
from gsam2_video.sources import (
    Channel,
    FrameSource,
    ReconnectPolicy,
    Selection,
    open_source,
    parse_source,
    redact_url,
)
from gsam2_video.sources.channel import ChannelClosed
from gsam2_video.types import Frame, VideoInfo

# -- spec parsing -------------------------------------------------------------------------------------------


def test_parse_source_kinds(tmp_path):
    (tmp_path / "a.mp4").write_bytes(b"x")
    (tmp_path / "b.png").write_bytes(b"x")
    assert parse_source(0).kind == "webcam" and parse_source("3").target == 3
    assert parse_source(tmp_path).kind == "folder"
    assert parse_source(str(tmp_path / "a.mp4")).kind == "file"
    assert parse_source(tmp_path / "b.png").kind == "image"
    assert parse_source(str(tmp_path / "*.png")).kind == "glob"
    for url in ("rtsp://cam/1", "rtmp://h/app", "http://h/x.m3u8", "https://h/x", "udp://127.0.0.1:5000",
                "tcp://127.0.0.1:9", "srt://h:1"):
        spec = parse_source(url)
        assert spec.kind == "stream" and spec.default_live, url
    assert not parse_source("https://example.com/clip.mp4").default_live  # remote file
    assert not parse_source(tmp_path).default_live
    assert parse_source(0).default_live
    assert parse_source(f"file://{tmp_path / 'a.mp4'}").kind == "file"


@pytest.mark.parametrize("bad, needle", [
    ("", "unknown source ''"),
    ("ftp://host/x.mp4", "unsupported URL scheme 'ftp'"),
    ("http://", "URL has no host"),
    (-1, "webcam index must be >= 0"),
    (1.5, "unknown source 1.5"),
    (["a"], "unknown source ['a']"),
    (True, "unknown source True"),
])
def test_unknown_source_strings(bad, needle):
    with pytest.raises(SourceError) as e:
        open_source(bad)
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_missing_path(tmp_path):
    missing = tmp_path / "nope.mp4"
    with pytest.raises(SourceError) as e:
        open_source(missing)
    assert str(e.value) == f"{missing}: no such file or directory"


def test_redact_url():
    assert redact_url("rtsp://u:p@10.0.0.1:554/s?x=1") == "rtsp://***@10.0.0.1:554/s?x=1"
    assert redact_url("http://h/x") == "http://h/x"


# -- selection, channel -------------------------------------------------------------------------------------


def test_selection_arithmetic():
    sel = Selection(start=3, stride=4, max_frames=None)
    assert [p for p in range(20) if sel.wanted(p)] == [3, 7, 11, 15, 19]
    assert sel.count(20) == 5 and sel.count(3) == 0 and sel.count(4) == 1 and sel.count(None) is None
    assert Selection(2, 3, 2).count(100) == 2 and Selection(2, 3, 2).last_position == 5
    for kw in ({"start": -1}, {"stride": 0}, {"max_frames": 0}, {"start": 1.5}):
        with pytest.raises(SourceError):
            Selection(**kw)


def test_channel_latest_keeps_newest_and_counts_drops():
    ch: Channel[int] = Channel(latest=True)
    for i in range(5):
        ch.put(i)
    assert ch.get() == (True, 4) and ch.dropped == 4
    ch.put(5)
    ch.finish()
    assert ch.get() == (True, 5) and ch.get() == (False, None) and ch.dropped == 4


def test_channel_bounded_blocks_and_close_unblocks():
    ch: Channel[int] = Channel(capacity=2)
    ch.put(0)
    ch.put(1)
    outcome = []

    def producer() -> None:
        try:
            ch.put(2)  # blocks: full
            outcome.append("put")
        except ChannelClosed:
            outcome.append("closed")

    t = threading.Thread(target=producer)
    t.start()
    t.join(0.2)
    assert t.is_alive() and outcome == []
    assert ch.get() == (True, 0)
    t.join(2.0)
    assert outcome == ["put"]
    t = threading.Thread(target=producer)
    t.start()
    t.join(0.2)
    assert t.is_alive()
    ch.close()
    t.join(2.0)
    assert outcome == ["put", "closed"] and ch.dropped == 0


def test_channel_error_after_items():
    ch: Channel[int] = Channel(capacity=4)
    ch.put(1)
    ch.finish(RuntimeError("boom"))
    assert ch.get() == (True, 1)
    with pytest.raises(RuntimeError, match="boom"):
        ch.get()


# -- FrameSource machinery with a synthetic source -----------------------------------------------------------


class _Counting(FrameSource):
    """n frames of 2x2 pixels; optionally fails after ``fail_after`` frames; records production times."""

    def __init__(self, n: int, *, prefetch: int = 4, fail_after: int | None = None, delay: float = 0.0,
                 selection: Selection | None = None) -> None:
        selection = selection or Selection()
        super().__init__(VideoInfo("synthetic", "synthetic://", 2, 2, 10.0, selection.count(n)), selection,
                         live=False, prefetch=prefetch)
        self.n, self.fail_after, self.delay = n, fail_after, delay
        self.produced_on: set[str] = set()

    def _produce(self, stop: threading.Event) -> Iterator[Frame]:
        for i in range(self.n):
            if stop.is_set():
                return
            if self.fail_after is not None and i == self.fail_after:
                raise SourceError(f"{self.name}: synthetic failure at {i}")
            if self.delay:
                time.sleep(self.delay)
            self.produced_on.add(threading.current_thread().name)
            if self.selection.wanted(i):
                yield Frame(i, i / 10.0, np.full((2, 2, 3), i % 256, np.uint8))


def test_prefetch_runs_ahead_by_exactly_the_queue_size():
    src = _Counting(50, prefetch=4)
    it = iter(src)
    first = next(it)
    deadline = time.monotonic() + 5.0
    while src.stats["frames_read"] < 6 and time.monotonic() < deadline:
        time.sleep(0.005)
    time.sleep(0.1)
    # 1 consumed + 4 queued + 1 held by the blocked put = 6 produced, and no more
    assert first.index == 0 and src.stats["frames_read"] == 6
    assert src.produced_on == {"gsam2-source:synthetic"}
    assert [f.index for f in it] == list(range(1, 50))
    assert src.stats["frames_yielded"] == 50


def test_prefetch_overlaps_production_with_consumption():
    """Producer and consumer each need 50 ms per frame; overlapped, 10 frames take ~0.55 s, not >= 1.0 s."""
    src = _Counting(10, prefetch=4, delay=0.05)
    t0 = time.monotonic()
    with src:
        for _ in src:
            time.sleep(0.05)
    assert time.monotonic() - t0 < 0.85  # sequential would be >= 1.0


def test_prefetch_zero_decodes_on_caller_thread():
    src = _Counting(5, prefetch=0)
    assert [f.index for f in src] == [0, 1, 2, 3, 4]
    assert src.produced_on == {threading.current_thread().name}


def test_reader_exception_reraised_after_queued_frames():
    src = _Counting(10, fail_after=3)
    seen = []
    with pytest.raises(SourceError, match="synthetic failure at 3"):
        for f in src:
            seen.append(f.index)
    assert seen == [0, 1, 2]
    assert not any(t.name == "gsam2-source:synthetic" for t in threading.enumerate())


def test_max_frames_stops_reader_and_single_pass():
    src = _Counting(1000, selection=Selection(start=1, stride=2, max_frames=3))
    assert src.info.frame_count == 3
    with src:
        assert [f.index for f in src] == [1, 3, 5]
        with pytest.raises(SourceError, match="closed"):
            iter(src)
    src.close()
    assert not any(t.name == "gsam2-source:synthetic" for t in threading.enumerate())
    again = _Counting(3)
    it = iter(again)
    with pytest.raises(SourceError, match="only once"):
        iter(again)
    assert [f.index for f in it] == [0, 1, 2]


def test_break_out_of_loop_stops_thread():
    with _Counting(10_000, prefetch=2) as src:
        for f in src:
            if f.index == 5:
                break
    deadline = time.monotonic() + 5
    while any(t.name == "gsam2-source:synthetic" for t in threading.enumerate()) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not any(t.name == "gsam2-source:synthetic" for t in threading.enumerate())
    assert src.stats["frames_read"] <= 6 + 2 + 1


def test_reconnect_policy_delays():
    p = ReconnectPolicy(max_attempts=5, initial_delay=0.5, factor=2.0, max_delay=3.0)
    assert list(p.delays()) == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert list(ReconnectPolicy(max_attempts=0).delays()) == []
    with pytest.raises(SourceError):
        ReconnectPolicy(factor=0.5)


# -- webcam reader through a capture factory ------------------------------------------------------------------


class _Factory:
    """Opens ``clip`` as if it were camera ``index`` for the first ``opens`` calls, then 'unplugs'."""

    def __init__(self, clip: Path, opens: int) -> None:
        self.clip, self.opens, self.calls = clip, opens, 0

    def __call__(self, index: int) -> cv2.VideoCapture:
        self.calls += 1
        if self.calls > self.opens:
            return cv2.VideoCapture(str(self.clip.with_name("unplugged.avi")))
        return cv2.VideoCapture(str(self.clip))


def test_webcam_non_live_reconnects_then_ends(videos_dir):
    factory = _Factory(videos_dir / "tree.avi", opens=2)
    policy = ReconnectPolicy(max_attempts=2, initial_delay=0.01, max_delay=0.02)
    with open_source(0, live=False, capture_factory=factory, reconnect=policy) as src:
        assert (src.info.width, src.info.height, src.info.is_live) == (320, 240, False)
        assert src.info.frame_count is None and src.info.name == "webcam0"
        frames = list(src)
        stats = src.stats
    assert [f.index for f in frames] == list(range(136))  # two plays of 68 frames, nothing dropped
    assert np.all(np.diff([f.timestamp for f in frames]) > 0)
    assert stats["reconnects"] == 1 and stats["stream_lost"] == 1 and stats["frames_dropped"] == 0
    assert factory.calls == 2 + policy.max_attempts
    # frames are RGB: equal to the file decoded by PyAV (same codec, same frames) up to conversion rounding
    with open_source(videos_dir / "tree.avi", max_frames=3) as ref:
        for got, want in zip(frames[:3], ref):
            assert np.abs(got.image.astype(int) - want.image.astype(int)).mean() < 2.0


def test_webcam_live_mode_drops_for_slow_consumer(videos_dir):
    factory = _Factory(videos_dir / "bikes.mp4", opens=1)
    with open_source("0", capture_factory=factory, reconnect=ReconnectPolicy(max_attempts=0)) as src:
        assert src.info.is_live
        seen = []
        for f in src:
            seen.append(f.index)
            time.sleep(0.02)
        stats = src.stats
    assert stats["frames_read"] == 250 and stats["frames_dropped"] > 0
    assert len(seen) + stats["frames_dropped"] == 250 and seen[-1] == 249
    assert seen == sorted(set(seen))


def test_webcam_missing_device_is_one_line(tmp_path):
    with pytest.raises(SourceError) as e:
        open_source(7, capture_factory=lambda i: cv2.VideoCapture(str(tmp_path / "none.avi")))
    assert str(e.value) == "webcam7: cannot open camera 7 (no such device, or busy)"


def test_real_webcam_index_without_device_fails_fast():
    """The default OpenCV factory on a machine without that camera: one line, no hang."""
    t0 = time.monotonic()
    with pytest.raises(SourceError) as e:
        open_source("63")
    assert time.monotonic() - t0 < 10.0
    assert str(e.value).startswith("webcam63: cannot open camera 63")


def test_package_level_lazy_export():
    import gsam2_video

    assert gsam2_video.open_source is open_source
