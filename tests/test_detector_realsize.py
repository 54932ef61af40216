"""The real-size random config has grounding-dino-tiny's shapes and runs through the Detector at 480x640.

The shape check is instant; building and running the 172 M-parameter model takes about a minute of CPU,
so that part is marked slow: ``pytest -m slow tests/test_detector_realsize.py``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from random_detector import real_size_grounding_dino_config, save_random_detector

from gsam2_video.config import DetectorConfig
from gsam2_video.models.detector import Detector


def test_real_size_config_has_grounding_dino_tiny_shapes() -> None:
    cfg = real_size_grounding_dino_config()
    assert cfg.model_type == "grounding-dino"
    assert (cfg.backbone_config.embed_dim, cfg.backbone_config.depths, cfg.backbone_config.num_heads) == (
        96, [2, 2, 6, 2], [3, 6, 12, 24])
    assert cfg.backbone_config.out_features == ["stage2", "stage3", "stage4"]
    assert (cfg.text_config.hidden_size, cfg.text_config.num_hidden_layers, cfg.text_config.vocab_size) == (
        768, 12, 30522)
    assert (cfg.d_model, cfg.num_queries, cfg.encoder_layers, cfg.decoder_layers, cfg.max_text_len) == (
        256, 900, 6, 6, 256)


@pytest.mark.slow
def test_real_size_detector_runs_at_480x640(vocab_file: Path, tmp_path: Path) -> None:
    path = save_random_detector(tmp_path / "real", real_size_grounding_dino_config(), vocab_file=vocab_file)
    det = Detector.from_pretrained(str(path), DetectorConfig(shortest_edge=480, longest_edge=640), device="cpu")
    assert 170e6 < sum(p.numel() for p in det.model.parameters()) < 175e6
    image = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    assert tuple(det.image_inputs(image)["pixel_values"].shape) == (1, 3, 480, 640)
    out = det.detect(image, "person. car")
    assert len(out) <= 100 and set(out.labels) <= {"person", "car"}
