"""Host-only work per frame on the tracker's main thread, at 1080p with N live objects.

Why: on a GPU the models run asynchronously and the host must only enqueue work; whatever the main thread
does outside torch operations (building label maps from host masks, per-object Python loops, PIL
resizing) is time the GPU waits. This benchmark runs the real Tracker loop (tiny random SAM 2, a scripted
detector placing N boxes in a grid, keyframes every 10 frames, live mode, no outputs) over bikes.mp4
frames scaled to 1920 x 1080 and splits each frame's wall time into (the detector finds the same N boxes on
every keyframe; they never match a track's random-weight mask, so ``max_objects=N`` holds the live tracks at N,
while ``--growing`` lets each keyframe add N more, the setup of the first recorded results):

* ``aten_ms``: time inside torch operations (torch's profiler times every top-level aten call; on a GPU
  this is the part that would be enqueued), and ``aten_ops`` their count;
* ``host_ms``: wall - aten: Python, numpy and PIL work on the main thread;
* ``preprocess_ms``: the part of host_ms spent in SAM 2's CPU preprocessing (PIL resize + normalise),
  which runs as a CUDA kernel on GPUs;
* ``host_reads``: reads of tensor data on the host (each a device sync on a GPU; tests/host_reads.py).

Medians over the non-keyframes and the keyframes of one run per N, in one process each.
The profiler adds about 2 us per aten op (partly counted as host time), so host_ms is a slight upper bound.

Run: python benchmarks/frame_path.py [--objects 1 10 30 --frames 30] [--code OTHER_CHECKOUT] [--extras];
prints JSON. ``--extras`` also builds the overlay and the RLE changes on the device (FrameExtras, what a GPU
run with video and JSON outputs does): the reads stay two, the copy grows by the picture and the change buffer.
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


class AtenTimer:
    """Wall time and count of the top-level aten operations run while active, from torch's (kineto) profiler.

    Why the profiler and not a Python ``TorchDispatchMode``: a dispatch mode costs 30-60 us of Python per op
    on this kind of CPU, and with 1,500 ops per frame that alone is 50-90 ms, all of it outside the timed
    ops, i.e. counted as host time. The profiler costs about 2 us per op. Only top-level events count
    (an op an op calls is inside its parent's time), so nothing is counted twice.
    """

    def __init__(self) -> None:
        self.seconds = 0.0
        self.ops = 0
        self._prof: Any = None

    def __enter__(self) -> AtenTimer:  # noqa: PYI034 - typing.Self needs Python 3.11
        self._prof = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU])
        self._prof.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._prof.__exit__(*exc)

    def collect(self) -> None:
        """Sum the events (after the timed region: reading them back is slow)."""
        top = [e for e in self._prof.events() if e.cpu_parent is None and e.name.startswith("aten::")]
        self.seconds = sum(e.cpu_time_total for e in top) / 1e6
        self.ops = len(top)


class GridDetector:
    """N boxes in a grid, the same on every keyframe (any frame_index signature)."""

    def __init__(self, n: int, height: int, width: int) -> None:
        cols = int(np.ceil(np.sqrt(n * width / height)))
        rows = int(np.ceil(n / cols))
        xs, ys = np.linspace(0, width, cols + 1), np.linspace(0, height, rows + 1)
        cells = [(i, j) for j in range(rows) for i in range(cols)][:n]
        self.boxes = np.array([[xs[i] + 8, ys[j] + 8, xs[i + 1] - 8, ys[j + 1] - 8] for i, j in cells],
                              np.float32)

    def detect(self, image: np.ndarray, prompt: Any, frame_index: int | None = None) -> Any:
        from gsam2_video.types import Detections

        n = len(self.boxes)
        return Detections(self.boxes, np.full(n, 0.9, np.float32), np.zeros(n, np.int64), ["person"] * n)


def child(args: argparse.Namespace) -> dict[str, Any]:
    import cv2

    if args.code:  # time another checkout's package (e.g. the code before a change)
        sys.path.insert(0, str(Path(args.code).resolve()))
        for name in [m for m in sys.modules if m == "gsam2_video" or m.startswith("gsam2_video.")]:
            del sys.modules[name]

    from host_reads import count_host_reads

    from gsam2_video.config import AssociationConfig, KeyframeConfig, PropagatorConfig, TrackerConfig
    from gsam2_video.models import sam2_preprocess
    from gsam2_video.models.propagator import Sam2Propagator
    from gsam2_video.pipeline import Tracker

    torch.set_num_threads(1)
    h, w = 1080, 1920
    frames = [cv2.resize(f, (w, h), interpolation=cv2.INTER_LINEAR)
              for f in C.read_frames(C.VIDEOS / "bikes.mp4", min(args.frames, 50))]
    prop = Sam2Propagator.from_pretrained(args.sam2_dir, PropagatorConfig(), device="cpu",
                                          dtype="fp32")
    config = TrackerConfig(keyframes=KeyframeConfig(detect_every=10, score_trigger=False, scene_cut_threshold=None),
                           association=AssociationConfig(max_missed_keyframes=100, iou_threshold=1.0,
                                                         duplicate_coverage=1.0, weak_iou=None,
                                                         reacquire_iou=None,
                                                         max_objects=None if args.growing else args.n))
    tracker = Tracker(GridDetector(args.n, h, w), prop, config)
    pre = {"s": 0.0}
    original = sam2_preprocess.preprocess_frame

    def timed_preprocess(*a: Any, **k: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return original(*a, **k)
        finally:
            pre["s"] += time.perf_counter() - t0

    for module in list(sys.modules.values()):  # wherever it was imported by name
        if getattr(module, "preprocess_frame", None) is original:
            module.preprocess_frame = timed_preprocess
    rows = []
    source = C.LoopedSource(frames, args.frames, name="bikes-1080p")
    track_kw: dict[str, Any] = {}
    if args.extras:  # what a GPU run with video and RLE outputs builds in the frame's copy
        from gsam2_video.config import FrameExtras

        track_kw["extras"] = FrameExtras(overlay=True, rle=True)
    with tracker.track(source, "person.", mode="live", **track_kw) as run, count_host_reads() as reads:
        it = iter(run)
        while True:
            timer = AtenTimer()
            pre["s"] = 0.0
            mark = reads.mark()
            with timer:
                t0 = time.perf_counter()
                result = next(it, None)
                wall = time.perf_counter() - t0
            if result is None:
                break
            timer.collect()
            live = len(getattr(run, "session", None).obj_ids) if getattr(run, "session", None) is not None \
                else len(tracker.propagator.obj_ids)
            calls = reads.since(mark)
            rows.append({"frame": result.frame_index, "keyframe": bool(result.is_keyframe), "live": live,
                         "wall_ms": wall * 1e3, "aten_ms": timer.seconds * 1e3,
                         "host_ms": (wall - timer.seconds) * 1e3, "preprocess_ms": pre["s"] * 1e3,
                         "aten_ops": timer.ops, "host_reads": len(calls),
                         "host_read_bytes": sum(c[1] for c in calls)})
    import gsam2_video

    out: dict[str, Any] = {"objects": args.n, "frames": len(rows),
                           "package": str(Path(gsam2_video.__file__).resolve().parent)}
    for kind, sel in (("non_keyframe", [r for r in rows[1:] if not r["keyframe"]]),
                      ("keyframe", [r for r in rows if r["keyframe"]])):
        out[kind] = {k: round(C.median([r[k] for r in sel]), 3) for k in
                     ("wall_ms", "aten_ms", "host_ms", "preprocess_ms", "aten_ops", "host_reads", "host_read_bytes",
                      "live")} if sel else {}
        if sel:
            out[kind]["host_ms_without_preprocess"] = round(
                C.median([r["host_ms"] - r["preprocess_ms"] for r in sel]), 3)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--objects", type=int, nargs="+", default=[1, 10, 30])
    p.add_argument("--frames", type=int, default=30)
    p.add_argument("--code", default=None, help="checkout whose gsam2_video package is timed (default: this one)")
    p.add_argument("--extras", action="store_true",
                   help="build the overlay and RLE changes on the device as a GPU run with video/json outputs does")
    p.add_argument("--growing", action="store_true",
                   help="every keyframe adds N new tracks (the setup of the results before --growing existed: "
                        "a median of 1.5 N live objects over 20 frames) instead of holding N live tracks")
    p.add_argument("--n", type=int, default=1, help=argparse.SUPPRESS)
    p.add_argument("--sam2-dir", default=None, help=argparse.SUPPRESS)
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        import json

        print(json.dumps(child(args)))
        return
    extra = ["--code", args.code] if args.code else []
    extra += ["--extras"] if args.extras else []
    extra += ["--growing"] if args.growing else []
    extra += ["--sam2-dir", str(C.sam2_dir("tiny"))]  # built by this checkout's test builders
    runs = [C.run_child(Path(__file__).resolve(), ["--frames", str(args.frames), "--n", str(n), *extra, "--child"])
            for n in args.objects]
    C.emit({"code": args.code or "this checkout", "setup": {"video": "bikes.mp4 scaled to 1920x1080", "sam2": "tiny test config, fp32",
                      "detector": "scripted grid boxes", "detect_every": 10, "mode": "live", "threads": 1,
                      "extras": "overlay + rle" if args.extras else "none",
                      "live_tracks": "N more every keyframe" if args.growing else "N (max_objects=N)"},
            "runs": runs, "code_package": runs[0].get("package"), "target": "non-keyframe host_ms <= 15 at 1080p with 10 objects"})


if __name__ == "__main__":
    main()
