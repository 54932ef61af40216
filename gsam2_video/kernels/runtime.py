"""Launching kernels: a CuPy runner on torch's CUDA stream and a host-emulation runner for verification.

Both runners take the same call: (source file, kernel name, grid, block, arguments), where arguments are
torch tensors (passed as device pointers) or numpy scalars (np.int32 / np.int64 / np.float32, the kernel's
parameter types). The op launchers in this package are written against that interface, so the emulation
tests run the very launch code a GPU would run, buffers and host-side prefix sums included.

CuPy runner: tensors are shared through DLPack (no copies; bfloat16, which CuPy has no dtype for, is
shared as its int16 bit pattern), kernels run on ``torch.cuda.current_stream()`` wrapped as a
CuPy stream (``Stream.from_external`` via the CUDA stream protocol; ``ExternalStream`` on CuPy 13), on the
tensor's device.
"""

from __future__ import annotations

import ctypes
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from ..errors import ModelError
from .compile import get_function
from .sources import EMULATION_HEADER, KERNELS, cuda_dir

BLOCK = 256
MAX_BLOCKS = 65535

Grid = tuple[int, int, int]


def grid_for(total: int, block: int = BLOCK, max_blocks: int = MAX_BLOCKS) -> Grid:
    """1-D grid covering ``total`` threads (kernels use grid-stride loops, so capping is safe)."""
    return (max(1, min((total + block - 1) // block, max_blocks)), 1, 1)


class Runner(Protocol):
    """Something that can launch a kernel from the ``cuda/`` kernel folder on tensors of its device."""

    def launch(self, source: str, name: str, grid: Grid, block: Grid, args: Sequence[Any]) -> None: ...


def _as_cupy(t: torch.Tensor) -> Any:
    import cupy

    if not t.is_contiguous():
        raise ModelError(f"kernel argument must be contiguous, got strides {t.stride()}")
    if t.dtype == torch.bfloat16:
        t = t.view(torch.int16)
    elif t.dtype == torch.bool:
        t = t.view(torch.uint8)
    return cupy.from_dlpack(t)


def _cupy_stream(stream: torch.cuda.Stream, index: int) -> Any:
    """torch's stream as a CuPy stream: the CUDA stream protocol (CuPy 14+), else ExternalStream (CuPy 13)."""
    import cupy

    from_external = getattr(cupy.cuda.Stream, "from_external", None)
    if from_external is not None and hasattr(stream, "__cuda_stream__"):
        return from_external(stream)
    return cupy.cuda.ExternalStream(stream.cuda_stream, index)


class CupyRunner:
    """Launch NVRTC-compiled kernels on one CUDA device, on torch's current stream."""

    def __init__(self, device: torch.device) -> None:
        self.device = torch.device(device)
        self.index = self.device.index if self.device.index is not None else torch.cuda.current_device()
        self.cc = torch.cuda.get_device_capability(self.index)

    def launch(self, source: str, name: str, grid: Grid, block: Grid, args: Sequence[Any]) -> None:
        import cupy

        stream = torch.cuda.current_stream(self.index)
        with cupy.cuda.Device(self.index):
            try:
                fn = get_function(source, name, self.cc, self.index)
            except Exception as err:  # NVRTC missing or failing: say how to fix it, in one line
                first = str(err).strip().splitlines()[0] if str(err).strip() else ""
                raise ModelError(
                    f"CUDA kernel {name} ({source}) could not be compiled for sm_{self.cc[0]}{self.cc[1]}: "
                    f"{type(err).__name__}: {first} -- install nvidia-cuda-nvrtc-cu12 "
                    "(pip install 'gsam2-video[cuda]') or set GSAM2_FORCE_TORCH=1") from err
            with _cupy_stream(stream, self.index):
                fn(grid, block, tuple(_as_cupy(a) if isinstance(a, torch.Tensor) else a for a in args))


def cuda_runner(device: torch.device) -> CupyRunner:
    """The CuPy runner for ``device``."""
    return CupyRunner(device)


_CTYPES = {np.int32: ctypes.c_int32, np.int64: ctypes.c_int64, np.float32: ctypes.c_float}


class EmulationRunner:
    """Run the kernels' C++ host-emulation build (see ``cuda/host_emulation.h``) on CPU tensors."""

    def __init__(self, library: Path) -> None:
        self.lib = ctypes.CDLL(str(library))

    def launch(self, source: str, name: str, grid: Grid, block: Grid, args: Sequence[Any]) -> None:
        if name not in KERNELS.get(source, ()):
            raise ModelError(f"kernel {name} is not an entry point of {source}")
        values: list[Any] = []
        for a in args:
            if isinstance(a, torch.Tensor):
                if a.device.type != "cpu" or not a.is_contiguous():
                    raise ModelError(f"emulated kernel {name} needs contiguous CPU tensors, got {a.device}")
                values.append(ctypes.c_void_p(a.data_ptr()))
            elif type(a) in _CTYPES:
                values.append(_CTYPES[type(a)](a.item()))
            else:
                raise ModelError(f"kernel {name} argument must be a tensor or numpy scalar, got {type(a).__name__}")
        ptrs = (ctypes.c_void_p * max(1, len(values)))(*[ctypes.addressof(v) for v in values])
        fn = getattr(self.lib, f"emu_{name}")
        fn.restype = None
        fn(*(ctypes.c_uint(int(x)) for x in (*grid, *block)), ptrs)

    def convert(self, name: str, values: torch.Tensor, out_dtype: torch.dtype) -> torch.Tensor:
        """Apply one of the kernels' scalar conversions (e.g. ``g_float_to_half``) to a CPU tensor."""
        src = values.contiguous()
        out = torch.empty(src.shape, dtype=out_dtype)
        fn = getattr(self.lib, f"emu_{name}")
        fn.restype = None
        fn(ctypes.c_void_p(src.data_ptr()), ctypes.c_void_p(out.data_ptr()), ctypes.c_longlong(src.numel()))
        return out


def build_emulation_library(out_dir: Path, compiler: str = "g++") -> Path:
    """Compile every kernel source with the host-emulation header into ``out_dir/libgsam2_emu.so``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    lines = [f'#include "{EMULATION_HEADER}"']
    for source, names in KERNELS.items():
        lines.append(f'#include "{source}"')
        lines.extend(f"GSAM2_EMU_EXPORT({n})" for n in names)
    # the software fp16/bf16 conversions, exported over arrays so tests can check every bit pattern
    for fn, src_t, dst_t in (("g_half_to_float", "u16", "float"), ("g_float_to_half", "float", "u16"),
                             ("g_bf16_to_float", "u16", "float"), ("g_float_to_bf16", "float", "u16")):
        lines.append(f'extern "C" void emu_{fn}(const {src_t}* in, {dst_t}* out, long long n) '
                     f"{{ for (long long i = 0; i < n; ++i) out[i] = {fn}(in[i]); }}")
    harness = out_dir / "gsam2_emulation.cpp"
    harness.write_text("\n".join(lines) + "\n")
    lib = out_dir / "libgsam2_emu.so"
    cmd = [compiler, "-std=c++17", "-O2", "-shared", "-fPIC", "-Wall", "-Wno-unused-function",
           "-I", str(cuda_dir()), str(harness), "-o", str(lib)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise ModelError(f"host emulation build failed: {proc.stderr.strip()[:2000]}")
    return lib
