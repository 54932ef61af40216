"""AsyncWriter (order, errors, back-pressure), atomic outputs, output-folder errors, frame annotation."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_sinks_data import CATEGORIES, H, W, scripted_results, video_info

from gsam2_video.drawing import annotate, label_text, track_color
from gsam2_video.errors import ConfigError, OutputError
from gsam2_video.sinks import SINK_KINDS, AsyncWriter, Sink, make_sinks, prepare_output_dir, write_run_json
from gsam2_video.types import FrameResult, VideoInfo

FINAL_NAMES = {"video.mp4", "masks", "tracks.json", "mots.txt", "mot.txt", "yolo", "coco.json", "cvat.xml"}


class RecordingSink(Sink):
    """Records what it receives; optionally fails on one frame or blocks until released."""

    kind = "recording"

    def __init__(self, fail_on: int | None = None, gate: threading.Event | None = None,
                 error: BaseException | None = None) -> None:
        self.fail_on = fail_on
        self.gate = gate
        self.error = error or OutputError("recording output: disk on fire")
        self.seen: list[int] = []
        self.events: list[str] = []
        self.threads: set[str] = set()

    @property
    def outputs(self) -> list[str]:
        return ["<memory>"]

    def open(self, info: VideoInfo, categories: list[str]) -> None:
        self.events.append("open")

    def write(self, result: FrameResult) -> None:
        self.threads.add(threading.current_thread().name)
        if self.gate is not None:
            self.gate.wait(10)
        if result.frame_index == self.fail_on:
            raise self.error
        self.seen.append(result.frame_index)

    def close(self) -> None:
        self.events.append("close")

    def abort(self) -> None:
        self.events.append("abort")


def final_files(out: Path) -> set[str]:
    return {p.name for p in out.iterdir()} & FINAL_NAMES


def all_entries(out: Path) -> list[str]:
    return sorted(p.name for p in out.iterdir())


@pytest.mark.parametrize(("parallel", "thread"), [(True, "gsam2-writer:recording"), (False, "gsam2-writer")])
def test_writer_delivers_every_result_in_order_on_one_background_thread(tmp_path, parallel, thread):
    """Each sink sees every frame in order from one background thread: its own lane when parallel."""
    rec = RecordingSink()
    sinks = [*make_sinks(SINK_KINDS, tmp_path), rec]
    results = scripted_results()
    with AsyncWriter(sinks, max_queue=2, parallel=parallel) as writer:
        assert writer.needs_image
        writer.open(video_info(), CATEGORIES)
        for r in results:
            writer.write(r)
    assert rec.seen == list(range(len(results))) and rec.events == ["open", "close"]
    assert rec.threads == {thread}
    assert writer.frames_written == len(results)
    assert set(writer.sink_seconds) == {*SINK_KINDS, "recording"}
    assert all(entry in FINAL_NAMES for entry in all_entries(tmp_path))  # nothing temporary left
    assert final_files(tmp_path) == FINAL_NAMES
    assert len(list((tmp_path / "masks").iterdir())) == len(results)


def test_nothing_final_exists_until_close(tmp_path):
    writer = AsyncWriter(make_sinks(SINK_KINDS, tmp_path), max_queue=4)
    writer.open(video_info(), CATEGORIES)
    for r in scripted_results():
        writer.write(r)
    deadline = time.monotonic() + 10
    while writer.queue_depth and time.monotonic() < deadline:  # let the worker write everything
        time.sleep(0.01)
    time.sleep(0.05)
    assert final_files(tmp_path) == set()
    assert all(".partial" in name and name.startswith(".") for name in all_entries(tmp_path))
    writer.close()
    assert final_files(tmp_path) == FINAL_NAMES


def test_exception_in_with_block_aborts_and_leaves_nothing(tmp_path):
    results = scripted_results()
    rec = RecordingSink()
    with pytest.raises(KeyboardInterrupt), \
            AsyncWriter([*make_sinks(SINK_KINDS, tmp_path), rec], max_queue=3) as writer:
        writer.open(video_info(), CATEGORIES)
        for r in results[:4]:
            writer.write(r)
        raise KeyboardInterrupt  # e.g. Ctrl-C in the middle of a run
    assert all_entries(tmp_path) == []
    assert rec.events == ["open", "abort"]


def test_abort_keeps_an_older_finished_output(tmp_path):
    (tmp_path / "tracks.json").write_text('{"old": true}')
    writer = AsyncWriter(make_sinks(["json", "masks"], tmp_path))
    writer.open(video_info(), CATEGORIES)
    writer.write(scripted_results()[0])
    writer.abort()
    assert all_entries(tmp_path) == ["tracks.json"]
    assert json.loads((tmp_path / "tracks.json").read_text()) == {"old": True}


def test_sink_error_surfaces_from_close_and_aborts_all_sinks(tmp_path):
    bad = RecordingSink(fail_on=3)
    writer = AsyncWriter([*make_sinks(["masks", "json", "mot"], tmp_path), bad], max_queue=8)
    writer.open(video_info(), CATEGORIES)
    for r in scripted_results()[:5]:
        try:
            writer.write(r)
        except OutputError:
            break  # write() may already report the failure once the worker hit it
    with pytest.raises(OutputError, match="disk on fire"):
        writer.close()
    assert bad.seen == [0, 1, 2] and bad.events == ["open", "abort"]
    assert all_entries(tmp_path) == []
    writer.close()  # closing again is a no-op, not a second error


def test_write_fails_fast_after_a_sink_error(tmp_path):
    bad = RecordingSink(fail_on=0)
    writer = AsyncWriter([bad], max_queue=1)
    writer.open(video_info(), CATEGORIES)
    writer.write(scripted_results()[0])
    with pytest.raises(OutputError, match="disk on fire"):
        for r in scripted_results() * 50:  # the error must stop the producer, not deadlock it
            writer.write(r)
    writer.abort()
    assert bad.events == ["open", "abort"]


def test_os_error_from_a_sink_becomes_one_line_output_error(tmp_path):
    bad = RecordingSink(fail_on=1, error=OSError(28, "No space left on device"))
    writer = AsyncWriter([bad])
    writer.open(video_info(), CATEGORIES)
    with pytest.raises(OutputError) as info:
        for r in scripted_results():
            writer.write(r)
        writer.close()
    assert str(info.value) == "recording output (<memory>): No space left on device"
    assert isinstance(info.value.__cause__, OSError)


def test_back_pressure_bounds_the_queue():
    gate = threading.Event()
    slow = RecordingSink(gate=gate)
    writer = AsyncWriter([slow], max_queue=2)
    writer.open(video_info(), CATEGORIES)
    results = scripted_results(with_image=False)
    accepted: list[int] = []

    def produce() -> None:
        for r in results:
            writer.write(r)
            accepted.append(r.frame_index)

    producer = threading.Thread(target=produce)
    producer.start()
    deadline = time.monotonic() + 10
    while len(accepted) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.4)
    # the worker holds frame 0 (blocked in the sink), the queue holds 2 more: the producer waits on frame 3
    assert accepted == [0, 1, 2]
    assert producer.is_alive() and writer.queue_depth == 2
    gate.set()
    producer.join(10)
    writer.close()
    assert accepted == slow.seen == list(range(len(results)))
    assert writer.blocked_seconds > 0.3


def test_parallel_sinks_write_the_same_frame_at_the_same_time():
    """Two sinks meet at a barrier inside write(): only possible if they run concurrently. Sequential
    writing would break the barrier (timeout) and surface as the writer's error."""
    barrier = threading.Barrier(2, timeout=10)

    class Meeting(RecordingSink):
        def write(self, result: FrameResult) -> None:
            barrier.wait()
            super().write(result)

    a, b = Meeting(), Meeting()
    a.kind, b.kind = "a", "b"
    results = scripted_results(with_image=False)
    with AsyncWriter([a, b], max_queue=2) as writer:
        assert writer.parallel
        writer.open(video_info(), CATEGORIES)
        for r in results:
            writer.write(r)
    assert a.seen == b.seen == list(range(len(results)))
    assert a.threads == {"gsam2-writer:a"} and b.threads == {"gsam2-writer:b"}
    assert writer.frames_written == len(results)
    assert not AsyncWriter([a, b], parallel=False).parallel and not AsyncWriter([a]).parallel


def test_writer_rejects_bad_queue_size_and_misuse(tmp_path):
    with pytest.raises(ConfigError, match="queue size must be >= 1, got 0"):
        AsyncWriter([], max_queue=0)
    writer = AsyncWriter([RecordingSink()])
    with pytest.raises(OutputError, match="not open"):
        writer.write(scripted_results()[0])


def test_open_failure_aborts_the_sinks_already_opened(tmp_path):
    class FailingOpen(RecordingSink):
        def open(self, info, categories):
            raise PermissionError(13, "Permission denied")

    first = RecordingSink()
    writer = AsyncWriter([first, FailingOpen()])
    with pytest.raises(OutputError, match="Permission denied"):
        writer.open(video_info(), CATEGORIES)
    assert first.events == ["open", "abort"]


# -- output folder -------------------------------------------------------------------------------------------
def test_make_sinks_names_and_order(tmp_path):
    sinks = make_sinks(["mot", "masks", "MOT", " json "], tmp_path / "new" / "dir")
    assert [s.kind for s in sinks] == ["mot", "masks", "json"]
    assert (tmp_path / "new" / "dir").is_dir()
    assert [s.needs_image for s in make_sinks(SINK_KINDS, tmp_path)] == [True, False, False, False, False, True,
                                                                         False, False]


def test_make_sinks_unknown_name_is_config_error(tmp_path):
    with pytest.raises(ConfigError) as info:
        make_sinks(["masks", "voc"], tmp_path)
    assert str(info.value) == "unknown output 'voc'; choose from video, masks, json, mots, mot, yolo, coco, cvat"


def test_output_dir_that_is_a_file(tmp_path):
    target = tmp_path / "out"
    target.write_text("x")
    with pytest.raises(OutputError) as info:
        make_sinks(["json"], target)
    assert str(info.value) == f"output directory {target} is a file, not a directory"
    with pytest.raises(OutputError, match="cannot be created: Not a directory"):
        prepare_output_dir(target / "sub")


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
def test_output_dir_not_writable(tmp_path):
    target = tmp_path / "ro"
    target.mkdir()
    target.chmod(0o500)
    try:
        with pytest.raises(OutputError, match=f"output directory {target} is not writable"):
            make_sinks(["json"], target)
    finally:
        target.chmod(0o700)


def test_output_dir_not_writable_message(tmp_path, monkeypatch):
    """Same check without relying on permissions (root ignores them): the write probe fails."""
    import tempfile

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    with pytest.raises(OutputError) as info:
        prepare_output_dir(tmp_path)
    assert str(info.value) == f"output directory {tmp_path} is not writable: Permission denied"


def test_run_json_is_atomic_and_plain_json(tmp_path):
    path = write_run_json(tmp_path / "run.json", {"versions": {"x": "1"}, "fps": float("nan"),
                                                  "arr": np.arange(3), "info": video_info()})
    assert all_entries(tmp_path) == ["run.json"]
    doc = json.loads(path.read_text())
    assert doc == {"versions": {"x": "1"}, "fps": None, "arr": [0, 1, 2], "info": video_info().to_json()}


# -- drawing ---------------------------------------------------------------------------------------------------
def test_track_colors_are_fixed_and_distinct():
    colors = [track_color(i) for i in range(1, 41)]
    assert colors == [track_color(i) for i in range(1, 41)]
    assert track_color(0) == (0, 0, 0)
    arr = np.array(colors, dtype=np.float64)
    dist = np.linalg.norm(arr[:, None] - arr[None], axis=-1)
    np.fill_diagonal(dist, np.inf)
    assert dist.min() > 20  # no two of the first 40 ids look alike
    near = np.linalg.norm(arr[1:] - arr[:-1], axis=-1)
    assert near.min() > 100  # consecutive ids are clearly different


def test_annotate_blends_masks_and_leaves_the_input_alone():
    r = scripted_results(scale=3)[0]
    before = r.image.copy()
    out = annotate(r.image, r, alpha=0.5, outlines=False, boxes=False, labels=False)
    assert np.array_equal(r.image, before) and out.dtype == np.uint8 and out.shape == r.image.shape
    for k, tid in enumerate(r.track_ids):
        m = r.masks[k]
        want = np.rint(0.5 * r.image[m].astype(np.float32) + 0.5 * np.array(track_color(int(tid)), np.float32))
        assert np.array_equal(out[m], want.astype(np.uint8))
    bg = ~r.masks.any(axis=0)
    assert np.array_equal(out[bg], r.image[bg])
    full = annotate(r.image, r)
    assert not np.array_equal(full[bg], r.image[bg])  # boxes and captions are drawn outside the masks
    assert label_text(3, "person", 0.8712) == "3 person 0.87"


def test_annotate_rejects_a_mismatched_image():
    r = scripted_results()[0]
    with pytest.raises(ValueError, match="image is 10x10"):
        annotate(np.zeros((10, 10, 3), np.uint8), r)


def test_masks_png_opens_coloured_in_viewers(tmp_path):
    for s in make_sinks(["masks"], tmp_path):
        s.open(video_info(), CATEGORIES)
        s.write(scripted_results()[0])
        s.close()
    rgb = np.array(Image.open(tmp_path / "masks" / "00000.png").convert("RGB"))
    assert rgb.shape == (H, W, 3)
    assert {tuple(c) for c in rgb.reshape(-1, 3)} == {(0, 0, 0), (128, 0, 0), (0, 128, 0)}


def test_rle_is_computed_once_per_frame_for_all_sinks(tmp_path, monkeypatch):
    from gsam2_video.sinks import rle

    calls: list[int] = []
    real = rle.encode_label_strips

    def counting(labels, track_ids, boxes):
        calls.append(len(track_ids))
        return real(labels, track_ids, boxes)

    monkeypatch.setattr(rle, "encode_label_strips", counting)
    results = scripted_results()
    with AsyncWriter(make_sinks(["json", "mots", "mot", "masks"], tmp_path)) as writer:
        writer.open(video_info(), CATEGORIES)
        for r in results:
            writer.write(r)
    assert len(calls) == len(results)  # json and mots share one encoding per frame


def test_tracks_json_memory_does_not_hold_rle_strings(tmp_path):
    """Memory per visible track-frame is a few bytes (an offset), not the RLE string: long runs stay small."""
    import tracemalloc

    from test_sinks_data import ellipse

    from gsam2_video.sinks import FrameView, YtvisSink

    h, w, n = 120, 160, 10
    masks = np.stack([ellipse(60, 15 * k + 10, 20, 6, h=h, w=w) for k in range(n)])
    masks &= ~np.logical_or.accumulate(np.concatenate([np.zeros((1, h, w), bool), masks[:-1]]), axis=0)

    def result(i: int) -> FrameResult:
        return FrameResult(i, i / 30, h, w, np.arange(1, n + 1), np.roll(masks, i % 7, axis=1),
                           np.zeros((n, 4)), np.full(n, 0.5), np.zeros(n, np.int64), ["person"] * n)

    sink = YtvisSink(tmp_path)
    sink.open(VideoInfo("m", "m"), ["person"])
    for i in range(50):
        sink.write_view(FrameView(result(i)))
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for i in range(50, 450):
        sink.write_view(FrameView(result(i)))
    grown = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    # 4000 track-frames: ~8 bytes of offset each (plus array growth); keeping the RLE strings (str object
    # ~49 bytes + text, in a tuple in a dict) would cost well over 100 bytes each
    assert grown / 4000 < 32
    sink.close()
    doc = json.loads((tmp_path / "tracks.json").read_text())
    assert doc["videos"][0]["length"] == 450 and len(doc["annotations"]) == n
    assert all(seg is not None for a in doc["annotations"] for seg in a["segmentations"])
