"""Kill-and-resume: a dataset run killed with SIGKILL in the middle of a video, then re-run, must give the
same bytes as a run that was never interrupted.

The run to be killed is always the real CLI in a child process (SIGKILL leaves no chance to clean up). The
default-suite test runs the uninterrupted reference and the resume in-process (same code, one torch thread
like the child) to stay fast; the slow test runs everything as CLI processes and kills twice (inside the
first video, then inside the second) before the final run.

Only ``run.json`` files are left out of the byte comparison: they hold wall-clock start/finish times,
per-stage timings and software versions, which differ between any two runs by design. Every other file
(PNGs, JPEGs, meta.json, instances.json, per-video records, failures.jsonl) must be identical.
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from test_dataset_e2e import REPO, check_video, dataset_args, dataset_cmd, env, one_thread, run  # noqa: F401 (fixture)

FIRST, SECOND = "carphone_pristine", "tree"
EXTRA = ("--max-frames", "10", "--save-frames")


def tree_bytes(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` except run.json (see the module docstring) and the lock file."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name not in ("run.json", ".lock")}


def inputs(videos_dir: Path) -> list[Path]:
    return [videos_dir / f"{FIRST}.mp4", videos_dir / f"{SECOND}.avi"]


def run_in_process(models: dict[str, Path], out: Path, videos_dir: Path) -> int:
    from gsam2_video.cli import main

    return main(dataset_args(models, out, inputs(videos_dir), *EXTRA))


def _has_frames(out: Path, video: str) -> bool:
    partial = out / ".partial" / video / "JPEGImages"
    return partial.is_dir() and any(partial.iterdir())


def kill_when(models: dict[str, Path], out: Path, videos_dir: Path, ready: Callable[[], bool]) -> None:
    """Start the CLI and SIGKILL it as soon as ``ready()`` holds (polled every 5 ms)."""
    victim = subprocess.Popen(dataset_cmd(models, out, inputs(videos_dir), *EXTRA), stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True, env=env(), cwd=REPO)
    try:
        deadline = time.monotonic() + 300
        while not ready():
            if victim.poll() is not None:
                pytest.fail(f"the run ended before it could be killed mid-video:\n{victim.stderr.read()}")
            if time.monotonic() > deadline:
                pytest.fail("the run never reached the point where it should be killed")
            time.sleep(0.005)
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=60)
    finally:
        if victim.poll() is None:
            victim.kill()
            victim.wait()
    assert victim.returncode == -signal.SIGKILL


def kill_mid_second_video(models: dict[str, Path], out: Path, videos_dir: Path) -> None:
    """SIGKILL the CLI once the first video is published and the second has frames on disk."""
    kill_when(models, out, videos_dir,
              lambda: (out / "runs" / FIRST / "objects.json").is_file() and _has_frames(out, SECOND))
    # killed mid-video: the first video is published, the second exists only as temporary debris
    assert (out / "runs" / FIRST / "objects.json").is_file()
    assert not (out / "runs" / SECOND).exists() and not (out / "Annotations" / SECOND).exists()
    assert (out / ".partial" / SECOND).is_dir()


def assert_same_tree(got_root: Path, want_root: Path) -> None:
    got, want = tree_bytes(got_root), tree_bytes(want_root)
    assert sorted(got) == sorted(want)
    assert [k for k in want if got[k] != want[k]] == []
    check_video(got_root, SECOND, 10, save_frames=True)


@pytest.mark.usefixtures("one_thread")
def test_sigkill_mid_video_then_resume_is_byte_identical(tiny_models: dict[str, Path],
                                                         videos_dir: Path, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    reference = tmp_path / "reference"
    assert run_in_process(tiny_models, reference, videos_dir) == 0
    out = tmp_path / "killed"
    kill_mid_second_video(tiny_models, out, videos_dir)
    capsys.readouterr()
    assert run_in_process(tiny_models, out, videos_dir) == 0
    assert "1 done, 1 skipped, 0 failed of 2 videos" in capsys.readouterr().err
    assert_same_tree(out, reference)


@pytest.mark.slow
def test_sigkill_twice_all_cli_processes(tiny_models: dict[str, Path],
                                             videos_dir: Path, tmp_path: Path) -> None:
    reference = tmp_path / "reference"
    proc = run(dataset_cmd(tiny_models, reference, inputs(videos_dir), *EXTRA))
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "killed"
    # first killed inside the first video: nothing is published, the next run starts that video over
    kill_when(tiny_models, out, videos_dir, lambda: _has_frames(out, FIRST))
    assert not (out / "runs" / FIRST).exists() and not (out / "Annotations" / FIRST).exists()
    # then killed inside the second video, and finally run to the end
    kill_mid_second_video(tiny_models, out, videos_dir)
    resumed = run(dataset_cmd(tiny_models, out, inputs(videos_dir), *EXTRA))
    assert resumed.returncode == 0, resumed.stderr
    assert "1 done, 1 skipped, 0 failed of 2 videos" in resumed.stderr
    assert_same_tree(out, reference)
