"""Loading a detector the ways users do: local folder, hub id from an offline HF cache, missing weights offline.

Hub-id cases run in a subprocess so HF_HOME / HF_HUB_OFFLINE are read fresh by huggingface_hub, exactly as
in a user's shell.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from random_detector import save_random_detector, write_offline_hub_cache

from gsam2_video.config import DEFAULT_DETECTOR, DetectorConfig
from gsam2_video.models.detector import Detector

REPO = Path(__file__).resolve().parents[1]

DETECT_SCRIPT = """
import json, sys
import numpy as np
from gsam2_video.config import DetectorConfig
from gsam2_video.models.detector import Detector
det = Detector.from_pretrained(sys.argv[1], DetectorConfig(shortest_edge=96, longest_edge=128), device="cpu")
image = np.random.default_rng(0).integers(0, 256, (90, 120, 3), dtype=np.uint8)
out = det.detect(image, "person. car")
print(json.dumps({"boxes": out.boxes.tolist(), "scores": out.scores.tolist(), "labels": out.labels}))
"""

MISSING_SCRIPT = """
import sys
from gsam2_video.errors import ModelError
from gsam2_video.models.detector import Detector
try:
    Detector.from_pretrained(sys.argv[1], device="cpu")
except ModelError as err:
    print(str(err))
    sys.exit(3)
"""


def _run(script: str, arg: str, hf_home: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_", "TRANSFORMERS_"))}
    env.update(HF_HOME=str(hf_home), HF_HUB_OFFLINE="1", PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-c", script, arg], env=env, capture_output=True, text=True,
                          timeout=300, check=False)


@pytest.fixture(scope="module")
def saved(vocab_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_random_detector(tmp_path_factory.mktemp("gdino"), vocab_file=vocab_file, seed=3)


def test_missing_weights_offline_is_one_clear_model_error(tmp_path: Path) -> None:
    empty = tmp_path / "hf_home"
    empty.mkdir()
    start = time.perf_counter()
    proc = _run(MISSING_SCRIPT, DEFAULT_DETECTOR, empty)
    elapsed = time.perf_counter() - start
    assert proc.returncode == 3, proc.stderr[-2000:]
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1
    msg = lines[0]
    assert "'IDEA-Research/grounding-dino-tiny'" in msg and "offline and not in the local Hugging Face cache" in msg
    assert "huggingface-cli download IDEA-Research/grounding-dino-tiny" in msg
    assert elapsed < 60  # fails at once, no network retries (a few seconds here; most of it is imports)
    assert not any(empty.rglob("*.safetensors"))


def test_missing_local_folder_is_a_model_error(tmp_path: Path) -> None:
    from gsam2_video.errors import ModelError

    folder = tmp_path / "not_a_model"
    folder.mkdir()
    with pytest.raises(ModelError, match=r"cannot load detector from .*not_a_model"):
        Detector.from_pretrained(str(folder), device="cpu")


def test_hub_id_loads_from_offline_cache_like_the_folder(saved: Path, tmp_path: Path) -> None:
    hf_home = tmp_path / "hf_home"
    snapshot = write_offline_hub_cache(hf_home, DEFAULT_DETECTOR, saved)
    repo = hf_home / "hub" / "models--IDEA-Research--grounding-dino-tiny"
    assert snapshot.parent == repo / "snapshots"
    assert (repo / "refs" / "main").read_text() == snapshot.name and len(snapshot.name) == 40
    names = sorted(p.name for p in saved.iterdir())
    assert sorted(p.name for p in snapshot.iterdir()) == names
    assert all((snapshot / n).resolve().parent == repo / "blobs" for n in names)
    assert write_offline_hub_cache(hf_home, DEFAULT_DETECTOR, saved) == snapshot  # idempotent

    proc = _run(DETECT_SCRIPT, DEFAULT_DETECTOR, hf_home)
    assert proc.returncode == 0, proc.stderr[-3000:]
    from_cache = json.loads(proc.stdout.strip().splitlines()[-1])

    det = Detector.from_pretrained(str(saved), DetectorConfig(shortest_edge=96, longest_edge=128), device="cpu")
    image = np.random.default_rng(0).integers(0, 256, (90, 120, 3), dtype=np.uint8)
    local = det.detect(image, "person. car")
    assert len(local) > 0
    np.testing.assert_array_equal(np.asarray(from_cache["boxes"], np.float32).reshape(-1, 4), local.boxes)
    np.testing.assert_array_equal(np.asarray(from_cache["scores"], np.float32), local.scores)
    assert from_cache["labels"] == local.labels
