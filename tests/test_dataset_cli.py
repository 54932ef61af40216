"""``gsam2-video dataset`` argument and set-up errors: one line, exit code 2, nothing loaded or written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gsam2_video.cli import main


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(["dataset", *args])
    err = capsys.readouterr().err
    return code, err


@pytest.fixture()
def clip(tmp_path: Path) -> Path:
    path = tmp_path / "clip.mp4"
    path.write_bytes(b"not decoded in these tests")
    return path


@pytest.mark.parametrize("args, message", [
    (["--out", "{tmp}/o"], "dataset needs INPUT paths or --manifest FILE"),
    (["{clip}", "--out", "{tmp}/o"], "inputs given on the command line need --prompt"),
    (["{clip}", "--out", "{tmp}/o", "--prompt", "person", "--classes", "car"],
     "classes to keep car not in the prompt's classes (person)"),
    (["{tmp}/*.webm", "--out", "{tmp}/o", "--prompt", "person"], "glob matches no files"),
    (["--manifest", "{tmp}/m.jsonl", "--out", "{tmp}/o"], "m.jsonl:1: unknown key 'fps'"),
    (["{clip}", "--out", "{clip}", "--prompt", "person"], "is a file, not a directory"),
])
def test_setup_errors_are_one_line(tmp_path: Path, clip: Path, capsys: pytest.CaptureFixture[str],
                                   args: list[str], message: str) -> None:
    (tmp_path / "m.jsonl").write_text(json.dumps({"source": "clip.mp4", "prompt": "person", "fps": 5}) + "\n")
    code, err = run_cli([a.format(tmp=tmp_path, clip=clip) for a in args], capsys)
    assert code == 2
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "o").exists()


def test_missing_model_stops_the_run_instead_of_failing_each_video(tmp_path: Path, clip: Path,
                                                                   capsys: pytest.CaptureFixture[str],
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    out = tmp_path / "o"
    code, err = run_cli([str(clip), "--out", str(out), "--prompt", "person", "--device", "cpu",
                         "--detector", str(tmp_path / "no-detector"), "--no-progress"], capsys)
    assert code == 2
    assert "no-detector" in err and "Traceback" not in err
    assert (out / "failures.jsonl").read_text() == ""
    assert json.loads((out / "run.json").read_text())["summary"]["failed"] == 0


def test_bad_option_values_exit_through_argparse(tmp_path: Path, clip: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    for bad in (["--min-track-length", "0"], ["--min-area", "-1"], ["--max-frames", "x"], ["--stride", "0"]):
        with pytest.raises(SystemExit) as exc:
            main(["dataset", str(clip), "--out", str(tmp_path / "o"), "--prompt", "p", *bad])
        assert exc.value.code == 2
        assert bad[0] in capsys.readouterr().err


def test_help_documents_layout_and_filters(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["dataset", "--help"])
    out = capsys.readouterr().out
    for text in ("--manifest", "--save-frames", "--min-area", "--min-track-length", "--keep-longest",
                 "--classes", "--detect-every", "Annotations/<video>/00000.png", "instances.json",
                 "keep at most N objects per video", "--max-live-objects"):
        assert text in out
