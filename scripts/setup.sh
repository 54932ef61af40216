#!/usr/bin/env bash
# One-shot set-up for a fresh machine: a project venv in .venv with the CPU torch wheel pinned for CI,
# the package (editable) with its dev extras, and Meta's sam2 (the parity reference) without its CUDA build.
# Idempotent: re-running only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
VPIP=".venv/bin/python -m pip"
$VPIP install -q --upgrade pip >/dev/null 2>&1 || true
# Pin torch explicitly: an unpinned torch can pull a multi-GB CUDA build; users keep a range (pyproject).
$VPIP install -q -c constraints/ci.txt "torch==2.13.0" 2>&1 | grep -v "is ignored" || true
$VPIP install -q -c constraints/ci.txt -e ".[dev]" 2>&1 | grep -v "is ignored" || true
# Meta's SAM 2 is the reference the propagator is proven against; its CUDA extension is not needed.
if ! .venv/bin/python -c "import sam2" 2>/dev/null; then
  SAM2_BUILD_CUDA=0 $VPIP install -q --no-deps --no-build-isolation "sam2==1.1.0" 2>&1 | grep -v "is ignored" || true
fi
# TrackEval (HOTA / IDF1 / MOTA for `gsam2-video eval`) needs only numpy, scipy and pycocotools, but its wheel
# asks for the GUI opencv-python beside our headless build: install it without dependencies.
if ! .venv/bin/python -c "import trackeval" 2>/dev/null; then
  $VPIP install -q --no-deps -c constraints/ci.txt trackeval 2>&1 | grep -v "is ignored" || true
fi
# torchvision breaks transformers' image processors beside torch 2.13: keep it out.
if .venv/bin/python -c "import importlib.util,sys; sys.exit(importlib.util.find_spec('torchvision') is None)"; then
  $VPIP uninstall -y -q torchvision
fi
.venv/bin/python -c "import torch, transformers, gsam2_video; print('gsam2-video', gsam2_video.__version__, '| torch', torch.__version__, '| transformers', transformers.__version__)"
