"""Pipeline efficiency: end-to-end wall time against the time spent inside model forwards.

Why: on a CPU the models are the cost; anything else the tracker does per frame (decoding, preprocessing,
post-processing, association, bookkeeping, writing outputs) is overhead the user pays for nothing. The
run mirrors ``gsam2-video track``: the file is decoded on the source's prefetch thread, results go through
the asynchronous writer (``--save``), and the wall time is taken from the first frame requested to the
writer closed (model loading excluded and reported separately). Forward time is the wall time inside the
networks' ``forward`` calls (Grounding DINO; SAM 2's vision encoder, prompt encoder, mask decoder, memory
attention, memory encoder, mask downsampler, object-pointer projection), measured with forward hooks.

overhead = (wall - forward) / wall, median of ``--runs`` runs (each in a fresh process).

Sizes: ``--detector-size-kind real`` is Grounding DINO with grounding-dino-tiny's shapes (Swin-T + BERT-base)
at ``--detector-size`` input (default 480 640); ``--sam2-size`` real is hiera-tiny at 1024 px, reduced is
hiera-tiny at 256 px, tiny the test config. All weights random.

Run: /work/venv/bin/python benchmarks/pipeline.py [--sam2-size real --frames 30 --runs 3]; prints JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C


def run_tracker(detector_dir: Path, propagator: Any, video: Path, frames: int, *, detect_every: int,
                box_threshold: float, text_threshold: float, detector_size: tuple[int, int] = (800, 1333),
                max_objects: int | None = None, max_detections: int = 100, save: str = "masks,json", prompt: str = "person. car.",
                timer: C.ForwardTimer | None = None, dtype: str = "auto") -> dict[str, Any]:
    """One tracker run over ``frames`` frames of ``video`` with outputs written like the CLI does."""
    from gsam2_video.config import AssociationConfig, DetectorConfig, KeyframeConfig, TrackerConfig
    from gsam2_video.models.detector import Detector
    from gsam2_video.pipeline import Tracker
    from gsam2_video.sinks import AsyncWriter, make_sinks, prepare_output_dir

    t_load = time.perf_counter()
    det_cfg = DetectorConfig(model=str(detector_dir), box_threshold=box_threshold, text_threshold=text_threshold,
                             shortest_edge=detector_size[0], longest_edge=detector_size[1],
                             max_detections=max_detections)
    config = TrackerConfig(detector=det_cfg, association=AssociationConfig(max_objects=max_objects),
                           keyframes=KeyframeConfig(detect_every=detect_every), device="cpu")
    detector = Detector.from_pretrained(str(detector_dir), det_cfg, device="cpu", dtype=dtype)
    tracker = Tracker(detector, propagator, config)
    load_s = time.perf_counter() - t_load
    if timer is not None:
        timer.watch("detector", detector.model)
        timer.watch_sam2(propagator.model)
    kinds = [k for k in save.split(",") if k and k != "none"]
    with tempfile.TemporaryDirectory() as tmp:
        out_dir = prepare_output_dir(Path(tmp) / "out")
        t0 = time.perf_counter()
        run = tracker.track(str(video), prompt, max_frames=frames, keep_images="video" in kinds)
        writer = AsyncWriter(make_sinks(kinds, out_dir))
        writer.open(run.info, run.categories)
        ids: set[int] = set()
        n = 0
        with run:
            for result in run:
                writer.write(result)
                ids.update(int(t) for t in result.track_ids)
                n += 1
        writer.close()
        wall = time.perf_counter() - t0
    stats = run.stats.to_json()
    return {"precision": tracker.config.dtype, "frames": n, "tracks": len(ids), "keyframes": stats["keyframes"],
            "keyframe_reasons": stats["keyframe_reasons"], "detections": stats["detections"],
            "wall_s": round(wall, 3), "model_load_s": round(load_s, 3),
            "stage_seconds": stats["stage_seconds"], "writer_blocked_s": round(writer.blocked_seconds, 3),
            "peak_rss_mib": round(C.peak_rss_mib(), 1)}


def child(args: argparse.Namespace) -> dict[str, Any]:
    from gsam2_video.models.propagator import Sam2Propagator

    torch.set_num_threads(args.threads) if args.threads else None
    prop = Sam2Propagator.from_pretrained(str(C.sam2_dir(args.sam2_size)), device="cpu", dtype=args.dtype)
    timer = C.ForwardTimer()
    res = run_tracker(C.detector_dir(args.detector_kind), prop, Path(args.video), args.frames,
                      detect_every=args.detect_every, box_threshold=args.box_threshold,
                      text_threshold=args.box_threshold, detector_size=tuple(args.detector_size),
                      max_objects=args.max_objects, save=args.save, timer=timer, dtype=args.dtype)
    res["forward_s"] = {k: round(v, 3) for k, v in sorted(timer.seconds.items())}
    res["forward_calls"] = dict(sorted(timer.calls.items()))
    res["forward_total_s"] = round(timer.total, 3)
    res["overhead"] = round((res["wall_s"] - timer.total) / res["wall_s"], 4)
    res["load_average_after"] = C.load_average()
    return res


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--video", default=str(C.VIDEOS / "vtest.avi"))
    p.add_argument("--frames", type=int, default=30)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--sam2-size", choices=C.SIZES, default="real")
    p.add_argument("--detector-kind", choices=["tiny", "real"], default="real")
    p.add_argument("--detector-size", type=int, nargs=2, default=[480, 640], metavar=("SHORT", "LONG"))
    p.add_argument("--detect-every", type=int, default=10)
    p.add_argument("--box-threshold", type=float, default=0.3, help="box and text threshold")
    p.add_argument("--max-objects", type=int, default=None)
    p.add_argument("--save", default="masks,json")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    p.add_argument("--dtype", default="auto", choices=["auto", "fp32", "bf16"],
                   help="both models' precision (default: the product's default, auto)")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps(child(args)))
        return
    C.detector_dir(args.detector_kind), C.sam2_dir(args.sam2_size)
    passthrough = [a for a in sys.argv[1:] if a != "--child"]
    runs = [C.run_child(Path(__file__).resolve(), [*passthrough, "--child"]) for _ in range(args.runs)]
    overheads = [r["overhead"] for r in runs]
    C.emit({
        "setup": {"sam2": f"{args.sam2_size} ({C.sam2_image_size(args.sam2_size)} px hiera-tiny"
                          if args.sam2_size != "tiny" else "tiny test config", "detector": args.detector_kind,
                  "detector_input": args.detector_size, "frames": args.frames, "detect_every": args.detect_every,
                  "save": args.save, "dtype": args.dtype, "precision": runs[0]["precision"]},
        "runs": runs,
        "median": {"wall_s": C.median([r["wall_s"] for r in runs]),
                   "forward_total_s": C.median([r["forward_total_s"] for r in runs]),
                   "overhead": C.median(overheads)},
        "target": "overhead <= 0.10",
    })


if __name__ == "__main__":
    main()
