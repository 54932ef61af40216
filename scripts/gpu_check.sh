#!/usr/bin/env bash
# GPU check, for a machine with an NVIDIA GPU (run from the repository root; about 5 minutes on one GPU):
#   1. `pytest -m gpu`: every CuPy kernel against its torch reference on the device;
#   2. benchmarks/gpu_throughput.py: real-size random Grounding DINO-T + SAM 2.1-tiny at 1080p, N = 1, 10, 30
#      objects: frames/s, per-stage ms, device-to-host bytes per frame, peak GPU memory.
# Prints one JSON object ({"pytest_gpu": ..., "throughput": ...}) on stdout; with OUT set it also writes
# $OUT/gpu_check.json. Uses the python3 that holds a CUDA torch; wheels for missing packages (PyAV,
# pycocotools, ...) are installed from ./.whl when that folder exists (no network needed).
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/gsam2-site .whl/*.whl \
    && export PYTHONPATH="/tmp/gsam2-site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
work=$(mktemp -d)
$PY -m pytest -m gpu -q -p no:cacheprovider tests/test_kernels_gpu.py > "$work/pytest.log" 2>&1
pytest_rc=$?
timeout 420 $PY benchmarks/gpu_throughput.py --device cuda --objects 1 10 30 --frames 60 \
  > "$work/throughput.json" 2> "$work/throughput.err"
bench_rc=$?
$PY - "$work" "$pytest_rc" "$bench_rc" <<'PYEOF'
import json, os, re, sys
work, pytest_rc, bench_rc = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
log = open(os.path.join(work, "pytest.log")).read()
summary = [line for line in log.splitlines() if re.search(r"\d+ (passed|failed|skipped|error)", line)]
try:
    throughput = json.load(open(os.path.join(work, "throughput.json")))
except (OSError, ValueError):
    throughput = {"error": open(os.path.join(work, "throughput.err")).read()[-4000:]}
out = {"pytest_gpu": {"rc": pytest_rc, "summary": summary[-1] if summary else log[-2000:]},
       "throughput": throughput, "throughput_rc": bench_rc}
text = json.dumps(out, indent=2)
print(text)
if os.environ.get("OUT"):
    open(os.path.join(os.environ["OUT"], "gpu_check.json"), "w").write(text + "\n")
PYEOF
