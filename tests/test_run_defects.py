"""The small defects of issue 16 item 4, each with the behaviour a user sees.

Tiny frames run; a stopped reader is not "truncated" and missing frames count against what was asked; a
live stream stopped by its consumer does not announce a reconnect; a prompt class with no letters is named
in a warning; a dataset name too long for the file system, a missing source (of track, or any input of
dataset) and a bad output folder are reported before torch is imported.
"""

from __future__ import annotations

import json
import logging
import os
import resource
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from stream_media import remux_ts, serve_ts_over_http

from gsam2_video.cli import main
from gsam2_video.errors import ConfigError
from gsam2_video.prompts import parse_prompt
from gsam2_video.sources import open_source

REPO = Path(__file__).resolve().parents[1]


def model_args(models: dict[str, Path]) -> list[str]:
    return ["--detector", str(models["detector"]), "--sam2", str(models["sam2"]), "--device", "cpu",
            "--box-threshold", "0.05", "--text-threshold", "0.05", "--no-progress"]


@pytest.mark.parametrize("size", [1, 2, 3, 4])
def test_tiny_frames_run(tmp_path, tiny_models, size) -> None:
    """1x1 and 4x4 frames used to crash inside the detector's image processor (channel axis misread)."""
    frames = tmp_path / "frames"
    frames.mkdir()
    rng = np.random.default_rng(size)
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(frames / f"{i:03d}.png")
    out = tmp_path / "out"
    assert main(["track", str(frames), "--prompt", "person.", "--out", str(out), "--save", "masks,json",
                 *model_args(tiny_models)]) == 0
    pngs = sorted((out / "masks").glob("*.png"))
    assert len(pngs) == 3
    assert all(np.array(Image.open(p)).shape == (size, size) for p in pngs)
    assert json.loads((out / "run.json").read_text())["status"] == "completed"


@pytest.mark.parametrize("prefetch", [0, 8], ids=["same-thread", "reader-thread"])
def test_a_stopped_reader_is_not_truncated(videos_dir, caplog, prefetch) -> None:
    """What Ctrl-C does to the source: the consumer stops after 5 of 795 frames and closes it."""
    with caplog.at_level(logging.WARNING, logger="gsam2_video"):
        src = open_source(videos_dir / "vtest.avi", prefetch=prefetch)
        frames = iter(src)
        for _ in range(5):
            next(frames)
        frames.close()
        src.close()
    assert src.stats["frames_missing"] == 0
    assert not [r for r in caplog.records if "truncated" in r.getMessage()]


def test_missing_frames_count_against_what_was_asked(videos_dir, tmp_path, caplog) -> None:
    """A file cut after 3 frames, asked for 10: 7 missing, not the 792 the whole header declares."""
    path = tmp_path / "vtest_100k.avi"
    path.write_bytes((videos_dir / "vtest.avi").read_bytes()[:100_000])
    with caplog.at_level(logging.WARNING, logger="gsam2_video"), open_source(path, max_frames=10) as src:
        n = sum(1 for _ in src)
    assert n == 3
    assert src.stats["frames_missing"] == 7
    assert any("decoded 3 of 10" in r.getMessage() for r in caplog.records)


@pytest.fixture()
def http_ts(videos_dir: Path) -> Iterator[str]:
    data = remux_ts(videos_dir / "carphone_pristine.mp4")
    with serve_ts_over_http(data, "live.ts", content_length=False) as url:
        yield url


def test_live_stream_stopped_by_its_consumer_does_not_reconnect(http_ts, caplog) -> None:
    with caplog.at_level(logging.INFO, logger="gsam2_video"), \
            open_source(http_ts, live=True, max_frames=5, open_timeout=5.0, read_timeout=5.0) as src:
        n = sum(1 for _ in src)
    assert n == 5
    assert src.stats["reconnects"] == 0 and src.stats["stream_lost"] == 0
    assert not [r for r in caplog.records if "reconnect" in r.getMessage()]
    assert src.events == []


def test_a_class_with_no_letters_is_named_in_a_warning(caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="gsam2_video"):
        prompt = parse_prompt("person. \U0001F600. car.")
    assert prompt.classes == ("person", "car")
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "\U0001F600" in warnings[0]


def _cli_without_models(*args: str) -> tuple[int, str, list[str]]:
    """Run the CLI in a fresh interpreter; returns (exit code, stderr, heavy modules it had imported)."""
    code = ("import sys; from gsam2_video.cli import main; rc = main(sys.argv[1:]); "
            "print([m for m in ('torch', 'transformers') if m in sys.modules]); sys.exit(rc)")
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env,
                          timeout=120, check=False)
    return proc.returncode, proc.stderr, json.loads(proc.stdout.strip().replace("'", '"'))


def test_missing_source_is_reported_before_torch_is_imported(tmp_path) -> None:
    rc, err, heavy = _cli_without_models("track", str(tmp_path / "missing.mp4"), "--prompt", "person.")
    assert rc == 2 and heavy == []
    assert err.strip() == f"gsam2-video: error: {tmp_path / 'missing.mp4'}: no such file or directory"


def test_bad_output_folder_is_reported_before_torch_is_imported(tmp_path, videos_dir) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    rc, err, heavy = _cli_without_models("track", str(videos_dir / "tree.avi"), "--prompt", "tree.",
                                         "--out", str(blocker))
    assert rc == 2 and heavy == [] and "is a file, not a directory" in err and "Traceback" not in err


def test_dataset_name_too_long_is_reported_before_torch_is_imported(tmp_path, videos_dir) -> None:
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(json.dumps({"source": str(videos_dir / "tree.avi"), "prompt": "tree.",
                                    "name": "n" * 300}) + "\n")
    rc, err, heavy = _cli_without_models("dataset", "--manifest", str(manifest), "--out", str(tmp_path / "ds"))
    assert rc == 2 and heavy == []
    assert "300 bytes long" in err and "at most 200" in err and err.count("\n") == 1
    assert not (tmp_path / "ds").exists()


def _cli_timed(*args: str) -> tuple[int, str, list[str], float, float]:
    """:func:`_cli_without_models` plus the child's wall and CPU seconds (user + system, interpreter start
    included). CPU time is the bound the tests assert: importing torch alone costs several CPU seconds, while
    wall time on a shared machine also counts the other jobs' load."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    rc, err, heavy = _cli_without_models(*args)
    wall = time.monotonic() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return rc, err, heavy, wall, cpu


def test_dataset_missing_input_is_reported_before_torch_is_imported(tmp_path, videos_dir) -> None:
    """A manifest naming videos that are not there: one line naming the first (with its manifest line) and
    how many more, exit 2, before torch is imported and before the dataset folder is created; it used to
    surface only after the models loaded, as one failure per video."""
    manifest = tmp_path / "m.jsonl"
    rows = [{"source": str(videos_dir / "tree.avi")}, {"source": "gone.mp4"}, {"source": "also/gone.mp4"}]
    manifest.write_text("".join(json.dumps({**row, "prompt": "tree."}) + "\n" for row in rows))
    out = tmp_path / "ds"
    rc, err, heavy, wall, cpu = _cli_timed("dataset", "--manifest", str(manifest), "--out", str(out))
    assert rc == 2 and heavy == [], err
    assert err.strip() == (f"gsam2-video: error: {manifest}:2: {tmp_path / 'gone.mp4'}: no such file or "
                           f"directory (and 1 more unusable input)")
    assert cpu < 2.0, f"{cpu:.2f} s CPU ({wall:.2f} s wall)"
    assert not out.exists()


def test_dataset_missing_positional_input_is_reported_before_torch_is_imported(tmp_path, videos_dir) -> None:
    rc, err, heavy, wall, cpu = _cli_timed("dataset", str(videos_dir / "tree.avi"), str(tmp_path / "gone.mp4"),
                                           "--prompt", "tree.", "--out", str(tmp_path / "ds"))
    assert rc == 2 and heavy == [], err
    assert err.strip() == f"gsam2-video: error: {tmp_path / 'gone.mp4'}: no such file or directory"
    assert cpu < 2.0, f"{cpu:.2f} s CPU ({wall:.2f} s wall)"


def test_dataset_bad_output_folder_is_reported_before_torch_is_imported(tmp_path, videos_dir) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    rc, err, heavy, wall, cpu = _cli_timed("dataset", str(videos_dir / "tree.avi"), "--prompt", "tree.",
                                           "--out", str(blocker / "ds"))
    assert rc == 2 and heavy == [], err
    assert err.strip() == f"gsam2-video: error: output directory {blocker / 'ds'} cannot be created: Not a directory"
    assert cpu < 2.0, f"{cpu:.2f} s CPU ({wall:.2f} s wall)"


def test_dataset_inputs_that_cannot_be_labelled_are_named(tmp_path, videos_dir) -> None:
    """check_sources names each kind of unusable input the way a user would fix it."""
    from gsam2_video.dataset.inputs import JobDefaults, check_sources, collect_jobs
    from gsam2_video.errors import SourceError

    (tmp_path / "empty.mp4").write_bytes(b"")
    (tmp_path / "no_images").mkdir()
    (tmp_path / "no_images" / "notes.txt").write_text("x")
    cases = {
        "empty.mp4": f"{tmp_path / 'empty.mp4'}: file is empty (0 bytes)",
        "no_images": f"{tmp_path / 'no_images'}: folder has no images",
        "gone.mp4": f"{tmp_path / 'gone.mp4'}: no such file or directory",
        "frames/*.jpg": f"{tmp_path / 'frames/*.jpg'}: glob matches no images",
    }
    (tmp_path / "frames").mkdir()
    (tmp_path / "frames" / "a.txt").write_text("x")
    for source, message in cases.items():
        manifest = tmp_path / "m.jsonl"
        manifest.write_text(json.dumps({"source": source, "prompt": "tree."}) + "\n")
        jobs = collect_jobs([], JobDefaults(), manifest)  # collecting names and settings does not look
        with pytest.raises(SourceError) as e:
            check_sources(jobs)
        assert str(e.value) == f"{manifest}:1: {message}"
    good = [str(videos_dir / "tree.avi"), "https://example.com/clip.mp4"]  # a remote file is left to the run
    check_sources(collect_jobs(good, JobDefaults(prompt="tree.")))
    if os.geteuid() != 0:  # root reads anything
        locked = tmp_path / "locked.mp4"
        locked.write_bytes(b"x")
        locked.chmod(0)
        with pytest.raises(SourceError, match="locked.mp4: cannot be read"):
            check_sources(collect_jobs([str(locked)], JobDefaults(prompt="tree.")))


def test_dataset_names_within_the_limit_are_accepted(tmp_path, videos_dir) -> None:
    from gsam2_video.dataset.inputs import MAX_NAME_BYTES, JobDefaults, collect_jobs

    for length, ok in ((MAX_NAME_BYTES, True), (MAX_NAME_BYTES + 1, False)):
        manifest = tmp_path / f"m{length}.jsonl"
        manifest.write_text(json.dumps({"source": str(videos_dir / "tree.avi"), "prompt": "tree.",
                                        "name": "n" * length}) + "\n")
        if ok:
            assert collect_jobs([], JobDefaults(), manifest)[0].name == "n" * length
        else:
            with pytest.raises(ConfigError):
                collect_jobs([], JobDefaults(), manifest)


def test_ctrl_c_on_a_healthy_file_is_not_reported_truncated(tmp_path, tiny_models, videos_dir, monkeypatch,
                                                            capsys) -> None:
    """The issue's report: Ctrl-C after a few frames of vtest.avi warned 'truncated' and run.json counted the
    rest of the file as missing. Ctrl-C is raised where it usually lands, in the main thread mid-loop."""
    from gsam2_video.sinks import AsyncWriter

    original = AsyncWriter.write
    calls = {"n": 0}

    def write(self: AsyncWriter, result: object) -> None:
        calls["n"] += 1
        if calls["n"] == 6:
            raise KeyboardInterrupt
        original(self, result)

    monkeypatch.setattr(AsyncWriter, "write", write)
    out = tmp_path / "out"
    code = main(["track", str(videos_dir / "vtest.avi"), "--prompt", "person.", "--out", str(out), "--save",
                 "masks,json", "--max-frames", "40", "--offline", "--detect-every", "4", *model_args(tiny_models)])
    err = capsys.readouterr().err
    assert code == 130
    assert "truncated" not in err and "interrupted: closing outputs" in err
    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "interrupted" and run["interrupted"] is True
    assert run["source_stats"]["frames_missing"] == 0
    assert run["frames"]["requested"] == 40
    pngs = sorted((out / "masks").glob("*.png"))
    assert len(pngs) == run["frames"]["written"] >= 5  # the frames held for back-fill were written too
