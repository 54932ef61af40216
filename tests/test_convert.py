"""Meta .pt -> transformers Sam2VideoModel: key mapping, inferred config, strict loading, numerical identity.

Meta's modules are built from Meta's own hydra configs (sam2==1.1.0), so the mapping is checked against the
real module trees of all four official sizes and of SAM 2.0, not against a list we wrote ourselves.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("sam2", reason="Meta's sam2==1.1.0 is the reference (pip install sam2 hydra-core iopath)")

from sam2_reference import (
    HYDRA_CONFIGS,
    Prompt,
    assert_informative,
    build_meta_predictor,
    compare_runs,
    meta_overrides,
    meta_preprocessed,
    read_frames,
    run_meta,
    run_transformers_video,
    write_jpeg_folder,
)
from transformers import Sam2VideoModel

from gsam2_video.errors import ModelError
from gsam2_video.models.convert import (
    config_from_meta_state_dict,
    convert_meta_state_dict,
    is_meta_checkpoint,
    load_meta_checkpoint,
    model_from_meta_state_dict,
    official_size,
)

ALL_CONFIGS = HYDRA_CONFIGS


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny models: one thread is faster here


def _meta_cfg(config_name: str, image_size: int = 1024):
    import sam2  # noqa: F401
    from hydra import compose
    from omegaconf import OmegaConf

    cfg = compose(config_name=config_name, overrides=meta_overrides(image_size))
    OmegaConf.resolve(cfg)
    return cfg


def _shape_only_meta_state(cfg) -> dict[str, torch.Tensor]:
    """Meta's state dict on the meta device (shapes only); Hiera's drop-path schedule needs a CPU linspace."""
    from hydra.utils import instantiate

    linspace = torch.linspace
    torch.linspace = lambda *a, **k: linspace(*a, **{**k, "device": "cpu"})  # type: ignore[assignment]
    try:
        with torch.device("meta"):
            model = instantiate(cfg.model, _recursive_=True)
    finally:
        torch.linspace = linspace  # type: ignore[assignment]
    return model.state_dict()


@pytest.fixture(scope="module")
def tiny128():
    # noisy weights: no two parameters are equal, so a swapped mapping cannot hide behind identical inits
    predictor = build_meta_predictor("tiny", 128, seed=3, weight_noise=0.1)
    return predictor, predictor.state_dict()


@pytest.mark.parametrize("name", sorted(ALL_CONFIGS))
def test_mapping_covers_every_parameter_of_every_official_size(name: str) -> None:
    cfg = _meta_cfg(ALL_CONFIGS[name])
    meta_state = _shape_only_meta_state(cfg)
    config = config_from_meta_state_dict(meta_state)
    with torch.device("meta"):
        expected = Sam2VideoModel(config).state_dict()
    converted = convert_meta_state_dict(meta_state)
    assert set(converted) == set(expected)
    shapes = {k: tuple(v.shape) for k, v in converted.items()}
    assert shapes == {k: tuple(v.shape) for k, v in expected.items()}
    # Meta's 4 point embeddings become one table; its Gaussian PE matrix feeds two transformers modules
    assert len(converted) == len(meta_state) - 3 + 1

    # what the shapes cannot say (heads, global blocks, windows) must equal Meta's hydra values
    trunk = cfg.model.image_encoder.trunk
    bb = config.vision_config.backbone_config
    size = official_size(meta_state)
    assert size.name == name.replace("sam2.0-", "")
    assert bb.num_attention_heads == trunk.get("num_heads", 1)
    assert list(bb.blocks_per_stage) == list(trunk.get("stages", (2, 3, 16, 3)))
    assert list(bb.global_attention_blocks) == list(trunk.get("global_att_blocks", (12, 16, 20)))
    assert list(bb.window_size_per_stage) == list(trunk.get("window_spec", (8, 4, 14, 7)))
    assert list(bb.window_positional_embedding_background_size) == list(
        trunk.get("window_pos_embed_bkg_spatial_size", (14, 14)))
    assert config.num_maskmem == cfg.model.num_maskmem
    assert config.enable_occlusion_spatial_embedding == bool(cfg.model.get("no_obj_embed_spatial", False))
    assert config.enable_temporal_pos_encoding_for_object_pointers == bool(cfg.model.add_tpos_enc_to_obj_ptrs)


def test_every_size_field_follows_image_size(tiny128) -> None:
    config = config_from_meta_state_dict(tiny128[1], image_size=128)
    assert config.image_size == 128
    assert config.prompt_encoder_config.image_size == 128
    assert [list(s) for s in config.vision_config.backbone_feature_sizes] == [[32, 32], [16, 16], [8, 8]]
    assert list(config.memory_attention_rope_feat_sizes) == [8, 8]
    assert list(config.vision_config.backbone_config.image_size) == [128, 128]


def test_strict_load_gives_identical_weights_and_image_features(tiny128) -> None:
    predictor, meta_state = tiny128
    model = model_from_meta_state_dict(meta_state, image_size=128)
    ours = model.state_dict()
    # every Meta tensor arrives unchanged (point embeddings stacked, the PE matrix shared)
    converted = convert_meta_state_dict(meta_state)
    assert all(torch.equal(ours[k], v) for k, v in converted.items())
    assert torch.equal(ours["prompt_encoder.point_embed.weight"][2],
                       meta_state["sam_prompt_encoder.point_embeddings.2.weight"][0])
    by_shape: dict[tuple[int, ...], list[tuple[str, torch.Tensor]]] = {}
    for k, v in converted.items():
        if k != "shared_image_embedding.positional_embedding":  # the one deliberately shared tensor
            by_shape.setdefault(tuple(v.shape), []).append((k, v))
    for group in by_shape.values():
        for i, (ka, va) in enumerate(group):
            assert not any(torch.equal(va, vb) for _, vb in group[i + 1:]), f"{ka} equals another parameter"
    x = torch.randn(2, 3, 128, 128, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        ref = predictor.forward_image(x)
        got = model.get_image_features(x)
    for a, b in zip(ref["backbone_fpn"], got.fpn_hidden_states):
        assert torch.equal(a, b.permute(1, 2, 0).reshape(a.shape))
    for a, b in zip(ref["vision_pos_enc"], got.fpn_position_encoding):
        assert torch.equal(a, b.permute(1, 2, 0).reshape(a.shape))


def test_load_meta_checkpoint_file_round_trip(tiny128, tmp_path: Path) -> None:
    _, meta_state = tiny128
    path = tmp_path / "sam2.1_hiera_tiny.pt"
    torch.save({"model": meta_state}, path)
    model = load_meta_checkpoint(path, image_size=128)
    assert isinstance(model, Sam2VideoModel) and not model.training
    assert model.config.image_size == 128
    given = load_meta_checkpoint(path, config_from_meta_state_dict(meta_state, image_size=128))
    a, b = model.state_dict(), given.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert is_meta_checkpoint(path) and not is_meta_checkpoint(tmp_path) and not is_meta_checkpoint("a/b.pt")
    # a bare state dict (no {"model": ...} wrapper) loads too
    torch.save(meta_state, tmp_path / "bare.pt")
    assert load_meta_checkpoint(tmp_path / "bare.pt", image_size=128).config.image_size == 128


def test_meta_predictor_equals_transformers_video_api(tiny128, videos_dir: Path, tmp_path: Path) -> None:
    """Converter end to end: Meta's predictor vs transformers' own video inference, one box, 10 frames."""
    predictor, meta_state = tiny128
    model = model_from_meta_state_dict(meta_state, image_size=128)
    frames = write_jpeg_folder(read_frames(videos_dir / "tree.avi", 10), tmp_path / "f")
    h, w = frames[0].shape[:2]
    prompts = [Prompt(0, 1, box=(0.2 * w, 0.2 * h, 0.6 * w, 0.9 * h))]
    ref = run_meta(predictor, tmp_path / "f", prompts, 10)
    assert_informative(ref)
    images, vh, vw = meta_preprocessed(tmp_path / "f", 128)
    got = run_transformers_video(model, images, vh, vw, prompts, 10)
    stats = compare_runs(ref, got)
    assert stats[1]["max_logit_diff"] <= 1e-5, stats
    assert stats[1]["min_iou"] >= 0.999, stats
    for t in ref.object_scores:
        assert torch.allclose(ref.object_scores[t], got.object_scores[t], atol=1e-5)


def test_sam2_0_checkpoint_matches_meta(videos_dir: Path, tmp_path: Path) -> None:
    """SAM 2.0 (no occlusion embedding, no pointer temporal encoding) converts and tracks like Meta's."""
    predictor = build_meta_predictor("sam2.0-tiny", 128, seed=3, weight_noise=0.1)
    model = model_from_meta_state_dict(predictor.state_dict(), image_size=128)
    assert not model.config.enable_occlusion_spatial_embedding
    assert not model.config.enable_temporal_pos_encoding_for_object_pointers
    frames = write_jpeg_folder(read_frames(videos_dir / "tree.avi", 12), tmp_path / "f")
    h, w = frames[0].shape[:2]
    prompts = [Prompt(0, 1, box=(0.2 * w, 0.2 * h, 0.6 * w, 0.9 * h))]
    ref = run_meta(predictor, tmp_path / "f", prompts, 12)
    assert_informative(ref)
    images, vh, vw = meta_preprocessed(tmp_path / "f", 128)
    stats = compare_runs(ref, run_transformers_video(model, images, vh, vw, prompts, 12))
    assert stats[1]["max_logit_diff"] <= 1e-5 and stats[1]["min_iou"] >= 0.999, stats


# ---- bad input ---------------------------------------------------------------------------------------


def test_missing_file_is_one_line_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="does not exist"):
        load_meta_checkpoint(tmp_path / "nope.pt")


def test_not_a_checkpoint(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a torch file")
    with pytest.raises(ModelError, match="cannot read Meta SAM 2 checkpoint"):
        load_meta_checkpoint(bad)
    torch.save({"model": {"foo.weight": torch.zeros(2)}}, tmp_path / "foreign.pt")
    with pytest.raises(ModelError, match="not a SAM 2 state dict"):
        load_meta_checkpoint(tmp_path / "foreign.pt")


def test_unexpected_and_missing_keys_are_rejected(tiny128) -> None:
    _, meta_state = tiny128
    extra = dict(meta_state)
    extra["sam_mask_decoder.some_new_head.weight"] = torch.zeros(1)
    with pytest.raises(ModelError, match="unknown parameter|unexpected"):
        model_from_meta_state_dict(extra, image_size=128)
    missing = {k: v for k, v in meta_state.items() if k != "memory_encoder.out_proj.weight"}
    with pytest.raises(ModelError, match="1 missing"):
        model_from_meta_state_dict(missing, image_size=128)


def test_inconsistent_sizes_and_unofficial_backbones_are_rejected(tiny128) -> None:
    _, meta_state = tiny128
    config = config_from_meta_state_dict(meta_state, image_size=128)
    config.image_size = 256  # the silent-failure case: runs, wrong masks
    with pytest.raises(ModelError, match="image_size 256 needs"):
        model_from_meta_state_dict(meta_state, config)
    with pytest.raises(ModelError, match="multiple of 32"):
        config_from_meta_state_dict(meta_state, image_size=100)
    odd = {k: v for k, v in meta_state.items() if not k.startswith("image_encoder.trunk.blocks.11.")}
    with pytest.raises(ModelError, match="not one of the official sizes"):
        config_from_meta_state_dict(odd)


@pytest.mark.slow
@pytest.mark.parametrize("size", ["small", "base-plus", "large"])
def test_image_features_identical_for_larger_sizes(size: str) -> None:
    """Heads, windows and global blocks leave no trace in shapes: prove them numerically (slow)."""
    predictor = build_meta_predictor(size, 128, seed=1)
    model = model_from_meta_state_dict(predictor.state_dict(), image_size=128)
    x = torch.randn(1, 3, 128, 128, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        ref = predictor.forward_image(x)["backbone_fpn"]
        got = model.get_image_features(x).fpn_hidden_states
    for a, b in zip(ref, got):
        assert (a - b.permute(1, 2, 0).reshape(a.shape)).abs().max().item() <= 1e-5


def test_frames_helper_reads_exact_count(videos_dir: Path) -> None:
    frames = read_frames(videos_dir / "tree.avi", 3)
    assert len(frames) == 3 and frames[0].dtype == np.uint8 and frames[0].ndim == 3
