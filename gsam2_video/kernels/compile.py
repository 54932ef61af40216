"""NVRTC compilation: per-architecture options, PTX for CI checks, and cached CuPy modules.

Kernels are compiled at run time, so nothing is built at install time. ``nvrtc_options`` is the single
source of the flags, used both by the CuPy module loader (CuPy appends the ``-arch`` of the running device
and caches the binary on disk, keyed by source and options) and by ``compile_ptx``, which the tests use to
prove every kernel compiles for sm_80 and sm_90 without a GPU.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from ..errors import ModelError
from .sources import expanded_source

SUPPORTED_ARCHS = ((8, 0), (8, 6), (8, 9), (9, 0))


def nvrtc_options(cc: tuple[int, int]) -> tuple[str, ...]:
    """Compiler options for compute capability ``cc`` (without -arch; CuPy adds it for the live device).

    No fast-math: the kernels must match the torch references' float semantics. ``GSAM2_CC`` lets a
    source specialise per architecture.
    """
    major, minor = cc
    if major < 7:
        raise ModelError(f"CUDA compute capability {major}.{minor} is too old for the kernels (need 7.0+)")
    return ("-std=c++17", f"-DGSAM2_CC={major * 10 + minor}")


def compile_ptx(source: str, cc: tuple[int, int]) -> str:
    """Compile one kernel source to PTX for ``cc`` with NVRTC (via CuPy's bindings); raise on errors."""
    from cupy.cuda import nvrtc

    code = expanded_source(source)
    prog = nvrtc.createProgram(code, source, [], [])
    try:
        opts = [*nvrtc_options(cc), f"-arch=compute_{cc[0]}{cc[1]}"]
        try:
            nvrtc.compileProgram(prog, opts)
        except nvrtc.NVRTCError as err:
            log = nvrtc.getProgramLog(prog)
            raise ModelError(f"NVRTC failed to compile {source} for sm_{cc[0]}{cc[1]}: {log.strip()}") from err
        ptx = nvrtc.getPTX(prog)
    finally:
        nvrtc.destroyProgram(prog)
    return ptx.decode() if isinstance(ptx, bytes) else ptx


@cache
def load_module(source: str, cc: tuple[int, int], device: int) -> Any:
    """The CuPy RawModule for ``source`` on CUDA device ``device`` of capability ``cc``.

    Memoised per process and device (a loaded module belongs to one device context); the compiled binary
    itself is cached on disk by CuPy, so a new process or a second device of the same architecture does not
    recompile. Call with ``device`` current.
    """
    import cupy

    return cupy.RawModule(code=expanded_source(source), options=nvrtc_options(cc), backend="nvrtc")


@cache
def get_function(source: str, name: str, cc: tuple[int, int], device: int) -> Any:
    """One kernel of a cached module (call with ``device`` current)."""
    return load_module(source, cc, device).get_function(name)
