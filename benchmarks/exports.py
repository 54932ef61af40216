"""What the YOLO / COCO / CVAT exports cost per frame, beside the existing writers, and how fast ``eval`` scores.

Why: every export runs on the writer thread of a live or offline run, so its per-frame cost decides whether
it can keep up with the tracker; the scorer is run by users on whole clips, so its time per frame matters.

Setup: synthetic 1080 x 1920 frames with ``--objects`` moving ellipses (one of them with a hole, one in two
parts), written by each output alone through ``AsyncWriter`` (its per-sink time is the measurement), median
of ``--rounds`` rounds; then ``gsam2-video eval``'s mask scorer (J, F, Hungarian) and track scorer (HOTA,
IDF1, MOTA through TrackEval) on the masks / MOTS files of a run against a shifted copy of it.

Run: python benchmarks/exports.py [--frames 30 --objects 8 --rounds 3]; prints JSON (also written to
benchmarks/results/exports.json with --save).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import REPO, command_line, machine, median

from gsam2_video.sinks import AsyncWriter, make_sinks
from gsam2_video.types import FrameResult, VideoInfo

H, W = 1080, 1920
KINDS = ("masks", "json", "mots", "yolo", "coco", "cvat")


def frames(count: int, objects: int, shift: int = 0) -> list[FrameResult]:
    yy, xx = np.mgrid[:H, :W]
    rng = np.random.default_rng(0)
    centres = rng.uniform([150, 150], [H - 150, W - 150], (objects, 2))
    speeds = rng.uniform(-6, 6, (objects, 2))
    out = []
    for t in range(count):
        labels = np.zeros((H, W), np.int64)
        for k in range(objects):
            cy, cx = centres[k] + speeds[k] * t
            cx += shift
            ry, rx = 60 + 8 * k, 90 + 5 * k
            inside = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
            if k == 0:
                inside &= ((yy - cy) / (ry / 3)) ** 2 + ((xx - cx) / (rx / 3)) ** 2 > 1  # a hole
            if k == 1:
                inside &= np.abs(xx - cx) > 10  # two parts
            labels[inside] = k + 1
        ids = np.arange(1, objects + 1)
        masks = np.stack([labels == i for i in ids])
        image = np.full((H, W, 3), 90, np.uint8)
        image[..., 0] = (xx % 256).astype(np.uint8)
        out.append(FrameResult(t, t / 30, H, W, ids, masks, np.zeros((objects, 4)), np.full(objects, 0.9),
                               ids % 3, ["a", "b", "c"][0:1] * objects, image=image))
    for r in out:
        r.class_names = [["a", "b", "c"][c] for c in r.class_ids]
    return out


def write(kinds: tuple[str, ...], results: list[FrameResult], out: Path) -> dict[str, float]:
    with AsyncWriter(make_sinks(kinds, out), max_queue=4) as writer:
        writer.open(VideoInfo("bench", "memory://bench", W, H, 30.0, len(results)), ["a", "b", "c"])
        for r in results:
            writer.write(r)
    return {k: writer.sink_seconds[k] for k in kinds}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--frames", type=int, default=30)
    p.add_argument("--objects", type=int, default=8)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--save", action="store_true", help="also write benchmarks/results/exports.json")
    args = p.parse_args()
    results = frames(args.frames, args.objects)
    per_kind: dict[str, list[float]] = {k: [] for k in KINDS}
    for _ in range(args.rounds):
        for kind in KINDS:  # interleaved, one output at a time
            with tempfile.TemporaryDirectory() as tmp:
                per_kind[kind].append(write((kind,), results, Path(tmp))[kind] / len(results))
    writers = {k: round(1000 * median(v), 2) for k, v in per_kind.items()}

    from gsam2_video.evaluation import evaluate_masks, evaluate_tracks

    with tempfile.TemporaryDirectory() as tmp:
        gt, pred = Path(tmp) / "gt", Path(tmp) / "pred"
        write(("masks", "mots"), results, gt)
        write(("masks", "mots"), frames(args.frames, args.objects, shift=4), pred)
        t0 = time.perf_counter()
        report = evaluate_masks(pred / "masks", gt / "masks", match="hungarian")
        t_masks = time.perf_counter() - t0
        t0 = time.perf_counter()
        tracks = evaluate_tracks(pred / "mots.txt", gt / "mots.txt")
        t_tracks = time.perf_counter() - t0
    doc = {
        "command": command_line(),
        "machine": machine(),
        "setup": {"frame": [H, W], "frames": args.frames, "objects": args.objects, "rounds": args.rounds},
        "writer_ms_per_frame": writers,
        "eval": {"masks_ms_per_frame": round(1000 * t_masks / args.frames, 1),
                 "tracks_ms_per_frame": round(1000 * t_tracks / args.frames, 1),
                 "J&F_shifted_4px": round(report.means()["J&F"], 4), "HOTA_shifted_4px": round(tracks["HOTA"], 4)},
    }
    text = json.dumps(doc, indent=2)
    print(text)
    if args.save:
        (REPO / "benchmarks" / "results" / "exports.json").write_text(text + "\n")


if __name__ == "__main__":
    main()
