"""End-to-end tracker throughput on a GPU: frames/s, per-stage time, host reads and peak GPU memory.

What a user on an NVIDIA GPU gets: real-size random Grounding DINO (grounding-dino-tiny shapes) and SAM 2.1
hiera-tiny (1024 px), bikes.mp4 frames scaled to 1920 x 1080, keyframes every 10 frames, N = 1, 10, 30
live objects. The detector runs for real on every keyframe (its cost is measured) but its random boxes are
replaced by N grid boxes, so every run tracks exactly the objects asked for. No outputs are written (the
writers have their own benchmark, benchmarks/writers.py).

Per N, after one warm-up pass:
* ``fps``: frames per second over the timed frames, end to end (decode prefetch thread included);
* ``stage_ms``: mean milliseconds per frame in each pipeline stage, measured in a second pass where every
  stage boundary synchronises the GPU (so stages are attributed, at the cost of overlap);
* ``d2h_bytes_per_frame`` / ``host_reads_per_frame``: reads of device data on the host (tests/host_reads.py);
* ``peak_gpu_mib``: torch.cuda.max_memory_allocated over the run.

Run (GPU): python benchmarks/gpu_throughput.py --device cuda --objects 1 10 30 --frames 60
Smoke test (CPU, tiny models): python benchmarks/gpu_throughput.py --device cpu --size tiny --frames 4 --objects 2
Prints one JSON.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import _common as C


class GridAfterDetector:
    """Runs the real detector (its cost is part of the run), then reports N fixed grid boxes instead."""

    def __init__(self, detector: Any, n: int, height: int, width: int) -> None:
        self.detector = detector
        cols = int(np.ceil(np.sqrt(n * width / height)))
        rows = int(np.ceil(n / cols))
        xs, ys = np.linspace(0, width, cols + 1), np.linspace(0, height, rows + 1)
        cells = [(i, j) for j in range(rows) for i in range(cols)][:n]
        self.boxes = np.array([[xs[i] + 8, ys[j] + 8, xs[i + 1] - 8, ys[j + 1] - 8] for i, j in cells],
                              np.float32)

    def detect(self, image: np.ndarray, prompt: Any, frame_index: int) -> Any:
        from gsam2_video.types import Detections

        self.detector.detect(image, prompt, frame_index=frame_index)
        n = len(self.boxes)
        return Detections(self.boxes, np.full(n, 0.9, np.float32), np.zeros(n, np.int64), ["person"] * n)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def one(n: int, args: argparse.Namespace, frames: list[np.ndarray]) -> dict[str, Any]:
    from host_reads import count_host_reads

    from gsam2_video import pipeline
    from gsam2_video.config import (
        AssociationConfig,
        DetectorConfig,
        FrameExtras,
        KeyframeConfig,
        TrackerConfig,
    )
    from gsam2_video.models.detector import Detector
    from gsam2_video.models.sam2_model import Sam2Model
    from gsam2_video.pipeline import Tracker

    h, w = frames[0].shape[:2]
    device = torch.device(args.device)
    det_cfg = DetectorConfig(model=str(C.detector_dir(args.size)), box_threshold=0.3, text_threshold=0.3)
    detector = Detector.from_pretrained(det_cfg.model, det_cfg, device=args.device, dtype=args.dtype)
    sam2 = Sam2Model.from_pretrained(str(C.sam2_dir(args.size)), device=args.device, dtype=args.dtype)
    config = TrackerConfig(detector=det_cfg,
                           keyframes=KeyframeConfig(detect_every=10, score_trigger=False, scene_cut_threshold=None),
                           association=AssociationConfig(max_missed_keyframes=1000, iou_threshold=1.0,
                                                         duplicate_coverage=1.0, weak_iou=None,
                                                         reacquire_iou=None))
    tracker = Tracker(GridAfterDetector(detector, n, h, w), sam2, config)
    # what the CLI builds on a GPU for the default outputs (video, masks, json): overlay and RLE changes
    extras = FrameExtras.for_outputs(device.type, picture=args.extras, rle=args.extras)

    def run(count: int) -> tuple[float, Any, list[tuple[str, int]], int]:
        source = C.LoopedSource(frames, count, name="bikes-1080p")
        _sync(device)
        with count_host_reads() as reads:
            t0 = time.perf_counter()
            with tracker.track(source, "person.", mode="live", extras=extras) as r:
                emitted = sum(1 for _ in r)
            _sync(device)
            wall = time.perf_counter() - t0
        live = len(r.session.obj_ids) if r.session is not None else 0
        return wall, r.stats, reads.calls, live if emitted else 0

    run(min(args.frames, 12))  # warm-up: kernels compiled, allocator primed
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    wall, stats, calls, live = run(args.frames)
    out: dict[str, Any] = {"objects": n, "live_at_end": live, "frames": args.frames,
                           "fps": round(args.frames / wall, 3), "wall_s": round(wall, 3),
                           "host_reads_per_frame": round(len(calls) / args.frames, 2),
                           "d2h_bytes_per_frame": round(sum(c[1] for c in calls) / args.frames, 1),
                           "keyframes": stats.keyframes, "extras_redone": dict(stats.extras_redone)}
    if device.type == "cuda":
        out["peak_gpu_mib"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    # stage attribution: synchronise at every stage boundary
    enter, exit_ = pipeline._Timer.__enter__, pipeline._Timer.__exit__

    def s_enter(self: Any) -> None:
        _sync(device)
        enter(self)

    def s_exit(self: Any, *exc: object) -> None:
        _sync(device)
        exit_(self, *exc)

    pipeline._Timer.__enter__, pipeline._Timer.__exit__ = s_enter, s_exit  # type: ignore[method-assign]
    try:
        _, stats, _, _ = run(args.frames)
    finally:
        pipeline._Timer.__enter__, pipeline._Timer.__exit__ = enter, exit_  # type: ignore[method-assign]
    out["stage_ms"] = {k: round(v * 1e3 / args.frames, 2) for k, v in sorted(stats.stage_seconds.items())}
    return out


def main() -> None:
    import cv2

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--no-extras", dest="extras", action="store_false",
                   help="do not build the overlay and RLE changes on the GPU (the default outputs build them)")
    p.add_argument("--dtype", default="auto", choices=["auto", "fp32", "bf16"])
    p.add_argument("--size", default="real", choices=["tiny", "real"], help="model shapes (tiny: smoke test)")
    p.add_argument("--objects", type=int, nargs="+", default=[1, 10, 30])
    p.add_argument("--frames", type=int, default=60)
    p.add_argument("--height", type=int, default=1080)
    p.add_argument("--width", type=int, default=1920)
    args = p.parse_args()
    frames = [cv2.resize(f, (args.width, args.height), interpolation=cv2.INTER_LINEAR)
              for f in C.read_frames(C.VIDEOS / "bikes.mp4", 30)]
    runs = [one(n, args, frames) for n in args.objects]
    device: dict[str, Any] = {"device": args.device}
    if args.device.startswith("cuda"):
        device["gpu"] = torch.cuda.get_device_name(torch.device(args.device))
    from gsam2_video.kernels.status import kernels_available

    device["kernels"] = kernels_available()
    C.emit({"setup": {"models": f"{args.size} random Grounding DINO-T + SAM 2.1 hiera-tiny", "dtype": args.dtype,
                      "video": f"bikes.mp4 scaled to {args.width}x{args.height}", "detect_every": 10,
                      **device}, "runs": runs})


if __name__ == "__main__":
    main()
