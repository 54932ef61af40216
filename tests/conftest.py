"""Shared fixtures: paths to the real clips in ../shared/data, skipping cleanly when absent."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DATA = Path(__import__("os").environ.get("GSAM2_DATA", REPO.parent / "shared" / "data"))
VIDEOS = DATA / "videos"

CLIP_FRAMES = {"vtest.avi": 795, "bikes.mp4": 250, "tree.avi": 68, "carphone_pristine.mp4": 120}


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not DATA.is_dir():
        pytest.skip(f"shared test data not found at {DATA}")
    return DATA


@pytest.fixture(scope="session")
def videos_dir(data_dir: Path) -> Path:
    return data_dir / "videos"


@pytest.fixture(scope="session")
def vocab_file(data_dir: Path) -> Path:
    return data_dir / "bert-base-uncased-vocab.txt"
