"""SAM 2's image encoder per frame with and without the position-encoding cache (models/position_cache.py).

Why: transformers rebuilds the vision neck's four sine position encodings on every frame; the cache keeps
them per shape. This times ``Sam2Model.encode_image`` (preprocessing + image encoder) on real frames at
SAM 2's real size (random hiera-tiny, 1024 input, fp32, one thread), the two variants alternating frame by
frame in one process so both see the same load, and counts the aten ops each launches (torch's profiler,
top-level ops that are not views). Also reported: the bytes the cache holds and whether the features are
bit-identical.

Run: python benchmarks/position_cache.py [--size real|reduced] [--frames 6] [--out FILE]; prints JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C


def _ops(model: Any, frame: Any) -> int:
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        model.encode_image(frame, *frame.shape[:2])
    views = {"aten::view", "aten::reshape", "aten::permute", "aten::transpose", "aten::expand", "aten::flatten",
             "aten::slice", "aten::select", "aten::unsqueeze", "aten::squeeze", "aten::as_strided", "aten::t",
             "aten::alias", "aten::unflatten", "aten::split", "aten::chunk", "aten::unbind", "aten::narrow",
             "aten::detach", "aten::contiguous"}
    return sum(1 for e in prof.events() if e.cpu_parent is None and e.name.startswith("aten::")
               and e.name not in views)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", default="real", choices=["real", "reduced", "tiny"])
    p.add_argument("--frames", type=int, default=6, help="timed frames per variant (after one warm-up each)")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()

    from gsam2_video.config import PropagatorConfig
    from gsam2_video.models.sam2_model import Sam2Model

    torch.set_num_threads(1)
    frames = C.read_frames(C.VIDEOS / "bikes.mp4", args.frames + 1)
    models = {}
    for name in ("recomputed", "cached"):
        model = Sam2Model.from_pretrained(str(C.sam2_dir(args.size)), PropagatorConfig(), device="cpu", dtype="fp32")
        if name == "recomputed":
            neck = model.model.vision_encoder.neck
            neck.position_encoding = neck.position_encoding.inner
        models[name] = model
    times: dict[str, list[float]] = {name: [] for name in models}
    identical = True
    with torch.inference_mode():
        for i, frame in enumerate(frames):
            outs = {}
            for name, model in models.items():
                t0 = time.perf_counter()
                outs[name] = model.encode_image(frame, *frame.shape[:2])
                if i:  # frame 0 warms up (and fills the cache)
                    times[name].append(time.perf_counter() - t0)
            (fa, pa), (fb, pb) = outs["recomputed"], outs["cached"]
            identical &= all(torch.equal(a, b) for a, b in zip(fa, fb)) and torch.equal(pa, pb)
        ops = {name: _ops(model, frames[0]) for name, model in models.items()}
    med = {name: round(1e3 * C.median(t), 1) for name, t in times.items()}
    doc = {"question": "SAM 2 encode_image per frame with the position encodings rebuilt (transformers) or cached",
            "setup": {"sam2": f"random {args.size} config, image size {C.sam2_image_size(args.size)}, fp32",
                      "video": "bikes.mp4", "threads": 1, "frames": args.frames,
                      "order": "the two variants alternate frame by frame"},
            "median_ms": med, "ms_per_frame": {k: [round(1e3 * v, 1) for v in t] for k, t in times.items()},
            "saved_ms": round(med["recomputed"] - med["cached"], 1),
            "aten_compute_ops": ops, "cached_bytes": models["cached"].position_cache.cached_bytes,
            "bit_identical": identical}
    C.emit(doc)
    if args.out is not None:
        args.out.write_text(json.dumps({"command": C.command_line(), "machine": C.machine(), **doc}, indent=2) + "\n")


if __name__ == "__main__":
    main()
