"""Memory against video length: our tracker stays flat, Meta's SAM2VideoPredictor grows with every frame.

Why: a tracker that holds every frame (Meta's predictor preloads the whole video as float tensors at the
model's input size and keeps every frame's outputs) runs out of memory on long videos; ours holds only
SAM 2's memory window. Each measurement runs in a fresh interpreter so peak RSS belongs to that run alone.

Runs (all on a looped real clip, ping-pong so motion stays continuous; only ``--unique`` decoded frames
are held by the source, the same at every length):

* ``pipeline``: the full Tracker (tiny random Grounding DINO + tiny random SAM 2, keyframes every 10,
  offline mode with back-fill) for ``--lengths`` frames (default 150 and 1500): peak RSS, RSS after model
  load, the largest ``propagator.held_bytes()`` seen and its value on the last frame, and a trace of
  current / peak RSS every 150 frames (shows whether a difference in peak RSS is growth or a one-off spike).
* ``meta`` and ``ours_prop``, side by side: the same random Meta hiera-tiny SAM 2.1 weights at a reduced
  input size (``--meta-size``, default 128 px), the same two box prompts on frame 0, propagated through
  ``--meta-lengths`` frames (default 150 and 600: Meta's predictor is too slow here for 1500 frames of a
  2-core shared CPU). Meta gets the frames as the JPEG folder it requires; held bytes for Meta are the
  unique tensor storages reachable from its inference state.

Run: /work/venv/bin/python benchmarks/memory.py [--lengths 150 1500] [--meta-lengths 150 600]; prints JSON.
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

BOXES = [(300.0, 120.0, 400.0, 380.0), (480.0, 160.0, 600.0, 460.0)]  # two people-sized boxes in vtest.avi


def _held_bytes_of(obj: Any) -> int:
    """Bytes of the unique tensor storages reachable through dicts / lists / tuples / sets."""
    seen: dict[int, int] = {}
    stack = [obj]
    visited: set[int] = set()
    while stack:
        o = stack.pop()
        if isinstance(o, torch.Tensor):
            st = o.untyped_storage()
            seen[st.data_ptr()] = st.nbytes()
        elif isinstance(o, (dict, list, tuple, set)) and id(o) not in visited:
            visited.add(id(o))
            stack.extend(o.values() if isinstance(o, dict) else o)
    return sum(seen.values())


def child_pipeline(args: argparse.Namespace) -> dict[str, Any]:
    from gsam2_video.config import AssociationConfig, DetectorConfig, KeyframeConfig, TrackerConfig
    from gsam2_video.pipeline import Tracker

    frames = C.read_frames(Path(args.video), args.unique)
    config = TrackerConfig(detector=DetectorConfig(box_threshold=0.05, text_threshold=0.05),
                           association=AssociationConfig(max_objects=args.max_objects),
                           keyframes=KeyframeConfig(detect_every=args.detect_every))
    tracker = Tracker.from_pretrained(C.detector_dir("tiny"), C.sam2_dir("tiny"), device="cpu", config=config)
    rss_loaded = C.current_rss_mib()
    held_max, held_last, n, ids = 0, 0, 0, set()
    trace: list[tuple[int, float, float]] = []  # (frames done, current RSS, peak RSS so far) every 150 frames
    t0 = time.perf_counter()
    run = tracker.track(C.LoopedSource(frames, args.frames, Path(args.video).stem), "person. car.")
    with run:
        for result in run:
            held_last = tracker.propagator.held_bytes()
            held_max = max(held_max, held_last)
            ids.update(int(t) for t in result.track_ids)
            n += 1
            if n % 150 == 0:
                trace.append((n, round(C.current_rss_mib(), 1), round(C.peak_rss_mib(), 1)))
    wall = time.perf_counter() - t0
    return {"frames": n, "tracks": len(ids), "keyframes": run.stats.keyframes, "wall_s": round(wall, 2),
            "rss_after_load_mib": round(rss_loaded, 1), "peak_rss_mib": round(C.peak_rss_mib(), 1),
            "held_bytes_max": held_max, "held_bytes_last": held_last, "rss_trace_frames_current_peak": trace}


def _write_jpegs(frames: list[np.ndarray], total: int, folder: Path) -> None:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    src = C.LoopedSource(frames, total)
    cache: dict[int, bytes] = {}
    for f in src:
        key = id(f.image)
        if key not in cache:
            tmp = folder / "_tmp.jpg"
            Image.fromarray(f.image).save(tmp, quality=95)
            cache[key] = tmp.read_bytes()
        (folder / f"{f.index:05d}.jpg").write_bytes(cache[key])
    (folder / "_tmp.jpg").unlink(missing_ok=True)


@torch.inference_mode()
def child_meta(args: argparse.Namespace) -> dict[str, Any]:
    predictor = C.meta_video_predictor(args.meta_size)
    rss_loaded = C.current_rss_mib()
    t0 = time.perf_counter()
    state = predictor.init_state(video_path=args.jpeg_dir)
    for i, box in enumerate(BOXES, start=1):
        predictor.add_new_points_or_box(state, frame_idx=0, obj_id=i, box=np.asarray(box, np.float32))
    held_max, n = 0, 0
    for _idx, _ids, _masks in predictor.propagate_in_video(state):
        n += 1
        if n % 50 == 0 or n == args.frames:
            held_max = max(held_max, _held_bytes_of(state))
    held_last = _held_bytes_of(state)
    wall = time.perf_counter() - t0
    return {"frames": n, "wall_s": round(wall, 2), "rss_after_load_mib": round(rss_loaded, 1),
            "peak_rss_mib": round(C.peak_rss_mib(), 1), "held_bytes_max": max(held_max, held_last),
            "held_bytes_last": held_last,
            "held_bytes_images": int(state["images"].untyped_storage().nbytes())
            if isinstance(state["images"], torch.Tensor) else None}


def child_ours_prop(args: argparse.Namespace) -> dict[str, Any]:
    prop = C.our_propagator_from_meta(args.meta_size)
    frames = C.read_frames(Path(args.video), args.unique)
    rss_loaded = C.current_rss_mib()
    t0 = time.perf_counter()
    held_max, held_last, n = 0, 0, 0
    for f in C.LoopedSource(frames, args.frames):
        if n == 0:
            prop.reset(f.height, f.width, num_frames=args.frames)
        feats = prop.encode(f.image, f.index)
        prop.propagate(feats)
        if n == 0:
            for i, box in enumerate(BOXES, start=1):
                prop.add_object(i, feats, box=box)
        prop.commit(feats)
        held_last = prop.held_bytes()
        held_max = max(held_max, held_last)
        n += 1
    wall = time.perf_counter() - t0
    return {"frames": n, "wall_s": round(wall, 2), "rss_after_load_mib": round(rss_loaded, 1),
            "peak_rss_mib": round(C.peak_rss_mib(), 1), "held_bytes_max": held_max, "held_bytes_last": held_last}


def _ratio(a: float, b: float) -> float:
    return round(b / a, 3) if a else float("nan")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--video", default=str(C.VIDEOS / "vtest.avi"))
    p.add_argument("--unique", type=int, default=50, help="decoded frames held and looped (ping-pong)")
    p.add_argument("--lengths", type=int, nargs=2, default=[150, 1500])
    p.add_argument("--meta-lengths", type=int, nargs=2, default=[150, 600])
    p.add_argument("--meta-size", type=int, default=128, help="SAM 2 input size of the Meta side-by-side runs")
    p.add_argument("--detect-every", type=int, default=10)
    p.add_argument("--max-objects", type=int, default=6)
    p.add_argument("--skip-meta", action="store_true")
    p.add_argument("--child", choices=["pipeline", "meta", "ours_prop"], help=argparse.SUPPRESS)
    p.add_argument("--frames", type=int, help=argparse.SUPPRESS)
    p.add_argument("--jpeg-dir", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        torch.manual_seed(0)
        fn = {"pipeline": child_pipeline, "meta": child_meta, "ours_prop": child_ours_prop}[args.child]
        print(json.dumps(fn(args)))
        return

    script = Path(__file__).resolve()
    common = ["--video", args.video, "--unique", str(args.unique), "--meta-size", str(args.meta_size),
              "--detect-every", str(args.detect_every), "--max-objects", str(args.max_objects)]
    C.detector_dir("tiny"), C.sam2_dir("tiny"), C.meta_checkpoint(args.meta_size)  # build outside the timing
    load_before = C.load_average()
    out: dict[str, Any] = {"pipeline_tiny": {}, "propagator_side_by_side": {}}
    for n in args.lengths:
        out["pipeline_tiny"][str(n)] = C.run_child(script, [*common, "--child", "pipeline", "--frames", str(n)])
    a, b = (out["pipeline_tiny"][str(n)] for n in args.lengths)
    out["pipeline_tiny"]["ratios_long_over_short"] = {
        "peak_rss": _ratio(a["peak_rss_mib"], b["peak_rss_mib"]),
        "peak_rss_above_load": _ratio(a["peak_rss_mib"] - a["rss_after_load_mib"],
                                      b["peak_rss_mib"] - b["rss_after_load_mib"]),
        "held_bytes_max": _ratio(a["held_bytes_max"], b["held_bytes_max"]),
    }
    if not args.skip_meta:
        frames = C.read_frames(Path(args.video), args.unique)
        with tempfile.TemporaryDirectory() as tmp:
            for n in args.meta_lengths:
                folder = Path(tmp) / f"jpeg{n}"
                _write_jpegs(frames, n, folder)
                side = out["propagator_side_by_side"].setdefault(str(n), {})
                side["meta"] = C.run_child(script, [*common, "--child", "meta", "--frames", str(n),
                                                    "--jpeg-dir", str(folder)])
                side["ours"] = C.run_child(script, [*common, "--child", "ours_prop", "--frames", str(n)])
        s, l = (out["propagator_side_by_side"][str(n)] for n in args.meta_lengths)
        out["propagator_side_by_side"]["ratios_long_over_short"] = {
            who: {"peak_rss": _ratio(s[who]["peak_rss_mib"], l[who]["peak_rss_mib"]),
                  "peak_rss_above_load": _ratio(s[who]["peak_rss_mib"] - s[who]["rss_after_load_mib"],
                                                l[who]["peak_rss_mib"] - l[who]["rss_after_load_mib"]),
                  "held_bytes_max": _ratio(s[who]["held_bytes_max"], l[who]["held_bytes_max"])}
            for who in ("meta", "ours")}
        out["propagator_side_by_side"]["model"] = (f"Meta sam2.1 hiera-tiny, random weights (seed 0), "
                                                   f"input {args.meta_size} px; ours = same weights converted")
    out["load_average_before"] = load_before
    C.emit(out)


if __name__ == "__main__":
    main()
