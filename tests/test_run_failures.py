"""A run that fails mid-way keeps every frame it finished (issue 16 item 1).

Faults are injected into a real ``gsam2-video track`` run (in-process, tiny random models loaded from disk):
an encoder that raises, a writer that hits ENOSPC, a source that dies after some frames, and a real file-size
limit (RLIMIT_FSIZE, what ``ulimit -f`` sets) in a subprocess. After each, every output that exists is read
back with the libraries users use (PIL, pycocotools, PyAV), run.json says ``"status": "failed"`` with the
reason and the frames done, stderr has one ``error:`` line and the exit code is non-zero.
"""

from __future__ import annotations

import errno
import json
import os
import resource
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from gsam2_video.cli import main
from gsam2_video.errors import OutputError, SourceError
from gsam2_video.sinks.video import VideoSink
from gsam2_video.sources.video import VideoFileSource

REPO = Path(__file__).resolve().parents[1]
FAIL_AT = 7  # the frame (source index) where each injected fault strikes
MAX_FRAMES = 12


def model_args(models: dict[str, Path]) -> list[str]:
    return ["--detector", str(models["detector"]), "--sam2", str(models["sam2"]), "--device", "cpu",
            "--box-threshold", "0.05", "--text-threshold", "0.05", "--max-live-objects", "4", "--detect-every", "4",
            "--no-progress"]


def track(out: Path, models: dict[str, Path], clip: Path, *extra: str) -> int:
    return main(["track", str(clip), "--prompt", "person. car.", "--out", str(out), "--max-frames",
                 str(MAX_FRAMES), "--save", "video,masks,json,mots,mot", *extra, *model_args(models)])


def video_frames(path: Path) -> int:
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


def check_kept_outputs(out: Path) -> dict[str, Any]:
    """Every kept output reads back; returns run.json. Frame counts per output are returned for the caller."""
    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "failed"
    assert run["interrupted"] is False
    counts: dict[str, int] = {}
    if (out / "masks").exists():
        pngs = sorted((out / "masks").glob("*.png"))
        for png in pngs:
            with Image.open(png) as img:
                np.array(img)  # decodes the whole file: a truncated PNG raises here
        counts["masks"] = len(pngs)
        assert [int(p.stem) for p in pngs] == list(range(len(pngs)))
    if (out / "tracks.json").exists():
        doc = json.loads((out / "tracks.json").read_text())
        counts["json"] = doc["videos"][0]["length"]
        for ann in doc["annotations"]:
            for seg in ann["segmentations"]:
                if seg is not None:
                    assert mask_utils.decode(seg).shape == (ann["height"], ann["width"])
    if (out / "video.mp4").exists():
        counts["video"] = video_frames(out / "video.mp4")
    if (out / "mot.txt").exists():
        mot = np.loadtxt(out / "mot.txt", delimiter=",", ndmin=2)
        counts["mot_last_frame"] = int(mot[:, 0].max()) if len(mot) else 0
    run["_counts"] = counts
    assert not list(out.glob(".*partial*")), "no temporary file may be left behind"
    return run


@pytest.fixture()
def clip(videos_dir: Path) -> Path:
    return videos_dir / "bikes.mp4"


def test_raising_encoder_keeps_every_finished_frame(tmp_path, tiny_models, clip, monkeypatch, capsys) -> None:
    """The encoder fails on frame FAIL_AT (the 'Not yet implemented in FFmpeg' error of the issue)."""
    original = VideoSink._start

    class FailingStream:
        def __init__(self, stream: Any) -> None:
            self._stream = stream
            self.calls = 0

        def __getattr__(self, name: str) -> Any:
            return getattr(self._stream, name)

        def encode(self, frame: Any) -> Any:
            if frame is not None:
                self.calls += 1
                if self.calls == FAIL_AT + 1:
                    raise av.error.PatchWelcomeError(-1163346256, "Not yet implemented in FFmpeg, patches welcome")
            return self._stream.encode(frame)

    def start(self: VideoSink, height: int, width: int) -> None:
        original(self, height, width)
        self._stream = FailingStream(self._stream)

    monkeypatch.setattr(VideoSink, "_start", start)
    out = tmp_path / "run"
    code = track(out, tiny_models, clip)
    err = capsys.readouterr().err
    assert code == 2
    lines = [line for line in err.splitlines() if "error:" in line]
    assert len(lines) == 1 and "cannot encode frame 7" in lines[0] and "kept 7 finished frames" in lines[0], err
    run = check_kept_outputs(out)
    assert run["failure"]["stage"] == "output"
    assert "Not yet implemented in FFmpeg" in run["failure"]["reason"]
    assert run["failure"]["frames_done"] == run["frames"]["written"] == FAIL_AT
    # the video holds the frames encoded before the failure; the other sinks run beside it (parallel lanes)
    # and finished frame 7 as it failed, then saw nothing more
    counts = run["_counts"]
    assert counts["video"] == FAIL_AT
    assert counts["masks"] == counts["json"] == FAIL_AT + 1
    assert counts["mot_last_frame"] <= FAIL_AT + 1  # 1-based: frame 7 (finished beside the failure) is 8


def test_enospc_from_the_mask_writer(tmp_path, tiny_models, clip, monkeypatch, capsys) -> None:
    original = Image.Image.save
    calls = {"n": 0}

    def save(self: Image.Image, fp: Any, *args: Any, **kwargs: Any) -> None:
        if str(fp).endswith(".png"):
            calls["n"] += 1
            if calls["n"] == FAIL_AT + 1:
                Path(fp).write_bytes(b"\x89PNG\r\n\x1a\n half")  # a half-written file, as a full disk leaves it
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(fp))
        original(self, fp, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "save", save)
    out = tmp_path / "run"
    code = track(out, tiny_models, clip)
    err = capsys.readouterr().err
    assert code == 2
    assert "No space left on device" in err and err.count("error:") == 1, err
    run = check_kept_outputs(out)
    assert run["failure"]["stage"] == "output"
    assert run["failure"]["frames_done"] == FAIL_AT
    counts = run["_counts"]
    assert counts["masks"] == FAIL_AT  # the half-written PNG of frame 7 is not published
    assert counts["json"] == FAIL_AT + 1  # written beside the masks (parallel lanes), it finished frame 7
    assert counts["video"] >= FAIL_AT  # the video sink runs first and had frame 7 already


def test_source_dying_mid_run_keeps_the_frames_done(tmp_path, tiny_models, clip, monkeypatch, capsys) -> None:
    original = VideoFileSource._produce

    def produce(self: VideoFileSource, stop: Any) -> Iterator[Any]:
        for frame in original(self, stop):
            if frame.index == FAIL_AT:
                raise SourceError(f"{self.name}: camera unplugged")
            yield frame

    monkeypatch.setattr(VideoFileSource, "_produce", produce)
    out = tmp_path / "run"
    code = track(out, tiny_models, clip, "--offline")
    err = capsys.readouterr().err
    assert code == 2
    assert "camera unplugged" in err and err.count("error:") == 1, err
    run = check_kept_outputs(out)
    assert run["failure"]["stage"] == "source"
    # offline mode held up to --detect-every frames for back-fill: they are final and written too
    assert run["frames"]["read"] == run["frames"]["written"] == FAIL_AT
    counts = run["_counts"]
    assert counts["video"] == counts["masks"] == counts["json"] == FAIL_AT


def test_file_size_limit_keeps_the_outputs_that_fit(tmp_path, tiny_models, videos_dir) -> None:
    """The issue's reproduction: under ``ulimit -f`` one output cannot be finished; the rest are kept."""
    out = tmp_path / "run"
    limit = 160_000  # bytes: the PNGs and run.json fit; the annotated video of 24 vtest frames does not

    def limit_files() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-m", "gsam2_video", "track", str(videos_dir / "vtest.avi"), "--prompt", "person.",
         "--out", str(out), "--max-frames", "24", "--save", "video,masks,json", *model_args(tiny_models)],
        capture_output=True, text=True, env=env, timeout=300, cwd=REPO, preexec_fn=limit_files, check=False)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.count("error:") == 1, proc.stderr
    assert "File too large" in proc.stderr
    run = check_kept_outputs(out)
    assert not (out / "video.mp4").exists()
    assert str(out / "video.mp4") in run["failure"]["outputs_lost"]
    done = run["failure"]["frames_done"]
    assert done > 0
    # a sink before the one that failed may also hold the frame the failure struck (complete, readable)
    assert run["_counts"]["masks"] in (done, done + 1)
    if "json" in run["_counts"]:
        assert run["_counts"]["json"] in (done, done + 1)
    else:
        assert str(out / "tracks.json") in run["failure"]["outputs_lost"]


# -- AsyncWriter.finish on its own (no models) ------------------------------------------------------------
class _Recorder:
    """A sink that records frames; fails on ``fail_on`` (write) or at close when ``close_fails``."""

    def __init__(self, kind: str, fail_on: int | None = None, close_fails: bool = False) -> None:
        from gsam2_video.sinks import Sink

        outer = self

        class _S(Sink):
            needs_image = False

            @property
            def outputs(self) -> list[str]:
                return [f"<{kind}>"]

            def open(self, info: Any, categories: list[str]) -> None:
                outer.events.append("open")

            def write(self, result: Any) -> None:
                if result.frame_index == fail_on:
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                outer.frames.append(result.frame_index)

            def close(self) -> None:
                if close_fails:
                    raise OSError(errno.EFBIG, os.strerror(errno.EFBIG))
                outer.events.append("close")

            def abort(self) -> None:
                outer.events.append("abort")

        _S.kind = kind
        self.sink = _S()
        self.frames: list[int] = []
        self.events: list[str] = []


def test_finish_keeps_every_output_that_can_close() -> None:
    from test_sinks_data import scripted_results, video_info

    from gsam2_video.sinks import AsyncWriter

    first, failing, last, broken = (_Recorder("first"), _Recorder("failing", fail_on=3), _Recorder("last"),
                                    _Recorder("broken", close_fails=True))
    writer = AsyncWriter([r.sink for r in (first, failing, last, broken)], max_queue=2)
    writer.open(video_info(), ["a", "b", "c"])
    try:
        for result in scripted_results():
            writer.write(result)
    except OutputError:
        pass  # write() fails fast once the worker has met the error; it may also meet it after the last write
    lost = writer.finish()
    assert isinstance(writer.error, OutputError) and "No space left on device" in str(writer.error)
    assert writer.frames_written == 3
    # the sinks write each frame side by side (parallel lanes): the healthy ones finished frame 3, nothing after
    assert first.frames == [0, 1, 2, 3] and failing.frames == [0, 1, 2] and last.frames == [0, 1, 2, 3]
    assert first.events == failing.events == last.events == ["open", "close"]  # closed, not aborted
    assert broken.events == ["open", "abort"]
    assert list(lost) == ["<broken>"] and "File too large" in lost["<broken>"]
    assert writer.finish() == {}  # once closed, nothing more to do
