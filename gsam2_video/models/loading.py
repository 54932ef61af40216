"""One loading path for hub ids, save_pretrained directories and the offline HF cache.

Users pass the same string everywhere; transformers resolves it against a local directory first, then the
HF cache, then the hub. When none of those has the weights (typically offline) we raise one ModelError that
names the model and how to get it, instead of transformers' multi-line OSError.
"""

from __future__ import annotations

import os
import socket
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlparse

import torch

from ..errors import ConfigError, ModelError

M = TypeVar("M")


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """'auto' picks CUDA when available; asking for CUDA without it is a clear error, not a silent CPU run."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"device {device!r} requested but CUDA is not available on this machine")
        dev = torch.device(device)
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ConfigError(f"device {device!r} requested but this machine has "
                              f"{torch.cuda.device_count()} CUDA device(s)")
        return dev
    if device == "cpu":
        return torch.device("cpu")
    raise ConfigError(f"device must be auto, cpu or cuda[:N], got {device!r}")


def set_tf32(device: torch.device, enabled: bool) -> None:
    """TF32 for fp32 matmuls and convolutions on CUDA (Ampere and later; ignored by older GPUs).

    torch keeps this switch per process, so it is set where models are loaded for a CUDA device and
    never on CPU runs. TF32 keeps fp32's range with a 10-bit mantissa in the tensor cores: several times
    the fp32 matmul rate. ``enabled=False`` (``--strict-fp32``) gives the strict fp32 arithmetic the parity
    tests check; bf16/fp16 autocast runs are unaffected either way.
    """
    if device.type != "cuda":
        return
    torch.backends.cuda.matmul.allow_tf32 = enabled
    torch.backends.cudnn.allow_tf32 = enabled


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` multiplies bf16 in hardware: CUDA GPUs from Ampere on, CPUs with AVX-512 BF16 or
    AMX. Where bf16 is emulated it is slower than fp32, so 'auto' must not pick it there."""
    if device.type == "cuda":
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False))
    if device.type == "cpu":
        probes = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
        return any(bool(probe()) for probe in probes if callable(probe))
    return False


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype | None:
    """Autocast dtype for a run, or None for plain fp32.

    Weights stay fp32 and reduced precision comes from autocast: SAM 2's memory attention and Grounding
    DINO's deformable attention keep fp32 where their authors do, and a CPU run can still use bf16.
    'auto' is bf16 where the hardware has it (SAM 2's authors run their video predictor under bf16
    autocast; its speed and mask agreement with fp32 are measured by ``benchmarks/cpu_options.py``, figures
    in ``benchmarks/README.md``) and fp32 elsewhere; 'fp32' is the exact path the parity tests check.
    """
    if dtype == "auto":
        return torch.bfloat16 if native_bf16(device) else None
    if dtype == "fp32":
        return None
    if dtype == "bf16":
        return torch.bfloat16
    if dtype == "fp16":
        if device.type != "cuda":
            raise ConfigError("dtype fp16 needs a CUDA device; use bf16 or fp32 on CPU")
        return torch.float16
    raise ConfigError(f"dtype must be auto, fp32, bf16 or fp16, got {dtype!r}")


def precision_name(autocast_dtype: torch.dtype | None) -> str:
    """The CLI / config name of a resolved autocast dtype (None is fp32)."""
    return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[autocast_dtype]


def autocast(device: torch.device, dtype: torch.dtype | None) -> AbstractContextManager[Any]:
    """Autocast context for ``dtype`` on ``device`` (a no-op for fp32)."""
    if dtype is None:
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes")


def looks_like_path(name: str) -> bool:
    """A local path rather than a hub id ("org/name"): absolute, relative, home, or a checkpoint file."""
    return (name.startswith(("/", "./", "../", "~")) or name.count("/") > 1 or "\\" in name
            or name.endswith((".pt", ".pth", ".safetensors")))


def missing_weights_message(kind: str, name_or_path: str, cause: BaseException) -> str:
    """The one line users see when a model cannot be found locally or fetched."""
    if looks_like_path(name_or_path) and not Path(name_or_path).expanduser().exists():
        return f"cannot load {kind} from {name_or_path}: no such file or directory"
    if Path(name_or_path).expanduser().exists():
        return f"cannot load {kind} from {name_or_path}: {str(cause).splitlines()[0] if str(cause) else type(cause).__name__}"
    how = (f"download it on a connected machine (huggingface-cli download {name_or_path}) and copy the HF cache "
           f"here, or pass a local directory written by save_pretrained")
    where = "offline and not in the local Hugging Face cache" if _offline() else "not found locally and the hub is unreachable"
    return f"cannot load {kind} {name_or_path!r}: {where}; {how}"


def hub_resolvable() -> bool:
    """Whether the hub's host name resolves: without DNS a download can only fail, after ~30 s of retries."""
    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname or "huggingface.co"
    try:
        socket.getaddrinfo(host, 443)
    except OSError:
        return False
    return True


def from_pretrained(cls: type[M], name_or_path: str | os.PathLike[str], *, kind: str, **kwargs: Any) -> M:
    """``cls.from_pretrained`` with the project's error contract; never enables trust_remote_code.

    A hub id is looked up in the local cache only when the hub cannot be reached (offline mode or no DNS),
    so a missing model fails at once with one line instead of after transformers' retries.
    """
    name = str(name_or_path)
    kwargs.setdefault("trust_remote_code", False)
    if not Path(name).expanduser().exists() and (_offline() or not hub_resolvable()):
        kwargs.setdefault("local_files_only", True)
    try:
        return cls.from_pretrained(name, **kwargs)  # type: ignore[attr-defined]
    except (OSError, ValueError) as exc:
        raise ModelError(missing_weights_message(kind, name, exc)) from exc
