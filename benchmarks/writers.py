"""Per-frame cost of the output writers at 720p and 1080p with 1, 10 and 30 objects.

What is timed, per (size, objects, sink set): ``--frames`` results (5 distinct frames from bikes.mp4 resized
to the size, with blob-shaped objects from tests/clip_results.py, repeated with increasing frame indices),
written through ``make_sinks`` + ``AsyncWriter`` from the first write to the
end of ``close()`` (so the encoder's flush and the JSON/MOTS finishing are included), divided by the frame
count; the median of ``--repeats`` such runs is reported, after one untimed run that warms up fonts, codecs
and caches. A short run weighs the encoder's start and its flush (x264 holds its lookahead and frame
threads' frames until close) on few frames; ``--steady N`` also times an N-frame run right after each short
one and reports ``steady_ms_per_frame``, the median over the pairs of (long - short) / (N - frames): the
cost of one more frame once the writers are running, which is what sets the pace of a long video or a
stream; ``fixed_ms`` is the rest of the short run (start and flush, paid once per video). Sink sets: every sink alone, the default set
``video,masks,json`` and the default set without video (``masks,json``). Also timed alone: ``draw`` (the
annotated frame only) and, for the label-map code, ``label_map`` (painting today's N masks into the label
map, the part the device path removes because the GPU hands over the label map itself).

Both the wall time and the process CPU time (all threads) are recorded: the machine these numbers come from
is shared, and under load the wall time of a one-core run grows with the other processes while its CPU time
stays the work done; ``draw`` and ``label_map`` are CPU time. The pool's gain shows in wall time only.

Two modes, each in a fresh child process pinned with ``sched_setaffinity`` before numpy/OpenCV start:
``--labels`` builds the results from a label map (``FrameResult(..., labels=...)``), as the pipeline does
since the device-path change, instead of N masks (then ``label_map`` costs nothing); ``--extras`` adds what
a GPU builds in the frame's copy (FrameExtras: the masks' overlay, the RLE changes), so what is timed is the
host's share of each writer on a GPU: boxes and captions instead of the whole drawing, RLE from the changes
instead of a scan of each box.

``single`` = one core, sinks one after another, OpenCV and the encoder on one thread; ``pool`` = two cores,
sinks in parallel lanes, OpenCV and the encoder on two threads. ``--code DIR`` runs another checkout's
package (e.g. an export of main) with the same frames and timing, for the before/after comparison; options
that the older code lacks (parallel lanes, encoder threads) are then left at that code's behaviour.

    python benchmarks/writers.py --out benchmarks/results/writers_after.json
    git archive main | tar -x -C /tmp/main_code
    python benchmarks/writers.py --code /tmp/main_code --out benchmarks/results/writers_before.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SIZES = {"720p": (720, 1280), "1080p": (1080, 1920)}
SINK_SETS = {"video": ["video"], "masks": ["masks"], "json": ["json"], "mots": ["mots"], "mot": ["mot"],
             "default": ["video", "masks", "json"], "default_no_video": ["masks", "json"]}


def _pin(mode: str) -> list[int]:
    """Restrict this process to one core (single) or two (pool); returns the cores used."""
    allowed = sorted(os.sched_getaffinity(0))
    cores = allowed[:1] if mode == "single" else allowed[:2]
    os.sched_setaffinity(0, cores)
    return cores


def child(args: argparse.Namespace) -> dict[str, Any]:
    cores = _pin(args.mode)
    threads = 1 if args.mode == "single" else len(cores)
    if args.code:
        sys.path.insert(0, str(Path(args.code).resolve()))
    else:
        sys.path.insert(0, str(REPO))
    sys.path.insert(1, str(REPO / "tests"))
    import copy
    import inspect
    import shutil
    import statistics

    import cv2
    import numpy as np

    cv2.setNumThreads(threads)
    from clip_results import clip_frames, clip_results

    import gsam2_video
    from gsam2_video.drawing import annotate
    from gsam2_video.sinks import AsyncWriter, make_sinks

    writer_kw: dict[str, Any] = {}
    if "parallel" in inspect.signature(AsyncWriter).parameters:
        writer_kw["parallel"] = args.mode == "pool"
    sinks_kw: dict[str, Any] = {}
    if "video_threads" in inspect.signature(make_sinks).parameters:
        sinks_kw["video_threads"] = threads
    try:
        from gsam2_video.labelmap import resolved_label_map
        from gsam2_video.sinks import FrameView
    except ImportError:  # the code before the label-map writers
        resolved_label_map = None
        FrameView = None
    from gsam2_video.types import FrameResult, VideoInfo

    if args.labels and "labels" not in inspect.signature(FrameResult).parameters:
        raise SystemExit("--labels needs a FrameResult that takes labels=")
    if args.extras and (not args.labels or "overlay" not in inspect.signature(FrameResult).parameters):
        raise SystemExit("--extras needs --labels and a FrameResult that takes overlay= and label_changes=")

    video = Path(args.videos) / "bikes.mp4"
    rows: list[dict[str, Any]] = []
    for size_name in args.sizes.split(","):
        size = SIZES[size_name]
        frames = clip_frames(video, 5, size)
        for objects in (int(n) for n in args.objects.split(",")):
            distinct = clip_results(frames, objects, seed=objects)
            if args.labels:  # the pipeline's results: a label map, no per-track masks
                distinct = [FrameResult(r.frame_index, r.timestamp, r.height, r.width, r.track_ids,
                                        boxes=r.boxes, scores=r.scores, class_ids=r.class_ids,
                                        class_names=r.class_names, image=r.image,
                                        labels=r.label_map(np.uint8 if objects < 256 else np.uint16))
                            for r in distinct]
            if args.extras:  # what a GPU hands over besides the label map (built here, untimed)
                distinct = [_with_extras(r) for r in distinct]
            longest = max(args.steady or 0, args.frames)
            all_results = []
            for i in range(longest):  # shallow copies share the arrays; only the index and time differ
                r = copy.copy(distinct[i % len(distinct)])
                r.frame_index, r.timestamp = i, i / 25
                all_results.append(r)
            results = all_results[:args.frames]

            def timed(kinds: list[str], count: int, pool: list[Any] = all_results,
                      frame_size: tuple[int, int] = size) -> tuple[float, float]:
                """Wall and CPU seconds to write the first ``count`` results, from the first write to the end
                of close()."""
                out = Path(tempfile.mkdtemp(prefix="gsam2_bench_writers_"))
                try:
                    writer = AsyncWriter(make_sinks(kinds, out, **sinks_kw), max_queue=count + 1, **writer_kw)
                    writer.open(VideoInfo("bikes", str(video), frame_size[1], frame_size[0], 25.0, count),
                                ["person", "bicycle", "car"])
                    start, start_cpu = time.perf_counter(), time.process_time()
                    for r in pool[:count]:
                        writer.write(r)
                    writer.close()
                    return time.perf_counter() - start, time.process_time() - start_cpu
                finally:
                    shutil.rmtree(out, ignore_errors=True)

            row: dict[str, Any] = {"size": size_name, "objects": objects, "ms_per_frame": {},
                                   "cpu_ms_per_frame": {}}
            if args.steady:
                row.update(steady_ms_per_frame={}, steady_cpu_ms_per_frame={}, fixed_ms={})
            for set_name, kinds in SINK_SETS.items():
                times, cpu, slopes, slopes_cpu, fixed = [], [], [], [], []
                for rep in range(args.repeats + 1):
                    wall, used = timed(kinds, args.frames)
                    if args.steady:  # the long run right after the short one, so both see the same load
                        wall_long, used_long = timed(kinds, args.steady)
                    if not rep:  # run 0 warms up
                        continue
                    times.append(wall / args.frames)
                    cpu.append(used / args.frames)
                    if args.steady:
                        extra = args.steady - args.frames
                        slopes.append((wall_long - wall) / extra)
                        slopes_cpu.append((used_long - used) / extra)
                        fixed.append(wall - args.frames * slopes[-1])
                row["ms_per_frame"][set_name] = round(1000 * statistics.median(times), 2)
                row["cpu_ms_per_frame"][set_name] = round(1000 * statistics.median(cpu), 2)
                if args.steady:
                    row["steady_ms_per_frame"][set_name] = round(1000 * statistics.median(slopes), 2)
                    row["steady_cpu_ms_per_frame"][set_name] = round(1000 * statistics.median(slopes_cpu), 2)
                    row["fixed_ms"][set_name] = round(1000 * statistics.median(fixed), 1)
            draw, paint = [], []
            for _ in range(args.repeats):
                start = time.process_time()
                for r in results:
                    if FrameView is not None:
                        view = FrameView(r)
                        annotate(r.image, r, label_map=view.label_map(), boxes_xywh=view.boxes()[0])
                    else:
                        annotate(r.image, r)
                draw.append((time.process_time() - start) / len(results))
                if resolved_label_map is not None:
                    start = time.process_time()
                    for r in results:
                        resolved_label_map(r)
                    paint.append((time.process_time() - start) / len(results))
            row["cpu_ms_per_frame"]["draw"] = round(1000 * statistics.median(draw), 2)
            if paint:
                row["cpu_ms_per_frame"]["label_map"] = round(1000 * statistics.median(paint), 2)
            rows.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
            del results
    return {"mode": args.mode, "cores": cores, "threads": threads, "writer_options": writer_kw,
            "sink_options": sinks_kw, "package": str(Path(gsam2_video.__file__).parent), "rows": rows}


def _with_extras(r: Any) -> Any:
    """``r`` as the pipeline emits it when FrameExtras are on: with the masks' overlay and the label map's
    RLE changes (computed here with the same torch code a GPU runs)."""
    import torch

    from gsam2_video.drawing import DEFAULT_ALPHA, line_thickness
    from gsam2_video.drawing_torch import overlay_torch
    from gsam2_video.ops.rle import label_changes_packed, unpack_changes
    from gsam2_video.types import FrameResult

    labels = torch.from_numpy(r.labels)
    drawn = overlay_torch(torch.from_numpy(r.image), labels, r.track_ids.tolist(), r.scores.tolist(),
                          alpha=DEFAULT_ALPHA, thickness=line_thickness(r.height, r.width))
    changes = unpack_changes(label_changes_packed(labels, r.height * r.width).numpy())
    return FrameResult(r.frame_index, r.timestamp, r.height, r.width, r.track_ids, boxes=r.boxes, scores=r.scores,
                       class_ids=r.class_ids, class_names=r.class_names, image=r.image, labels=r.labels,
                       overlay=drawn.numpy(), label_changes=changes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="720p,1080p")
    parser.add_argument("--objects", default="1,10,30")
    parser.add_argument("--frames", type=int, default=8, help="frames per timed run")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per cell (median)")
    parser.add_argument("--steady", type=int, default=None, metavar="N",
                        help="also time N-frame runs, each right after a --frames run, and report the cost of "
                             "one more frame (steady_ms_per_frame: the difference of the two runs over the "
                             "extra frames) apart from the per-video start and flush (fixed_ms)")
    parser.add_argument("--modes", default="single,pool")
    parser.add_argument("--code", default=None, help="checkout whose gsam2_video package is timed")
    parser.add_argument("--videos", default=str(Path(os.environ.get("GSAM2_DATA", REPO.parent / "shared" /
                                                                    "data")) / "videos"))
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    parser.add_argument("--labels", action="store_true",
                        help="results carry a label map (labels=), as the pipeline's do, instead of masks")
    parser.add_argument("--extras", action="store_true",
                        help="results carry the overlay and RLE changes a GPU builds (FrameExtras); needs --labels")
    parser.add_argument("--mode", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.steady is not None and args.steady <= args.frames:
        parser.error(f"--steady must be more than --frames ({args.frames}), got {args.steady}")
    if args.mode:  # child process: one mode
        print(json.dumps(child(args)))
        return
    sys.path.insert(0, str(HERE))
    from _common import command_line, machine

    runs = []
    for mode in args.modes.split(","):
        cmd = [sys.executable, __file__, "--mode", mode, "--sizes", args.sizes, "--objects", args.objects,
               "--frames", str(args.frames), "--repeats", str(args.repeats), "--videos", args.videos]
        if args.code:
            cmd += ["--code", args.code]
        if args.steady:
            cmd += ["--steady", str(args.steady)]
        if args.labels:
            cmd += ["--labels"]
        if args.extras:
            cmd += ["--extras"]
        env = {**os.environ, "OMP_NUM_THREADS": "1" if mode == "single" else "2"}
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=True, env=env, cwd=REPO)
        runs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    doc = {"command": command_line(), "machine": machine(), "code": args.code or "this checkout",
           "results_from": ("label maps + GPU extras (overlay, RLE changes)" if args.extras
                            else "label maps" if args.labels else "masks"),
           "frames_per_run": args.frames, "steady_frames_per_run": args.steady, "repeats": args.repeats,
           "runs": runs}
    text = json.dumps(doc, indent=2)
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
