"""Every kernel source compiles for sm_80 and sm_90: with nvcc -ptx and with NVRTC (the run-time path).

Skips cleanly when nvcc or the NVRTC library is absent. Also checks that the NVRTC program text is
self-contained (where the sources are found is tests/test_kernels_packaging.py).
"""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from gsam2_video.kernels.compile import compile_ptx, nvrtc_options
from gsam2_video.kernels.sources import KERNELS, cuda_dir, expanded_source

ARCHS = [(8, 0), (9, 0)]


def _nvrtc_ok() -> bool:
    try:
        from cupy.cuda import nvrtc

        nvrtc.getVersion()
        return True
    except Exception:  # noqa: BLE001 -- CuPy missing or libnvrtc not loadable
        return False


def test_sources_expand_without_local_includes():
    for source in KERNELS:
        text = expanded_source(source)
        assert not re.search(r'#include\s+"', text), source
        for name in KERNELS[source]:
            assert name in text, (source, name)


@pytest.mark.skipif(not _nvrtc_ok(), reason="NVRTC (nvidia-cuda-nvrtc-cu12 + CuPy) not available")
@pytest.mark.parametrize("cc", ARCHS, ids=lambda cc: f"sm_{cc[0]}{cc[1]}")
def test_nvrtc_compiles_every_kernel(cc):
    for source, names in KERNELS.items():
        ptx = compile_ptx(source, cc)
        assert f".target sm_{cc[0]}{cc[1]}" in ptx
        for name in names:
            assert re.search(rf"\.entry\s+{name}\s*\(", ptx), (source, name)
        if source == "msda.cu":  # 16-byte channel packs compile to vector loads
            assert "ld.global.nc.v4.f32" in ptx or "ld.global.v4.f32" in ptx
        if source == "preprocess.cu":  # PIL-exact arithmetic: no fused multiply-add may round differently
            assert "fma.rn" not in ptx and "div.rn.f64" in ptx


@pytest.mark.skipif(not _nvrtc_ok(), reason="NVRTC (nvidia-cuda-nvrtc-cu12 + CuPy) not available")
@pytest.mark.parametrize("cc", ARCHS, ids=lambda cc: f"sm_{cc[0]}{cc[1]}")
def test_nvrtc_builds_machine_code(cc):
    """CuPy asks NVRTC for a cubin of the live device's sm_XX: that must link too, not only PTX."""
    from cupy.cuda import nvrtc

    for source in KERNELS:
        prog = nvrtc.createProgram(expanded_source(source), source, [], [])
        try:
            nvrtc.compileProgram(prog, [*nvrtc_options(cc), f"-arch=sm_{cc[0]}{cc[1]}"])
            assert len(nvrtc.getCUBIN(prog)) > 1000
        finally:
            nvrtc.destroyProgram(prog)


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc not installed")
@pytest.mark.parametrize("cc", ARCHS, ids=lambda cc: f"sm_{cc[0]}{cc[1]}")
def test_nvcc_ptx_compiles_every_kernel(cc, tmp_path):
    arch = f"sm_{cc[0]}{cc[1]}"
    for source, names in KERNELS.items():
        out = tmp_path / f"{source}.{arch}.ptx"
        cmd = ["nvcc", "-ptx", f"-arch={arch}", *nvrtc_options(cc), "-I", str(cuda_dir()),
               str(cuda_dir() / source), "-o", str(out)]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        assert proc.returncode == 0, proc.stderr
        ptx = out.read_text()
        for name in names:
            assert re.search(rf"\.entry\s+{name}\s*\(", ptx), (source, name)
