"""Blocked bf16 attention against torch's SDPA on the shapes SAM 2's memory attention uses on a CPU.

Why: ``gsam2_video.ops.cpu_attention`` replaces SDPA in SAM 2's memory attention on bf16 CPU runs, and
keeps SDPA below ``MIN_KEYS`` keys. This measures both per call, single head, head dim 256 (SAM 2's memory
attention), for the query x key sizes of 128 px (64 image tokens), 256 px (256), 512 px (1024) and 1024 px
(4096) inputs with self-attention (keys = queries) and cross-attention over 7 memory frames plus 16 object
pointers (4 tokens each). Also the error of each against fp32 SDPA on the same (rounded) inputs.

Run: /work/venv/bin/python benchmarks/attention.py [--repeats 5]; prints JSON.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C

from gsam2_video.ops.cpu_attention import BLOCK_ROWS, MIN_KEYS, eager_attention_blocks


def shapes() -> list[tuple[str, int, int]]:
    out = []
    for px in (128, 256, 512, 1024):
        q = (px // 16) ** 2
        out.append((f"{px}px self", q, q))
        out.append((f"{px}px cross", q, 7 * q + 64))
    return out


def timed(fn: Any, inputs: tuple[torch.Tensor, ...], repeats: int) -> float:
    fn(*inputs)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn(*inputs)
        times.append(time.perf_counter() - t)
    return C.median(times)


def blocked_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return eager_attention_blocks(q, k, v, q.shape[-1] ** -0.5)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    rows = []
    with torch.inference_mode():
        for name, lq, lk in shapes():
            q, k, v = (torch.randn(1, 1, n, 256, generator=g).bfloat16() for n in (lq, lk, lk))
            reps = args.repeats if lq < 4096 else max(1, args.repeats // 2)
            sdpa = timed(F.scaled_dot_product_attention, (q, k, v), reps)
            blocked = timed(blocked_attention, (q, k, v), reps)
            exact = F.scaled_dot_product_attention(q.float(), k.float(), v.float())
            rows.append({
                "shape": name, "queries": lq, "keys": lk, "sdpa_ms": round(sdpa * 1e3, 3),
                "blocked_ms": round(blocked * 1e3, 3), "speedup": round(sdpa / blocked, 2),
                "used_in_product": lk >= MIN_KEYS,
                "max_abs_err_vs_fp32": {
                    "sdpa_bf16": float((F.scaled_dot_product_attention(q, k, v).float() - exact).abs().max()),
                    "blocked_bf16": float((blocked_attention(q, k, v).float() - exact).abs().max())},
            })
    C.emit({"setup": {"dtype": "bf16", "heads": 1, "head_dim": 256, "block_rows": BLOCK_ROWS,
                      "min_keys": MIN_KEYS, "threads": args.threads, "repeats": args.repeats},
            "results": rows})


if __name__ == "__main__":
    main()
