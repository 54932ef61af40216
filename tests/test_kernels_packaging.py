"""The kernel sources ship as package data from the top-level ``cuda/`` folder and are found once installed.

The wheel test builds the real wheel (``pip wheel --no-deps --no-build-isolation``) from a copy of the
checkout, checks every kernel source is inside, unpacks it and asks the loader, in a fresh interpreter that
sees only the unpacked wheel ahead of site-packages, where the sources are. The editable-install test does the same
for ``pip install -e`` in a throwaway environment (a few seconds each).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from gsam2_video.kernels.sources import DATA_PACKAGE, EMULATION_HEADER, KERNELS, cuda_dir, expanded_source

REPO = Path(__file__).resolve().parents[1]
SHIPPED = sorted([*KERNELS, "gsam2_common.cuh", EMULATION_HEADER])
PROBE = (
    "import json; from importlib import resources; import gsam2_video.kernels.sources as s; "
    "print(json.dumps({'dir': str(s.cuda_dir()), 'installed': str(s.installed_cuda_dir()), "
    f"'resources': str((resources.files({DATA_PACKAGE!r}) / 'msda.cu').parent), "
    "'msda': len(s.expanded_source('msda.cu'))}))"
)


def _can_build_wheels() -> bool:
    """setuptools, plus the ``wheel`` package where setuptools predates its own bdist_wheel (70.1)."""
    if importlib.util.find_spec("setuptools") is None:
        return False
    from importlib.metadata import version

    major, minor = (int(x) for x in version("setuptools").split(".")[:2])
    return (major, minor) >= (70, 1) or importlib.util.find_spec("wheel") is not None


def _copy_checkout(dst: Path) -> Path:
    """The files a build needs, copied so the build leaves nothing behind in the checkout."""
    dst.mkdir()
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy(REPO / name, dst / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(REPO / "gsam2_video", dst / "gsam2_video", ignore=ignore)
    shutil.copytree(REPO / "cuda", dst / "cuda", ignore=ignore)
    return dst


def _probe(python: str, cwd: Path, pythonpath: str | None) -> dict:
    import json

    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    proc = subprocess.run([python, "-c", PROBE], cwd=cwd, env=env, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_sources_live_in_top_level_cuda_folder_only():
    assert cuda_dir() == REPO / "cuda"
    assert not (REPO / "gsam2_video" / "cuda").exists() and not (REPO / "gsam2_video" / "_cuda").exists()
    for name in SHIPPED:
        assert (REPO / "cuda" / name).is_file(), name
    assert sorted(p.name for p in (REPO / "cuda").glob("*.cu")) == sorted(KERNELS)


def test_wheel_ships_kernel_sources_and_loader_finds_them(tmp_path):
    if not _can_build_wheels():
        pytest.skip("setuptools (or wheel) not installed: cannot build the wheel")
    src = _copy_checkout(tmp_path / "src")
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                           str(src), "-w", str(tmp_path / "dist")], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    wheel = next((tmp_path / "dist").glob("gsam2_video-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for name in SHIPPED:
        assert f"gsam2_video/_cuda/{name}" in names, name
    assert not any(n.startswith(("cuda/", "gsam2_video/cuda/")) for n in names)  # one copy, in the package
    unpacked = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(unpacked)
    found = _probe(sys.executable, tmp_path, str(unpacked))
    assert found["dir"] == found["installed"] == found["resources"] == str(unpacked / "gsam2_video" / "_cuda")
    assert found["msda"] == len(expanded_source("msda.cu"))


def test_editable_install_finds_sources_through_package_data(tmp_path):
    if not _can_build_wheels():
        pytest.skip("setuptools (or wheel) not installed: cannot build the wheel")
    src = _copy_checkout(tmp_path / "src")
    env_dir = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env_dir)], check=True)
    python = str(env_dir / "bin" / "python")
    site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    # this environment's packages (torch, pip, setuptools) without its .pth hooks (no other editable install)
    parent_site = next(p for p in sys.path if p.endswith("site-packages") and Path(p, "torch").is_dir())
    Path(site, "parent_env.pth").write_text(parent_site + "\n")
    proc = subprocess.run([python, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "-e",
                           str(src)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    shutil.rmtree(src / "gsam2_video" / "kernels" / "__pycache__", ignore_errors=True)
    found = _probe(python, tmp_path, None)
    assert found["dir"] == found["installed"] == found["resources"] == str(src / "cuda")
