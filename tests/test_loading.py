"""Model loading contract: one-line errors, no downloads attempted when the hub cannot be reached."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gsam2_video.errors import ConfigError, ModelError
from gsam2_video.models.loading import (
    looks_like_path,
    missing_weights_message,
    native_bf16,
    precision_name,
    resolve_device,
    resolve_dtype,
)


@pytest.mark.parametrize("name, is_path", [
    ("IDEA-Research/grounding-dino-tiny", False), ("facebook/sam2.1-hiera-tiny", False),
    ("/abs/dir", True), ("./rel", True), ("../up/model", True), ("~/models/x", True),
    ("ckpts/sam2.1_hiera_tiny.pt", True), ("a/b/c", True)])
def test_hub_ids_and_paths_are_told_apart(name: str, is_path: bool) -> None:
    assert looks_like_path(name) is is_path


def test_missing_path_message_names_it(tmp_path: Path) -> None:
    msg = missing_weights_message("detector", str(tmp_path / "gone"), OSError("x"))
    assert msg == f"cannot load detector from {tmp_path / 'gone'}: no such file or directory"
    hub = missing_weights_message("SAM 2 video model", "facebook/sam2.1-hiera-tiny", OSError("x"))
    assert "huggingface-cli download facebook/sam2.1-hiera-tiny" in hub and "\n" not in hub


def test_unresolvable_hub_fails_fast_without_retries(tmp_path: Path) -> None:
    code = ("from transformers import AutoConfig\n"
            "from gsam2_video.models.loading import from_pretrained\n"
            "from gsam2_video.errors import ModelError\n"
            "try:\n    from_pretrained(AutoConfig, 'IDEA-Research/grounding-dino-tiny', kind='detector')\n"
            "except ModelError as e:\n    print('ERR', e)\n")
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf"), "HF_ENDPOINT": "https://hub.invalid"}
    env.pop("HF_HUB_OFFLINE", None)
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120,
                          check=False)
    assert "ERR cannot load detector 'IDEA-Research/grounding-dino-tiny'" in proc.stdout, proc.stderr
    assert "Retry" not in proc.stderr
    assert time.monotonic() - t0 < 60


def test_device_and_dtype_rules() -> None:
    import torch

    assert resolve_device("cpu").type == "cpu"
    assert resolve_dtype("fp32", torch.device("cpu")) is None
    assert resolve_dtype("bf16", torch.device("cpu")) is torch.bfloat16
    with pytest.raises(ConfigError):
        resolve_dtype("fp16", torch.device("cpu"))
    with pytest.raises(ConfigError):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA is not available"):
            resolve_device("cuda")
    assert ModelError.__mro__[1].__name__ == "Gsam2Error"


@pytest.mark.parametrize("avx512_bf16, amx, expected", [
    (False, False, None), (True, False, "bf16"), (False, True, "bf16"), (True, True, "bf16")])
def test_auto_dtype_is_bf16_only_on_cpus_with_bf16_hardware(monkeypatch: pytest.MonkeyPatch, avx512_bf16: bool,
                                                             amx: bool, expected: str | None) -> None:
    """Emulated bf16 is slower than fp32, so 'auto' follows the CPU's bf16 units, not torch's bf16 support."""
    import torch

    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx, raising=False)
    cpu = torch.device("cpu")
    assert native_bf16(cpu) is (expected == "bf16")
    assert precision_name(resolve_dtype("auto", cpu)) == (expected or "fp32")
    assert resolve_dtype("fp32", cpu) is None  # an explicit choice is never overridden


@pytest.mark.parametrize("bf16_gpu, expected", [(True, "bf16"), (False, "fp32")])
def test_auto_dtype_on_cuda_follows_the_gpu(monkeypatch: pytest.MonkeyPatch, bf16_gpu: bool, expected: str) -> None:
    import torch

    calls: list[bool] = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported",
                        lambda including_emulation=True: calls.append(including_emulation) or bf16_gpu)
    assert precision_name(resolve_dtype("auto", torch.device("cuda"))) == expected
    assert calls == [False]  # pre-Ampere GPUs emulate bf16: not taken by 'auto'
