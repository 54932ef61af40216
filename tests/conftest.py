"""Shared fixtures: paths to the real clips in ../shared/data, skipping cleanly when absent."""

from __future__ import annotations

from collections.abc import Iterator
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


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """Torch on one thread for a module: tiny models only gain contention from more on a shared CPU."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory, vocab_file: Path) -> dict[str, Path]:
    """Tiny random Grounding DINO and SAM 2 saved with save_pretrained, loaded back like real checkpoints.

    Saved once per session so every end-to-end test exercises the real loading path, not objects built in
    memory.
    """
    from random_detector import save_random_detector, tiny_grounding_dino_config
    from random_sam2 import save_random_sam2, tiny_sam2_config

    root = tmp_path_factory.mktemp("tiny_models")
    det = save_random_detector(root / "detector", tiny_grounding_dino_config(), vocab_file=vocab_file, seed=0)
    sam = save_random_sam2(root / "sam2", tiny_sam2_config(), seed=0)
    return {"detector": Path(det), "sam2": Path(sam)}


@pytest.fixture(scope="session")
def tree_frames(videos_dir: Path) -> list:
    """The first 48 frames of tree.avi as RGB uint8 arrays, decoded once with PyAV (the propagator tests)."""
    import av

    out = []
    with av.open(str(videos_dir / "tree.avi")) as container:
        for frame in container.decode(video=0):
            out.append(frame.to_ndarray(format="rgb24"))
            if len(out) == 48:
                break
    return out
