"""``gsam2-video dataset --backend ray`` on a local Ray cluster started by the tests, with tiny random models
on the shared clips.

What only a real cluster shows: workers that load the models themselves (from the same paths), label
videos side by side and send results back for this process to write, giving the very bytes a local run
writes, failures included; and a worker SIGKILLed in the middle of a video, whose video is then labelled
again by a fresh worker, with the run still ending byte-identical to the local one. Without Ray installed,
``--backend ray`` must stop in one line before touching anything (simulated: ``import ray`` fails).

Cost: Ray's start (about 5 s here) is paid once per module; each Ray run then starts two workers, which
import torch and load the models (a few seconds). The kill test (which also checks the bytes) is the default
one, about 25 s here; the plain comparison plus a re-run is marked slow (about 17 s more). The local reference runs in-process with one torch
thread, as each Ray worker does (``--cpus-per-worker 1``), so the float reductions are the same.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from test_dataset_e2e import REPO, check_video, corrupt_clip, dataset_args, one_thread  # noqa: F401 (fixtures)
from test_dataset_resume import tree_bytes

FRAMES = ("--max-frames", "10", "--save-frames")
NAMES = ("carphone_pristine", "tree")


def clips(videos_dir: Path, corrupt: Path) -> list[Path]:
    return [videos_dir / "carphone_pristine.mp4", corrupt, videos_dir / "tree.avi"]


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[object]:
    """A local two-CPU Ray cluster for the module. Its processes inherit this environment: workers find the
    package through PYTHONPATH and never try the hub (HF_HUB_OFFLINE)."""
    ray = pytest.importorskip("ray")
    env = {"PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p),
           "HF_HUB_OFFLINE": "1"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
        yield ray
    finally:
        ray.shutdown()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture()
def local_reference(tiny_models: dict[str, Path], videos_dir: Path, corrupt_clip: Path,  # noqa: F811
                    tmp_path: Path, one_thread: None, capsys: pytest.CaptureFixture[str]) -> Path:  # noqa: F811
    from gsam2_video.cli import main

    out = tmp_path / "local"
    assert main(dataset_args(tiny_models, out, clips(videos_dir, corrupt_clip), *FRAMES)) == 1
    assert "2 done, 0 skipped, 1 failed of 3 videos; 20 frames" in capsys.readouterr().err
    return out


def assert_same_as_local(out: Path, reference: Path) -> None:
    got, want = tree_bytes(out), tree_bytes(reference)
    assert sorted(got) == sorted(want)
    assert [k for k in want if got[k] != want[k]] == []
    assert sum(check_video(out, name, 10, save_frames=True) for name in NAMES) > 0
    (failure,) = [json.loads(line) for line in (out / "failures.jsonl").read_text().splitlines()]
    assert (failure["video"], failure["error"]) == ("vtest_head", "SourceError")


def watch_workers(monkeypatch: pytest.MonkeyPatch, on_status: Callable[..., None]) -> None:
    """Every RayBackend the command builds reports worker status to ``on_status``, polled every 50 ms."""
    from gsam2_video.dataset.ray_backend import RayBackend

    original = RayBackend.__init__

    def with_watcher(self: RayBackend, *args: object, **kwargs: object) -> None:
        original(self, *args, **kwargs)
        self.on_status = on_status
        self.options = dataclasses.replace(self.options, poll_seconds=0.05)

    monkeypatch.setattr(RayBackend, "__init__", with_watcher)


@pytest.mark.slow
def test_ray_backend_writes_the_bytes_of_a_local_run(ray_cluster: object, tiny_models: dict[str, Path],
                                                     videos_dir: Path, corrupt_clip: Path,  # noqa: F811
                                                     tmp_path: Path, local_reference: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    from gsam2_video.cli import main

    out = tmp_path / "ray"
    # three workers on two CPUs: the third never gets a place, and must not keep the run from ending
    args = dataset_args(tiny_models, out, clips(videos_dir, corrupt_clip), *FRAMES, "--backend", "ray",
                        "--workers", "3")
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "2 done, 0 skipped, 1 failed of 3 videos; 20 frames" in err and "Traceback" not in err
    assert_same_as_local(out, local_reference)
    report = json.loads((out / "run.json").read_text())
    assert (report["backend"], report["summary"]["retried"]) == ("ray", 0)
    # a re-run finds everything done (the corrupt clip fails again) and starts no worker
    assert main(args) == 1
    assert "0 done, 2 skipped, 1 failed of 3 videos" in capsys.readouterr().err


def test_worker_killed_mid_video_is_retried_and_the_output_is_unchanged(
        ray_cluster: object, tiny_models: dict[str, Path], videos_dir: Path,
        corrupt_clip: Path, tmp_path: Path, local_reference: Path,  # noqa: F811
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from gsam2_video.cli import main
    from gsam2_video.dataset.ray_backend import WorkerStatus

    killed: list[WorkerStatus] = []

    def kill_once(status: WorkerStatus) -> None:
        # SIGKILL the worker labelling tree.avi once it has labelled 3 of its 10 frames
        if not killed and status.video == "tree" and status.frames >= 3:
            killed.append(status)
            os.kill(status.pid, signal.SIGKILL)

    watch_workers(monkeypatch, kill_once)
    out = tmp_path / "ray_killed"
    args = dataset_args(tiny_models, out, clips(videos_dir, corrupt_clip), *FRAMES, "--backend", "ray",
                        "--workers", "2", "--max-retries", "1")
    assert main(args) == 1
    err = capsys.readouterr().err
    (status,) = killed
    assert (status.attempt, status.pid != os.getpid()) == (0, True) and 3 <= status.frames < 10
    assert "tree: Ray worker" in err and f"(pid {status.pid}" in err
    assert "died while labelling it; retrying on another worker (attempt 2 of 2)" in err
    assert "2 done, 0 skipped, 1 failed of 3 videos; 20 frames" in err
    report = json.loads((out / "run.json").read_text())
    assert report["summary"]["retried"] == 1
    # two, plus one in place of the killed one unless the other worker was idle and took the video first
    assert report["backend_stats"]["workers_started"] in (2, 3)
    assert_same_as_local(out, local_reference)
    assert not (out / ".partial").exists()


@pytest.mark.slow
def test_a_video_whose_worker_dies_too_often_fails_alone(
        ray_cluster: object, tiny_models: dict[str, Path], videos_dir: Path, tmp_path: Path,
        one_thread: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: F811
    from gsam2_video.cli import main
    from gsam2_video.dataset.ray_backend import WorkerStatus

    killed: list[int] = []

    def kill_tree(status: WorkerStatus) -> None:
        if status.video == "tree" and status.frames >= 2 and status.pid not in killed:
            killed.append(status.pid)
            os.kill(status.pid, signal.SIGKILL)

    watch_workers(monkeypatch, kill_tree)
    out = tmp_path / "out"
    inputs = [videos_dir / "tree.avi", videos_dir / "carphone_pristine.mp4"]
    args = dataset_args(tiny_models, out, inputs, *FRAMES, "--backend", "ray", "--workers", "2", "--max-retries", "1")
    assert main(args) == 1
    err = capsys.readouterr().err
    assert len(killed) == 2 and "tree: Ray worker" in err and "no retries left" in err
    assert "1 done, 0 skipped, 1 failed of 2 videos; 10 frames" in err
    (failure,) = [json.loads(line) for line in (out / "failures.jsonl").read_text().splitlines()]
    assert (failure["video"], failure["error"]) == ("tree", "WorkerDied")
    assert "the Ray worker labelling it died 2 times" in failure["message"]
    check_video(out, "carphone_pristine", 10, save_frames=True)
    assert not (out / "Annotations" / "tree").exists() and not (out / ".partial").exists()


@pytest.mark.slow
def test_models_that_do_not_load_on_the_workers_stop_the_run(ray_cluster: object, tmp_path: Path,
                                                            videos_dir: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    from gsam2_video.cli import main

    out = tmp_path / "out"
    code = main(["dataset", str(videos_dir / "tree.avi"), "--out", str(out), "--prompt", "tree", "--device", "cpu",
                 "--detector", str(tmp_path / "no-detector"), "--no-progress", "--backend", "ray", "--workers", "1"])
    err = capsys.readouterr().err
    assert code == 2 and "no-detector" in err and "Traceback" not in err
    assert (out / "failures.jsonl").read_text() == "" and not (out / "Annotations" / "tree").exists()


def test_without_ray_the_backend_fails_in_one_line(tmp_path: Path, videos_dir: Path,
                                                   monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    from gsam2_video.cli import main

    monkeypatch.setitem(sys.modules, "ray", None)  # makes `import ray` raise ImportError
    out = tmp_path / "out"
    code = main(["dataset", str(videos_dir / "tree.avi"), "--out", str(out), "--prompt", "tree",
                 "--backend", "ray", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert "--backend ray needs Ray, which is not installed; install it with: pip install 'gsam2-video[ray]'" in err
    assert not out.exists()


@pytest.mark.parametrize("extra", [["--workers", "2"], ["--gpus-per-worker", "1"], ["--ray-address", "auto"]])
def test_ray_options_need_the_ray_backend(tmp_path: Path, videos_dir: Path, extra: list[str],
                                         capsys: pytest.CaptureFixture[str]) -> None:
    from gsam2_video.cli import main

    code = main(["dataset", str(videos_dir / "tree.avi"), "--out", str(tmp_path / "o"), "--prompt", "tree", *extra])
    assert code == 2
    assert "need --backend ray" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
