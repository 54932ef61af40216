"""CPU speed options for the per-frame SAM 2 step and the detector: bf16 autocast, threads, torch.compile.

Why: on a CPU the per-frame SAM 2 work (image encoder, memory attention, mask decoder, memory encoder) is
most of a run, and three knobs might make it cheaper: bf16 autocast (``--dtype bf16``; accuracy reported as
mask IoU against fp32 on the same frames), the torch thread count, and ``torch.compile`` of the image
encoder (the largest network; compile time is reported separately from the steady per-frame time).

Each variant runs in a fresh process (thread settings and compile caches do not leak) on the same frames
and the same box prompts, with the same random weights (Meta hiera-tiny SAM 2.1 converted, ``--sam2-input``
px). Per run: median seconds per frame over frames 2..N (frame 1 includes warm-up / compilation). Variants
are interleaved over ``--runs`` rounds so a change in machine load hits all of them; medians reported.

``bf16_sdpa_threads1`` is bf16 with SAM 2's memory attention left on torch's CPU SDPA kernel instead of the
blocked bf16 path (``gsam2_video.ops.cpu_attention``), to show what that path adds. ``detector_fp32`` /
``detector_bf16`` time Grounding DINO calls (``--detector-kind``, ``--detector-size``) on the same frames;
their "mask IoU" is the mean best-match IoU of the boxes against the first detector variant's.

Run: /work/venv/bin/python benchmarks/cpu_options.py [--sam2-input 256 --frames 12 --runs 3]; prints JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C

BOXES = [(300.0, 120.0, 400.0, 380.0), (480.0, 160.0, 600.0, 460.0)]
VARIANTS = {
    "fp32_threads2": {"dtype": "fp32", "threads": 2, "compile": False},
    "fp32_threads1": {"dtype": "fp32", "threads": 1, "compile": False},
    "bf16_threads2": {"dtype": "bf16", "threads": 2, "compile": False},
    "bf16_threads1": {"dtype": "bf16", "threads": 1, "compile": False},
    "fp32_threads2_compiled_encoder": {"dtype": "fp32", "threads": 2, "compile": True},
    "bf16_sdpa_threads1": {"dtype": "bf16", "threads": 1, "compile": False, "blocked_attention": False},
    "detector_fp32": {"dtype": "fp32", "threads": 1, "detector": True},
    "detector_bf16": {"dtype": "bf16", "threads": 1, "detector": True},
}
DEFAULT_VARIANTS = ["fp32_threads1", "bf16_threads1", "bf16_sdpa_threads1", "fp32_threads2", "bf16_threads2",
                    "fp32_threads2_compiled_encoder"]


def detector_child(args: argparse.Namespace, dtype: str) -> dict[str, Any]:
    from gsam2_video.config import DetectorConfig
    from gsam2_video.models.detector import Detector

    cfg = DetectorConfig(box_threshold=0.25, text_threshold=0.25, shortest_edge=args.detector_size[0],
                         longest_edge=args.detector_size[1])
    det = Detector.from_pretrained(str(C.detector_dir(args.detector_kind)), cfg, device="cpu", dtype=dtype)
    frames = C.read_frames(Path(args.video), min(args.frames, 4))
    times, boxes = [], []
    for rgb in frames:
        t = time.perf_counter()
        out = det.detect(rgb, "person. car.")
        times.append(time.perf_counter() - t)
        boxes.append(np.asarray(out.boxes, np.float32))
    np.save(args.masks_out, np.array(boxes, dtype=object), allow_pickle=True)
    return {"first_frame_s": round(times[0], 3), "median_frame_s": round(C.median(times[1:]), 4),
            "threads": torch.get_num_threads(), "load_average_after": C.load_average()}


def box_agreement(ref: np.ndarray, other: np.ndarray) -> list[float]:
    """Per reference box, the best IoU among the other variant's boxes on the same frame."""
    def area(r: np.ndarray) -> np.ndarray:
        return (r[..., 2] - r[..., 0]) * (r[..., 3] - r[..., 1])

    out = []
    for a, b in zip(ref, other):
        for box in a:
            if not len(b):
                out.append(0.0)
                continue
            x1, y1 = np.maximum(box[:2], b[:, :2]).T
            x2, y2 = np.minimum(box[2:], b[:, 2:]).T
            inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
            out.append(float((inter / (area(box) + area(b) - inter + 1e-9)).max()))
    return out


def child(args: argparse.Namespace) -> dict[str, Any]:
    v = VARIANTS[args.child]
    torch.set_num_threads(v["threads"])
    if v.get("detector"):
        return detector_child(args, v["dtype"])
    if not v.get("blocked_attention", True):
        from gsam2_video.ops import cpu_attention

        cpu_attention.MIN_KEYS = 1 << 62  # every call falls through to transformers' SDPA path
    prop = C.our_propagator_from_meta(args.sam2_input, dtype=v["dtype"])
    if v["compile"]:
        prop.model.vision_encoder = torch.compile(prop.model.vision_encoder, dynamic=False)
    frames = C.read_frames(Path(args.video), args.frames)
    times, masks = [], []
    for i, rgb in enumerate(frames):
        t = time.perf_counter()
        if i == 0:
            prop.reset(*rgb.shape[:2], num_frames=len(frames))
        feats = prop.encode(rgb, i)
        prop.propagate(feats)
        if i == 0:
            for oid, box in enumerate(BOXES, start=1):
                prop.add_object(oid, feats, box=box)
        out = prop.commit(feats)
        times.append(time.perf_counter() - t)
        masks.append((out.logits > 0).numpy())
    np.save(args.masks_out, np.stack(masks))
    return {"first_frame_s": round(times[0], 3), "median_frame_s": round(C.median(times[1:]), 4),
            "threads": torch.get_num_threads(), "load_average_after": C.load_average()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--video", default=str(C.VIDEOS / "vtest.avi"))
    p.add_argument("--frames", type=int, default=12)
    p.add_argument("--sam2-input", type=int, default=256)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--variants", nargs="+", default=DEFAULT_VARIANTS, choices=list(VARIANTS))
    p.add_argument("--detector-kind", choices=["tiny", "real"], default="real")
    p.add_argument("--detector-size", type=int, nargs=2, default=[480, 640], metavar=("SHORT", "LONG"))
    p.add_argument("--child", choices=list(VARIANTS), help=argparse.SUPPRESS)
    p.add_argument("--masks-out", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps(child(args)))
        return
    C.meta_checkpoint(args.sam2_input)
    script = Path(__file__).resolve()
    base = ["--video", args.video, "--frames", str(args.frames), "--sam2-input", str(args.sam2_input),
            "--detector-kind", args.detector_kind, "--detector-size", *map(str, args.detector_size)]
    runs: dict[str, list[dict[str, Any]]] = {k: [] for k in args.variants}
    ious: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.runs):
            for name in args.variants:
                out = Path(tmp) / f"{name}-{r}.npy"
                try:
                    res = C.run_child(script, [*base, "--child", name, "--masks-out", str(out)])
                except RuntimeError as exc:
                    res = {"error": str(exc).splitlines()[-1][:300]}
                runs[name].append(res)
        refs: dict[bool, np.ndarray] = {}
        for name in args.variants:
            path = Path(tmp) / f"{name}-0.npy"
            if not path.exists():
                continue
            is_det = bool(VARIANTS[name].get("detector"))
            m = np.load(path, allow_pickle=is_det)
            ref = refs.setdefault(is_det, m)
            per = (box_agreement(ref, m) if is_det else
                   [C.mask_iou(ref[f, o], m[f, o]) for f in range(ref.shape[0]) for o in range(ref.shape[1])])
            ious[name] = {"mean": round(float(np.mean(per)), 4), "min": round(float(np.min(per)), 4)}
            if not is_det:
                ious[name]["foreground_fraction_ref"] = round(float(ref.mean()), 4)
    summary = {}
    ref_t: dict[bool, float] = {}
    for name in args.variants:
        ok = [r for r in runs[name] if "median_frame_s" in r]
        if not ok:
            summary[name] = {"error": runs[name][0].get("error")}
            continue
        t = C.median([r["median_frame_s"] for r in ok])
        first = ref_t.setdefault(bool(VARIANTS[name].get("detector")), t)
        summary[name] = {"median_frame_s": round(t, 4), "speed_vs_first_variant": round(first / t, 3),
                         "first_frame_s_median": round(C.median([r["first_frame_s"] for r in ok]), 3),
                         "mask_iou_vs_first_variant": ious.get(name)}
    C.emit({"setup": {"sam2": f"Meta sam2.1 hiera-tiny random weights at {args.sam2_input} px, converted",
                      "detector": f"{args.detector_kind} random Grounding DINO at {args.detector_size}",
                      "frames": args.frames, "objects": len(BOXES),
                      "reference_variant": "the first SAM 2 variant; detector variants against the first "
                                           "detector variant"},
            "summary": summary, "runs": runs})


if __name__ == "__main__":
    main()
