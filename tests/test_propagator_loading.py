"""SAM 2 loading (folder, offline HF cache, missing weights), config size checks, Meta-exact preprocessing.

Hub-id cases run in a subprocess so HF_HOME / HF_HUB_OFFLINE are read fresh by huggingface_hub, as they are
for a user starting the CLI.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from random_detector import write_offline_hub_cache
from random_sam2 import (
    real_size_sam2_config,
    reduced_sam2_config,
    save_random_sam2,
    tiny_sam2_config,
)
from transformers import Sam2VideoConfig

from gsam2_video.config import DEFAULT_SAM2
from gsam2_video.errors import ConfigError, ModelError
from gsam2_video.models.propagator import Sam2Propagator
from gsam2_video.models.sam2_checks import sam2_size_problems
from gsam2_video.models.sam2_preprocess import preprocess_frame, resize_like_reference

REPO = Path(__file__).resolve().parents[1]

SCRIPT = """
import json, sys
import numpy as np
from gsam2_video.errors import ModelError
from gsam2_video.models.propagator import Sam2Propagator
prop = Sam2Propagator.from_pretrained(sys.argv[1], device="cpu")
image = np.random.default_rng(0).integers(0, 256, (60, 80, 3), dtype=np.uint8)
prop.reset(60, 80)
feats = prop.encode(image, 0)
prop.add_object(1, feats, box=(10, 10, 50, 40))
print(json.dumps(prop.commit(feats).low_res.flatten().tolist()))
try:
    Sam2Propagator.from_pretrained(sys.argv[2], device="cpu")
except ModelError as err:
    print(str(err))
"""


def _run(script: str, args: list[str], hf_home: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_", "TRANSFORMERS_"))}
    env.update(HF_HOME=str(hf_home), HF_HUB_OFFLINE="1", PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-c", script, *args], check=False, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_random_sam2(tmp_path_factory.mktemp("sam2") / "tiny", tiny_sam2_config(), seed=5)


@pytest.fixture(scope="module")
def frame(videos_dir: Path) -> np.ndarray:
    import av

    with av.open(str(videos_dir / "carphone_pristine.mp4")) as container:
        return next(container.decode(video=0)).to_ndarray(format="rgb24")


def test_hub_id_from_offline_cache_equals_the_folder_and_missing_is_one_line(saved: Path, tmp_path: Path) -> None:
    hf_home = tmp_path / "hf_home"
    write_offline_hub_cache(hf_home, DEFAULT_SAM2, saved)
    proc = _run(SCRIPT, [DEFAULT_SAM2, "facebook/sam2.1-hiera-small"], hf_home)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    from_cache = json.loads(lines[-2])
    prop = Sam2Propagator.from_pretrained(str(saved), device="cpu")
    prop.reset(60, 80)
    feats = prop.encode(np.random.default_rng(0).integers(0, 256, (60, 80, 3), dtype=np.uint8), 0)
    prop.add_object(1, feats, box=(10, 10, 50, 40))
    ours = prop.commit(feats).low_res.flatten()
    # same weights, same inputs; only the thread count differs between the processes (float summation order)
    torch.testing.assert_close(ours, torch.tensor(from_cache), rtol=0, atol=1e-6)
    # a model that is neither local nor cached, offline: one line naming it and how to get it
    missing = lines[-1]
    assert "'facebook/sam2.1-hiera-small'" in missing and "offline and not in the local Hugging Face cache" in missing
    assert "huggingface-cli download facebook/sam2.1-hiera-small" in missing


def test_missing_local_folder_is_a_model_error(tmp_path: Path) -> None:
    folder = tmp_path / "not_a_model"
    folder.mkdir()
    with pytest.raises(ModelError, match=r"cannot load SAM 2 video model from .*not_a_model"):
        Sam2Propagator.from_pretrained(str(folder), device="cpu")


def test_inconsistent_image_size_is_refused(saved: Path, tmp_path: Path) -> None:
    """A top-level image_size that disagrees with the others runs in transformers and gives wrong masks."""
    cfg = json.loads((saved / "config.json").read_text())
    cfg["image_size"] = 256
    bad = tmp_path / "bad"
    bad.mkdir()
    for f in saved.iterdir():
        (bad / f.name).write_bytes(f.read_bytes())
    (bad / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelError, match=r"inconsistent image sizes: prompt_encoder_config.image_size=128 but "
                                         r"image_size=256"):
        Sam2Propagator.from_pretrained(str(bad), device="cpu")


@pytest.mark.parametrize("builder,size", [(tiny_sam2_config, 128), (reduced_sam2_config, 256),
                                          (real_size_sam2_config, 1024)])
def test_config_builders_keep_every_size_field_consistent(builder, size: int) -> None:
    cfg = builder()
    assert cfg.image_size == size and cfg.prompt_encoder_config.image_size == size
    assert [list(s) for s in cfg.vision_config.backbone_feature_sizes] == [[size // 4] * 2, [size // 8] * 2,
                                                                             [size // 16] * 2]
    assert list(cfg.memory_attention_rope_feat_sizes) == [size // 16] * 2
    assert sam2_size_problems(cfg) == []
    default = Sam2VideoConfig()  # transformers' default is hiera-tiny at 1024: our real-size builder matches it
    if size == 1024:
        for key in ("memory_attention_feed_forward_hidden_size", "memory_encoder_output_channels", "num_maskmem"):
            assert getattr(cfg, key) == getattr(default, key)
        assert cfg.vision_config.backbone_channel_list == default.vision_config.backbone_channel_list
    with pytest.raises(ConfigError, match="multiple of 32"):
        builder(100)


def test_save_random_sam2_is_seeded(tmp_path: Path) -> None:
    a = Sam2Propagator.from_pretrained(str(save_random_sam2(tmp_path / "a", seed=1)), device="cpu").model
    b = Sam2Propagator.from_pretrained(str(save_random_sam2(tmp_path / "b", seed=1)), device="cpu").model
    c = Sam2Propagator.from_pretrained(str(save_random_sam2(tmp_path / "c", seed=2)), device="cpu").model
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not torch.equal(sa["no_object_pointer"], sc["no_object_pointer"])
    assert sa["no_memory_embedding"].abs().sum() > 0  # zero-initialised parameters are exercised too


def test_preprocessing_is_bit_identical_to_meta(frame: np.ndarray, tmp_path: Path) -> None:
    from PIL import Image
    from sam2.utils.misc import load_video_frames

    folder = tmp_path / "frames"
    folder.mkdir()
    Image.fromarray(frame).save(folder / "0.png")
    (folder / "0.png").rename(folder / "0.jpg")  # Meta's loader lists *.jpg; PIL reads the PNG bytes back
    meta, h, w = load_video_frames(str(folder), 128, offload_video_to_cpu=True, compute_device=torch.device("cpu"))
    ours = preprocess_frame(frame, 128)
    assert (h, w) == frame.shape[:2]
    assert torch.equal(ours, meta[0])
    # transformers' processor resizes bilinearly with antialias: measurably different input pixels
    bilinear = torch.nn.functional.interpolate(torch.from_numpy(frame).permute(2, 0, 1)[None].float(),
                                               size=(128, 128), mode="bilinear", antialias=True)[0]
    assert (bilinear.round() - torch.from_numpy(resize_like_reference(frame, 128).copy()).permute(2, 0, 1)).abs().max() > 5


def test_missing_meta_checkpoint_is_a_model_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"Meta SAM 2 checkpoint .*sam2.1_hiera_tiny.pt.* does not exist"):
        Sam2Propagator.from_pretrained(str(tmp_path / "sam2.1_hiera_tiny.pt"), device="cpu")


@pytest.mark.slow
def test_meta_checkpoint_loads_through_from_pretrained(tmp_path: Path) -> None:
    """A facebookresearch/sam2-format .pt (here: Meta's hiera-tiny with seeded random weights at 1024 px)
    loads through the same call as a hub id and tracks; weights equal Meta's, renamed."""
    from sam2_reference import build_meta_predictor

    meta = build_meta_predictor("tiny", 1024, seed=0)
    path = tmp_path / "sam2.1_hiera_tiny.pt"
    torch.save({"model": meta.state_dict()}, path)
    prop = Sam2Propagator.from_pretrained(str(path), device="cpu")
    assert prop.image_size == 1024
    ours = prop.model.state_dict()
    assert torch.equal(ours["no_object_pointer"], meta.state_dict()["no_obj_ptr"])
    prop.reset(48, 64)
    feats = prop.encode(np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8), 0)
    prop.add_object(1, feats, box=(8, 8, 40, 30))
    assert prop.commit(feats).logits.shape == (1, 48, 64)
