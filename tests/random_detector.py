"""Random-weight detector checkpoints written exactly like real ones, for tests and benchmarks without weights.

No weights can be downloaded here, so tests, end-to-end CLI runs and benchmarks use Grounding DINO (and
OWLv2) models with random weights, saved with ``save_pretrained`` together with a real processor, so that
``Detector.from_pretrained(folder)`` exercises the same path a user's hub id takes. The Grounding DINO
tokenizer is the real bert-base-uncased WordPiece vocabulary (shared test data); OWLv2's CLIP tokenizer is a
byte-level BPE vocabulary generated here (no merges), which is a valid tokenizer for a random model.
``write_offline_hub_cache`` lays a saved folder out as the Hugging Face hub cache, so loading by hub id
with ``HF_HUB_OFFLINE=1`` can be tested too.

Test-side on purpose: it reads a vocabulary from the shared test data outside the repository, and users
load real checkpoints; benchmarks import it from here (``benchmarks/_common.py`` puts ``tests/`` on the path).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

GROUNDING_DINO_TINY_ID = "IDEA-Research/grounding-dino-tiny"


def default_vocab_file() -> Path:
    """The shared bert-base-uncased vocabulary (``$GSAM2_DATA`` or ``<repo>/../shared/data``)."""
    data = os.environ.get("GSAM2_DATA")
    root = Path(data) if data else Path(__file__).resolve().parents[2] / "shared" / "data"
    return root / "bert-base-uncased-vocab.txt"


def tiny_grounding_dino_config(**overrides: Any) -> Any:
    """A Grounding DINO with every dimension shrunk (about 1.4 M parameters, milliseconds per frame).

    The text side keeps BERT's 30,522-token vocabulary so the real tokenizer's ids are valid; the backbone
    keeps Swin's four stages (Grounding DINO reads stages 2-4) and the detector keeps 4 feature levels.
    ``overrides`` are GroundingDinoConfig fields.
    """
    from transformers import BertConfig, GroundingDinoConfig, SwinConfig

    backbone = SwinConfig(embed_dim=16, depths=[1, 1, 1, 1], num_heads=[1, 1, 1, 1], window_size=7,
                          out_features=["stage2", "stage3", "stage4"])
    text = BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=37)
    fields: dict[str, Any] = {
        "backbone_config": backbone, "text_config": text, "d_model": 32, "encoder_ffn_dim": 64, "decoder_ffn_dim": 64,
        "encoder_layers": 1, "decoder_layers": 2,  # transformers ties bbox heads across >= 2 decoder layers
        "encoder_attention_heads": 2, "decoder_attention_heads": 2, "num_queries": 30,
        "encoder_n_points": 2, "decoder_n_points": 2,
    }
    fields.update(overrides)
    return GroundingDinoConfig(**fields)


def tiny_mm_grounding_dino_config(**overrides: Any) -> Any:
    """MM Grounding DINO (``mm-grounding-dino``) with the same tiny shapes as ``tiny_grounding_dino_config``."""
    from transformers import MMGroundingDinoConfig

    base = tiny_grounding_dino_config().to_dict()
    fields = {k: base[k] for k in ("d_model", "encoder_ffn_dim", "decoder_ffn_dim", "encoder_layers",
                                   "decoder_layers", "encoder_attention_heads", "decoder_attention_heads",
                                   "num_queries", "encoder_n_points", "decoder_n_points",
                                   "backbone_config", "text_config")}
    fields.update(overrides)
    return MMGroundingDinoConfig(**fields)


def real_size_grounding_dino_config() -> Any:
    """Grounding DINO with grounding-dino-tiny's shapes: Swin-T backbone, BERT-base text encoder, 900 queries."""
    from transformers import BertConfig, GroundingDinoConfig, SwinConfig

    backbone = SwinConfig(embed_dim=96, depths=[2, 2, 6, 2], num_heads=[3, 6, 12, 24], window_size=7,
                          out_features=["stage2", "stage3", "stage4"])
    return GroundingDinoConfig(backbone_config=backbone, text_config=BertConfig())


def _bert_tokenizer(vocab_file: Path) -> Any:
    from transformers import BertTokenizer

    if not vocab_file.is_file():
        raise FileNotFoundError(f"BERT vocabulary not found at {vocab_file}")
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copyfile(vocab_file, Path(tmp) / "vocab.txt")
        # transformers 5 ignores vocab_file= in the constructor; from_pretrained on a folder reads it.
        return BertTokenizer.from_pretrained(tmp, do_lower_case=True)


def save_random_detector(out_dir: str | os.PathLike[str], config: Any = None,
                         vocab_file: str | os.PathLike[str] | None = None, seed: int = 0) -> Path:
    """Save a random-weight Grounding DINO (or MM Grounding DINO, by ``config``) plus its processor.

    The image processor is the PIL-backed one transformers itself picks without torchvision, with Grounding
    DINO's default 800/1333 resize; the tokenizer is bert-base-uncased built from ``vocab_file``.
    """
    from transformers import AutoModelForZeroShotObjectDetection, GroundingDinoProcessor
    from transformers.models.grounding_dino.image_processing_pil_grounding_dino import (
        GroundingDinoImageProcessorPil,
    )

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cfg = config if config is not None else tiny_grounding_dino_config()
    torch.manual_seed(seed)
    model = AutoModelForZeroShotObjectDetection.from_config(cfg).eval()
    model.save_pretrained(out)
    tokenizer = _bert_tokenizer(Path(vocab_file) if vocab_file is not None else default_vocab_file())
    image_processor = GroundingDinoImageProcessorPil(size={"shortest_edge": 800, "longest_edge": 1333})
    GroundingDinoProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(out)
    return out


def _byte_symbols() -> list[str]:
    """The 256 printable stand-ins byte-level BPE uses for raw bytes (printable bytes map to themselves)."""
    printable = set(range(ord("!"), ord("~") + 1)) | set(range(0xA1, 0xAC + 1)) | set(range(0xAE, 0xFF + 1))
    symbols: list[str] = []
    extra = 0
    for b in range(256):
        if b in printable:
            symbols.append(chr(b))
        else:
            symbols.append(chr(256 + extra))
            extra += 1
    return symbols


def _clip_char_tokenizer(max_length: int) -> Any:
    """A CLIP tokenizer over single bytes (no merges): valid input ids for a random OWLv2 text encoder."""
    from transformers import CLIPTokenizer

    symbols = sorted(set(_byte_symbols()))
    vocab = {s: i for i, s in enumerate(symbols)}
    for s in symbols:
        vocab[s + "</w>"] = len(vocab)
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)  # highest id: CLIP pools the text at argmax(input_ids)
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
        (Path(tmp) / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
        return CLIPTokenizer.from_pretrained(tmp, model_max_length=max_length)


def tiny_owlv2_config(**overrides: Any) -> Any:
    """An OWLv2 with tiny towers (64 px input, 16 patches) matching ``_clip_char_tokenizer``'s vocabulary."""
    from transformers import Owlv2Config

    vocab_size = 2 * 256 + 2
    fields: dict[str, Any] = {
        "text_config": {"vocab_size": vocab_size, "hidden_size": 32, "intermediate_size": 37, "num_hidden_layers": 1,
                         "num_attention_heads": 2, "max_position_embeddings": 16, "bos_token_id": vocab_size - 2,
                         "eos_token_id": vocab_size - 1, "pad_token_id": vocab_size - 1},
        "vision_config": {"hidden_size": 32, "intermediate_size": 37, "num_hidden_layers": 1, "num_attention_heads": 2,
                           "image_size": 64, "patch_size": 16},
        "projection_dim": 32,
    }
    fields.update(overrides)
    return Owlv2Config(**fields)


def save_random_owlv2(out_dir: str | os.PathLike[str], config: Any = None, seed: int = 0) -> Path:
    """Save a random-weight OWLv2 plus its processor (PIL image processor, generated CLIP tokenizer)."""
    from transformers import AutoModelForZeroShotObjectDetection, Owlv2Processor
    from transformers.models.owlv2.image_processing_pil_owlv2 import Owlv2ImageProcessorPil

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cfg = config if config is not None else tiny_owlv2_config()
    torch.manual_seed(seed)
    model = AutoModelForZeroShotObjectDetection.from_config(cfg).eval()
    model.save_pretrained(out)
    size = int(cfg.vision_config.image_size)
    tokenizer = _clip_char_tokenizer(int(cfg.text_config.max_position_embeddings))
    image_processor = Owlv2ImageProcessorPil(size={"height": size, "width": size})
    Owlv2Processor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(out)
    return out


def write_offline_hub_cache(hf_home: str | os.PathLike[str], repo_id: str,
                            src_dir: str | os.PathLike[str]) -> Path:
    """Copy a save_pretrained folder into ``hf_home``'s hub cache as model ``repo_id``; return the snapshot.

    Layout (what huggingface_hub writes): ``<hf_home>/hub/models--ORG--NAME/{blobs,snapshots/<rev>,refs/main}``
    with snapshot files linked to content-addressed blobs (copied where symlinks are unavailable). The
    revision is a hash of the files, so equal contents give an equal snapshot.
    """
    src = Path(src_dir)
    files = sorted(p for p in src.rglob("*") if p.is_file())
    if not files:
        raise FileNotFoundError(f"no files to cache in {src}")
    repo = Path(hf_home) / "hub" / ("models--" + repo_id.replace("/", "--"))
    revision = hashlib.sha1()
    blobs: list[tuple[Path, str]] = []
    for f in files:
        digest = hashlib.sha256(f.read_bytes()).hexdigest()
        rel = f.relative_to(src)
        revision.update(str(rel).encode() + b"\0" + digest.encode())
        blobs.append((rel, digest))
    rev = revision.hexdigest()
    snapshot = repo / "snapshots" / rev
    (repo / "blobs").mkdir(parents=True, exist_ok=True)
    for rel, digest in blobs:
        blob = repo / "blobs" / digest
        if not blob.exists():
            shutil.copyfile(src / rel, blob)
        target = snapshot / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists() or target.is_symlink():
            target.unlink()
        try:
            target.symlink_to(os.path.relpath(blob, target.parent))
        except OSError:
            shutil.copyfile(blob, target)
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(rev, encoding="utf-8")
    return snapshot
