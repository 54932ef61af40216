"""Tiny random-weight models saved with save_pretrained, shared by the end-to-end tests.

Saved once per test session into a temp dir and loaded back through the same path users hit, so every
end-to-end test exercises the real loading code, not objects built in memory.
"""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory, vocab_file: Path) -> dict[str, Path]:
    from gsam2_video.models.random_detector import save_random_detector, tiny_grounding_dino_config
    from gsam2_video.models.random_sam2 import save_random_sam2, tiny_sam2_config

    root = tmp_path_factory.mktemp("tiny_models")
    det = save_random_detector(root / "detector", tiny_grounding_dino_config(), vocab_file=vocab_file, seed=0)
    sam = save_random_sam2(root / "sam2", tiny_sam2_config(), seed=0)
    return {"detector": Path(det), "sam2": Path(sam)}
