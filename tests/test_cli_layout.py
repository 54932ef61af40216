"""The CLI package: commands are sibling modules with one interface, shared options mean one thing.

Why these tests: a command module that imports the top-level CLI brings back the import cycle; a flag
defined twice drifts into two meanings (``--max-objects`` once capped live tracks in ``track`` and filtered
objects per video in ``dataset``). Both are caught here without running a model.
"""

from __future__ import annotations

import argparse
import ast
import importlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from gsam2_video.cli import COMMANDS, build_parser, main
from gsam2_video.cli.options import DEPRECATIONS, tracker_config

REPO = Path(__file__).resolve().parents[1]
CLI_DIR = REPO / "gsam2_video" / "cli"
# options whose wording is command-specific although the meaning is the same (checked: same dest and type)
WORDED_PER_COMMAND = {"--out", "--prompt", "--save", "-h", "--help"}  # --save: each command lists its outputs


def command_parsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(sub.choices)


def test_every_module_of_the_package_is_a_registered_command_with_the_same_interface() -> None:
    modules = sorted(p.stem for p in CLI_DIR.glob("*.py") if p.stem not in ("__init__", "options"))
    assert modules == sorted(COMMANDS)
    assert list(command_parsers()) == list(COMMANDS)
    for name in COMMANDS:
        module = importlib.import_module(f"gsam2_video.cli.{name}")
        assert callable(module.add_parser) and callable(module.run)


@pytest.mark.parametrize("module", ["options", *COMMANDS])
def test_each_module_imports_alone_in_a_fresh_interpreter(module: str) -> None:
    proc = subprocess.run([sys.executable, "-c", f"import gsam2_video.cli.{module} as m; print(m.__name__)"],
                          capture_output=True, text=True, cwd=REPO, timeout=120, check=False,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"gsam2_video.cli.{module}"


@pytest.mark.parametrize("module", ["options", *COMMANDS])
def test_commands_import_only_options_from_the_cli_package(module: str) -> None:
    tree = ast.parse((CLI_DIR / f"{module}.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1:  # from . import x / from .x import y
                assert node.module == "options", f"{module}.py imports .{node.module or ''}"
            if node.level == 2:
                assert node.module != "cli" and not (node.module or "").startswith("cli."), node.module
            if node.level == 0:
                assert not (node.module or "").startswith("gsam2_video.cli"), node.module
        if isinstance(node, ast.Import):
            assert not any(a.name.startswith("gsam2_video.cli") for a in node.names)


def test_a_flag_shared_by_commands_means_the_same_thing() -> None:
    seen: dict[str, tuple[str, argparse.Action]] = {}
    shared = 0
    for command, parser in command_parsers().items():
        for action in parser._actions:
            if action.help == argparse.SUPPRESS:
                continue  # hidden old spellings: tested below
            for flag in action.option_strings:
                if flag not in seen:
                    seen[flag] = (command, action)
                    continue
                shared += 1
                other = seen[flag][1]
                where = f"{flag} in {seen[flag][0]} and {command}"
                assert action.dest == other.dest, where
                assert action.default == other.default, where
                assert getattr(action.type, "__qualname__", None) == getattr(other.type, "__qualname__", None), where
                if flag not in WORDED_PER_COMMAND:
                    assert (action.help, action.choices, action.nargs, action.metavar) == \
                        (other.help, other.choices, other.nargs, other.metavar), where
    assert shared >= 15  # the model, tracking and decoding options really are shared
    for command in ("track", "dataset"):
        flags = {f for a in command_parsers()[command]._actions if a.help != argparse.SUPPRESS
                 for f in a.option_strings}
        assert "--max-live-objects" in flags and "--max-objects" not in flags
    assert "--keep-longest" in seen and seen["--keep-longest"][0] == "dataset"


def test_track_max_objects_is_a_deprecated_spelling_of_the_live_cap() -> None:
    args = build_parser().parse_args(["track", "clip.mp4", "--prompt", "person", "--max-objects", "3"])
    assert args.max_live_objects == 3
    assert tracker_config(args).association.max_objects == 3
    assert getattr(args, DEPRECATIONS) == ["--max-objects is deprecated; use --max-live-objects (same meaning)"]
    plain = build_parser().parse_args(["track", "clip.mp4", "--prompt", "person", "--max-live-objects", "4"])
    assert plain.max_live_objects == 4 and not hasattr(plain, DEPRECATIONS)
    assert tracker_config(plain).association.max_objects == 4


def test_deprecation_is_logged_as_one_warning_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["track", str(tmp_path / "missing.mp4"), "--prompt", "person", "--max-objects", "3",
                 "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err[0] == "gsam2-video: WARNING: --max-objects is deprecated; use --max-live-objects (same meaning)"
    assert len(err) == 2 and "missing.mp4" in err[1] and "Traceback" not in err[1]


def test_dataset_max_objects_is_refused_naming_both_successors(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["dataset", "clip.mp4", "--out", str(tmp_path / "o"), "--prompt", "person", "--max-objects", "2"])
    assert exc.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[0].startswith("usage: gsam2-video dataset")
    assert lines[-1].startswith("gsam2-video dataset: error: --max-objects: renamed")
    assert "--keep-longest N" in lines[-1] and "--max-live-objects N" in lines[-1]
    assert not (tmp_path / "o").exists()


def test_dataset_keep_longest_filters_and_max_live_objects_caps() -> None:
    args = build_parser().parse_args(["dataset", "a.mp4", "--out", "o", "--prompt", "p", "--keep-longest", "2",
                                      "--max-live-objects", "5"])
    assert (args.keep_longest, args.max_live_objects) == (2, 5)
    assert tracker_config(args).association.max_objects == 5


def test_console_script_and_module_entry_points() -> None:
    scripts = (REPO / "pyproject.toml").read_text().split("[project.scripts]", 1)[1]  # no tomllib on 3.10
    module, func = re.search(r'^gsam2-video = "([\w.]+):(\w+)"', scripts, re.MULTILINE).groups()
    assert getattr(importlib.import_module(module), func) is main
    proc = subprocess.run([sys.executable, "-m", "gsam2_video", "--help"], capture_output=True, text=True,
                          cwd=REPO, timeout=120, check=False, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0, proc.stderr
    assert "{" + ",".join(COMMANDS) + "}" in proc.stdout
