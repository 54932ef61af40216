"""``--shard I/N`` and ``--merge DIR``: job-array runs that share one output folder.

The promise under test: N shard runs (any order, side by side) followed by one merge leave exactly the
files one run over all inputs leaves, byte for byte (``run.json`` reports aside); shards stay out of each
other's way and out of the set-wide files; a shard's split never depends on list order; the merge folds the
shards' failures and removes what killed shards left behind. The scripted tracker of test_dataset_layout.py
makes these fast and exact; one end-to-end run on the shared clips with tiny random models goes through the
CLI.
"""

from __future__ import annotations

import hashlib
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from test_dataset_e2e import check_video, dataset_args, one_thread  # noqa: F401 (fixture)
from test_dataset_layout import ScriptedTracker, make_videos, obj, tree, write_video

from gsam2_video.dataset.inputs import JobDefaults, collect_jobs
from gsam2_video.dataset.layout import DatasetLayout
from gsam2_video.dataset.merge import merge_dataset
from gsam2_video.dataset.runner import DatasetRunner, RunnerOptions
from gsam2_video.dataset.shard import Shard, shard_of
from gsam2_video.errors import ConfigError, OutputError

PROMPT = "person. car. dog."


def make_set(folder: Path) -> list[str]:
    """Six scripted videos (alpha, beta from test_dataset_layout plus four more) and one that crashes."""
    make_videos(folder)
    for k, name in enumerate(("gamma", "delta", "epsilon", "zeta")):
        write_video(folder, name, 3 + k, [obj(k + 1, "person", 0, 3, [k, k, k + 5, k + 6], dx=1),
                                          obj(9, "dog", 1, 3 + k, [12, 2, 20, 9])])
    write_video(folder, "omega", 5, [obj(1, "car", 0, 5, [1, 1, 6, 6])], crash_at=2)
    return ["alpha", "beta", "delta", "epsilon", "gamma", "omega", "zeta"]


def run(folder: Path, out: Path, shard: Shard | None = None, tracker: ScriptedTracker | None = None):
    tracker = tracker or ScriptedTracker()
    jobs = collect_jobs([str(folder)], JobDefaults(prompt=PROMPT))
    runner = DatasetRunner(lambda: tracker, DatasetLayout(out), RunnerOptions(save_frames=True, progress=False),
                           {"detector": "scripted"}, shard=shard)
    return runner.run(jobs), tracker


# -- the split -----------------------------------------------------------------------------------------------
def test_shard_is_sha256_of_the_name_and_partitions_any_list() -> None:
    for name in ("tree", "carphone_pristine", "vidéo 1"):
        digest = hashlib.sha256(name.encode()).hexdigest()
        assert shard_of(name, 7) == int(digest[:16], 16) % 7
    assert [shard_of(n, 4) for n in ("tree", "carphone_pristine", "vtest", "bikes")] == [2, 0, 1, 0]

    class Job:
        def __init__(self, name: str) -> None:
            self.name = name

    jobs = [Job(f"clip_{i:03d}") for i in range(200)]
    for n in (1, 2, 3, 8):
        parts = [Shard(i, n).select(jobs) for i in range(n)]
        assert sorted(j.name for p in parts for j in p) == sorted(j.name for j in jobs)  # each in exactly one
        assert all(p == sorted(p, key=jobs.index) for p in parts)  # input order kept
        if n == 8:
            assert all(12 <= len(p) <= 40 for p in parts)  # about even: 25 each on average
    # stable under reordering and under adding inputs: a video never changes shard
    shard = Shard(1, 3)
    before = {j.name for j in shard.select(jobs[:100])}
    after = {j.name for j in shard.select(list(reversed(jobs)))}
    assert before == {n for n in after if n < "clip_100"}


@pytest.mark.parametrize("text, message", [
    ("4/4", "need 0 <= I < N"), ("1/0", "need 0 <= I < N"), ("-1/2", "expected I/N"), ("a/b", "expected I/N"),
    ("2", "expected I/N"),
])
def test_bad_shard_specs(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Shard.parse(text)
    assert Shard.parse(" 3 / 4 ") == Shard(3, 4) and str(Shard(3, 4)) == "3/4" and Shard(3, 4).label == "3-of-4"


# -- shards and merge ----------------------------------------------------------------------------------------
def test_union_of_shard_runs_plus_merge_is_byte_identical_to_one_run(tmp_path: Path) -> None:
    names = make_set(tmp_path / "in")
    reference = tmp_path / "one_run"
    summary, _ = run(tmp_path / "in", reference)
    assert (summary.done, summary.failed) == (6, 1)

    out, count = tmp_path / "sharded", 3
    assert sorted({shard_of(n, count) for n in names}) == [0, 1, 2]  # every shard has work
    labelled: list[str] = []
    for index in (2, 0, 1):  # any order
        summary, tracker = run(tmp_path / "in", out, Shard(index, count))
        assert tracker.calls == [n for n in names if shard_of(n, count) == index]
        assert summary.total == len(tracker.calls)
        labelled += tracker.calls
        # shards leave the set-wide files to the merge and keep their logs apart
        assert not (out / "meta.json").exists() and not (out / "instances.json").exists()
        assert not (out / "failures.jsonl").exists() and not (out / "run.json").exists()
        assert (out / "shards" / f"{index}-of-{count}" / "run.json").is_file()
    assert sorted(labelled) == names
    shard_failures = [json.loads(line)["video"] for p in sorted((out / "shards").glob("*/failures.jsonl"))
                      for line in p.read_text().splitlines()]
    assert shard_failures == ["omega"]

    merged = merge_dataset(DatasetLayout(out))
    assert (merged.videos, merged.shard_runs, [f["video"] for f in merged.failures]) == (6, 3, ["omega"])
    assert merged.frames == 6 + 4 + 3 + 4 + 5 + 6
    assert not (out / "shards").exists()
    assert tree(out) == tree(reference)
    report = json.loads((out / "run.json").read_text())
    assert report["kind"] == "dataset-merge"
    assert sorted(r["shard"]["index"] for r in report["shards"]) == [0, 1, 2]


def test_shards_running_at_the_same_time_then_merge_equal_one_run(tmp_path: Path) -> None:
    """Three shards label side by side in threads (each holds its own locks, as separate processes would)."""
    make_set(tmp_path / "in")
    reference = tmp_path / "one_run"
    run(tmp_path / "in", reference)
    out = tmp_path / "sharded"
    with ThreadPoolExecutor(3) as pool:
        summaries = [f.result()[0] for f in [pool.submit(run, tmp_path / "in", out, Shard(i, 3)) for i in range(3)]]
    assert sum(s.done for s in summaries) == 6 and sum(s.failed for s in summaries) == 1
    merge_dataset(DatasetLayout(out))
    assert tree(out) == tree(reference)


def test_shards_share_a_folder_but_exclude_other_runs(tmp_path: Path) -> None:
    layout = DatasetLayout(tmp_path / "out")
    with layout.locked(Shard(0, 2)), DatasetLayout(tmp_path / "out").locked(Shard(1, 2)):
        with pytest.raises(OutputError, match=r"in use by another .* \(shard 0/2 is already running\)"), \
                DatasetLayout(tmp_path / "out").locked(Shard(0, 2)):
            pass
        with pytest.raises(OutputError, match=r"in use by another gsam2-video dataset run$"), \
                DatasetLayout(tmp_path / "out").locked():
            pass
        with pytest.raises(OutputError, match="in use by another"):
            merge_dataset(DatasetLayout(tmp_path / "out"))
        with pytest.raises(OutputError, match=r"with 2 shards; shard 1/3 would overlap it"), \
                DatasetLayout(tmp_path / "out").locked(Shard(1, 3)):
            pass
    with layout.locked(), pytest.raises(OutputError, match=r"\(a run without --shard, or a merge\)"), \
            DatasetLayout(tmp_path / "out").locked(Shard(0, 2)):  # all released: a full run holds the folder
        pass
    with layout.locked(Shard(0, 3)):  # a finished 2-way split does not block a new 3-way one
        pass


def test_merge_sweeps_killed_shard_debris_and_keeps_latest_failures(tmp_path: Path) -> None:
    names = make_set(tmp_path / "in")
    reference = tmp_path / "one_run"
    run(tmp_path / "in", reference)
    out, count = tmp_path / "sharded", 2
    for index in range(count):
        run(tmp_path / "in", out, Shard(index, count))
    # what a shard killed with SIGKILL leaves: a staging folder and half-written temporary files
    victim = names[0]
    (out / ".partial" / victim / "Annotations").mkdir(parents=True)
    (out / ".partial" / victim / "Annotations" / "00000.png").write_bytes(b"half")
    (out / "Annotations" / f".{victim}.k3x9q2ab.partial").mkdir()
    (out / ".meta.json.a1b2c3d4.partial").write_text("{")
    merged = merge_dataset(DatasetLayout(out))
    assert [f["video"] for f in merged.failures] == ["omega"]
    assert tree(out) == tree(reference)

    # the failed video is fixed and its shard re-run: the next merge drops the old failure
    write_video(tmp_path / "in", "omega", 5, [obj(1, "car", 0, 5, [1, 1, 6, 6])])
    summary, tracker = run(tmp_path / "in", out, Shard(shard_of("omega", count), count))
    assert "omega" in tracker.calls and summary.failed == 0 and summary.done == 1
    assert merge_dataset(DatasetLayout(out)).failures == []
    assert (out / "failures.jsonl").read_text() == ""
    assert "omega" in json.loads((out / "meta.json").read_text())["videos"]


# -- the command line ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("args, message", [
    (["--merge", "{tmp}/ds", "{tmp}/clip.mp4"], "--merge DIR takes no inputs, --manifest, --out or --shard"),
    (["--merge", "{tmp}/ds", "--out", "{tmp}/ds"], "--merge DIR takes no inputs"),
    (["--merge", "{tmp}/missing"], "no such dataset folder"),
    (["--merge", "{tmp}"], "not a gsam2-video dataset folder (it has no runs/ or shards/)"),
    (["{tmp}/clip.mp4", "--prompt", "car"], "dataset needs --out DIR (or --merge DIR after shard runs)"),
    (["{tmp}/clip.mp4", "--prompt", "car", "--out", "{tmp}/o", "--shard", "2/2"], "shard 2/2: need 0 <= I < N"),
])
def test_cli_errors(tmp_path: Path, args: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    from gsam2_video.cli import main

    (tmp_path / "ds").mkdir()
    (tmp_path / "clip.mp4").write_bytes(b"x")
    assert main(["dataset", *(a.format(tmp=tmp_path) for a in args)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not (tmp_path / "o").exists()


@pytest.mark.usefixtures("one_thread")
def test_cli_shards_then_merge_equal_one_run_on_the_shared_clips(tiny_models: dict[str, Path], videos_dir: Path,
                                                                  tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    from gsam2_video.cli import main

    inputs = [videos_dir / "carphone_pristine.mp4", videos_dir / "tree.avi"]
    extra = ("--max-frames", "6", "--save-frames")
    reference = tmp_path / "one_run"
    assert main(dataset_args(tiny_models, reference, inputs, *extra)) == 0
    out = tmp_path / "sharded"
    # with N = 4, carphone_pristine is in shard 0 and tree in shard 2; shards 1 and 3 have nothing to do
    for index in range(4):
        capsys.readouterr()
        assert main(dataset_args(tiny_models, out, inputs, *extra, "--shard", f"{index}/4")) == 0
        err = capsys.readouterr().err
        done = 1 if index in (0, 2) else 0
        assert f"shard {index}/4: {done} done, 0 skipped, 0 failed of {done} videos" in err
        assert f"when all 4 shards have finished, run: gsam2-video dataset --merge {out}" in err
    assert not (out / "meta.json").exists()
    assert main(["dataset", "--merge", str(out)]) == 0
    assert "merged 2 videos (12 frames" in capsys.readouterr().err
    assert tree(out) == tree(reference)
    for name in ("carphone_pristine", "tree"):
        check_video(out, name, 6, save_frames=True)
    # shards re-run after the merge find their videos done
    assert main(dataset_args(tiny_models, out, inputs, *extra, "--shard", "2/4")) == 0
    assert "shard 2/4: 0 done, 1 skipped" in capsys.readouterr().err


def test_help_documents_shards_merge_and_ray(capsys: pytest.CaptureFixture[str]) -> None:
    from gsam2_video.cli import main

    with pytest.raises(SystemExit):
        main(["dataset", "--help"])
    out = capsys.readouterr().out
    for text in ("--shard I/N", "--merge DIR", "--backend {local,ray}", "--ray-address ADDR", "--workers N",
                 "--gpus-per-worker F", "--max-retries N", "pip install 'gsam2-video[ray]'"):
        assert text in out
