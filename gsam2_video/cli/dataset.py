"""``gsam2-video dataset INPUT... --out DIR (--prompt TEXT | --manifest FILE) [--shard I/N] [--backend ray]``
and ``gsam2-video dataset --merge DIR``.

It has its own inputs, filters and resume rules; the model, tracking and decoding options come from
:mod:`.options`, shared with ``track``, so the two commands accept the same spelling for the same thing
(``--max-live-objects`` caps simultaneous tracks in both; the per-video filter that keeps the longest
objects is ``--keep-longest``). Inputs (every one present, readable and not empty), manifest, filters
and the output folder are all checked before torch is imported, so before any model loads (and before
Ray starts). Exit code 0 when every video is done (or was already), 1 when any video
failed (for ``--merge``: when the merged folder lists failed videos), 130 on Ctrl-C.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ..dataset.exports import SAVE_DEFAULT, parse_dataset_save
from ..dataset.filters import Filters
from ..dataset.inputs import JobDefaults, SourceOptions, check_sources, collect_jobs
from ..dataset.layout import DatasetLayout
from ..dataset.merge import merge_dataset
from ..dataset.ray_backend import import_ray
from ..dataset.runner import DatasetRunner, RunnerOptions
from ..dataset.shard import Shard
from ..dataset.work import TrackerSpec
from ..errors import ConfigError
from .options import (
    add_decoding_options,
    add_model_options,
    add_progress_option,
    add_retired_option,
    float_at_least,
    int_at_least,
    tracker_config,
)

EPILOG = """\
layout of DIR:
  Annotations/<video>/00000.png  palette PNG per frame (pixel = object id, 0 = background)
  JPEGImages/<video>/00000.jpg   frames (--save-frames)
  meta.json                      YouTube-VOS meta: objects per video with category and frames
  instances.json                 YouTube-VIS annotations (COCO RLE) for the whole set
  runs/<video>/{objects,run}.json  per-video record and run report
  failures.jsonl                 videos that failed in the latest run
  yolo/ coco.json cvat/          --save yolo,coco,cvat: YOLO segmentation (split by video), COCO, CVAT XML
Re-running the same command skips finished videos and redoes partial ones.

many machines:
  --shard I/N (I = 0..N-1) labels the videos whose name hashes to shard I; N shards may write one DIR
  at the same time (a job array). They leave meta.json / instances.json to a final
  'gsam2-video dataset --merge DIR' once all shards have finished.
  --backend ray runs the videos on a Ray cluster (pip install 'gsam2-video[ray]'): each worker loads the
  models once; a worker that dies has its video retried on another. This process writes DIR.

manifest (.jsonl or .csv): one video per row with 'source' (relative to the manifest), optional
'prompt', 'name' and overrides: decoder start stride max_frames min_area min_track_length keep_longest
classes, and tracker fields such as detect_every or iou_threshold.
"""


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``dataset`` on the top-level CLI's subparsers."""
    p = subparsers.add_parser(
        "dataset", help="label many videos into a YouTube-VOS / YouTube-VIS mask dataset (resumable)",
        description="Track the objects a prompt names through every input video and write per-frame "
                    "palette masks, meta.json and instances.json. Safe to kill and re-run.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="*", metavar="INPUT",
                   help="video files, folders of videos (or of frames), globs")
    p.add_argument("--out", type=Path, default=None, metavar="DIR", help="dataset folder (required)")
    p.add_argument("--merge", type=Path, default=None, metavar="DIR",
                   help="after shard runs: build meta.json, instances.json, failures.jsonl and the --save exports "
                        "of DIR from its finished videos (no inputs, no models)")
    p.add_argument("--prompt", default=None, help='classes to label, e.g. "person. car." '
                                                  "(default for manifest rows without one)")
    p.add_argument("--manifest", type=Path, default=None, metavar="FILE",
                   help="JSONL or CSV with per-video source, prompt and setting overrides")
    p.add_argument("--save", default=None, metavar="LIST",  # None: SAVE_DEFAULT (see track's --save)
                   help=f"comma list of outputs: masks and json (Annotations/, meta.json, instances.json; always "
                        f"written) plus yolo (yolo/, implies --save-frames), coco (coco.json), cvat (cvat/<video>.xml);"
                        f" default {SAVE_DEFAULT}. Also for --merge")
    p.add_argument("--save-frames", action="store_true", help="also write JPEGImages/<video>/<frame>.jpg")
    p.add_argument("--jpeg-quality", type=int_at_least(1), default=95, metavar="Q",
                   help="JPEG quality of saved frames (default 95)")
    g = p.add_argument_group("filters (per video, after tracking)")
    g.add_argument("--min-area", type=int_at_least(0), default=0, metavar="N",
                   help="drop an object's mask on frames where it has fewer than N pixels")
    g.add_argument("--min-track-length", type=int_at_least(1), default=1, metavar="N",
                   help="drop objects present on fewer than N frames")
    g.add_argument("--classes", default=None, metavar="A,B",
                   help="keep only objects of these classes (names from the prompt)")
    g.add_argument("--keep-longest", type=int_at_least(1), default=None, metavar="N",
                   help="keep at most N objects per video, the longest tracks first (a filter after tracking; "
                        "--max-live-objects caps tracks while tracking and saves compute)")
    p.add_argument("--allow-partial", action="store_true",
                   help="keep videos that decode only partly (truncated files) instead of failing them")
    add_progress_option(p)
    add_decoding_options(p)
    g = p.add_argument_group("many machines")
    g.add_argument("--shard", default=None, metavar="I/N",
                   help="label only shard I of N (I from 0; by a hash of each video's name, so stable across "
                        "re-runs); run --merge DIR when all N have finished")
    g.add_argument("--backend", default="local", choices=["local", "ray"],
                   help="local: this process; ray: workers on a Ray cluster (needs gsam2-video[ray])")
    g.add_argument("--ray-address", default=None, metavar="ADDR",
                   help="Ray cluster to join (e.g. ray://head:10001 or auto); default: RAY_ADDRESS, else a "
                        "local Ray started for this run")
    g.add_argument("--workers", type=int_at_least(1), default=None, metavar="N",
                   help="Ray workers (default: as many as the cluster's CPUs, or GPUs, fit)")
    g.add_argument("--gpus-per-worker", type=float_at_least(0.0), default=0.0, metavar="F",
                   help="GPUs each Ray worker reserves (e.g. 1, or 0.5 for two per GPU); default 0")
    g.add_argument("--cpus-per-worker", type=float_at_least(0.01), default=1.0, metavar="F",
                   help="CPUs each Ray worker reserves; also its torch threads (default 1)")
    g.add_argument("--max-retries", type=int_at_least(0), default=2, metavar="N",
                   help="times a video is retried after its Ray worker died (default 2)")
    add_model_options(p)
    # dataset's --max-objects was the per-video filter while track's was the live cap: one spelling, two
    # meanings, so it is refused rather than silently given either one
    add_retired_option(p, "--max-objects", "renamed: use --keep-longest N (keep the N longest objects per "
                                           "video, what dataset --max-objects did) or --max-live-objects N "
                                           "(cap simultaneous tracks while tracking)")
    return p


def _run_merge(args: argparse.Namespace) -> int:
    if args.inputs or args.manifest is not None or args.out is not None or args.shard is not None:
        raise ConfigError("--merge DIR takes no inputs, --manifest, --out or --shard")
    if not args.merge.is_dir():
        raise ConfigError(f"--merge {args.merge}: no such dataset folder")
    if not (args.merge / "runs").is_dir() and not (args.merge / "shards").is_dir():
        raise ConfigError(f"--merge {args.merge}: not a gsam2-video dataset folder (it has no runs/ or shards/)")
    layout = DatasetLayout(args.merge)
    summary = merge_dataset(layout, parse_dataset_save(args.save or SAVE_DEFAULT))
    print(f"gsam2-video dataset: {summary.line()} -> {layout.root}", file=sys.stderr)
    if summary.failures:
        print(f"gsam2-video dataset: failures listed in {layout.failures_path}", file=sys.stderr)
    return 1 if summary.failures else 0


def run(args: argparse.Namespace) -> int:
    """Run the ``dataset`` command; returns the exit code (1 if any video failed)."""
    if args.merge is not None:
        return _run_merge(args)
    if args.out is None:
        raise ConfigError("dataset needs --out DIR (or --merge DIR after shard runs)")
    if args.manifest is None and not args.inputs:
        raise ConfigError("dataset needs INPUT paths or --manifest FILE")
    if args.inputs and not args.prompt:
        raise ConfigError("inputs given on the command line need --prompt")
    exports = parse_dataset_save(args.save or SAVE_DEFAULT)
    shard = Shard.parse(args.shard) if args.shard is not None else None
    if args.backend == "ray":
        import_ray()  # fail in one line before any work when Ray is missing
    elif (args.ray_address, args.workers) != (None, None) or args.gpus_per_worker:
        raise ConfigError("--ray-address, --workers and --gpus-per-worker need --backend ray")
    defaults = JobDefaults(
        prompt=args.prompt,
        filters=Filters(min_area=args.min_area, min_track_length=args.min_track_length,
                        max_objects=args.keep_longest, classes=Filters.parse_classes(args.classes)),
        source=SourceOptions(decoder=args.decoder, start=args.start, stride=args.stride,
                             max_frames=args.max_frames))
    jobs = collect_jobs(args.inputs, defaults, args.manifest)
    check_sources(shard.select(jobs) if shard is not None else jobs)  # a shard runs (and checks) its own
    config = tracker_config(args)
    config.mode = "offline"
    model_settings = {k: v for k, v in config.to_json().items() if k != "device"}
    spec = TrackerSpec(detector=str(args.detector), sam2=str(args.sam2), device=args.device, dtype=args.dtype,
                       config=config)
    layout = DatasetLayout(args.out)
    options = RunnerOptions(save_frames=args.save_frames or "yolo" in exports, allow_partial=args.allow_partial,
                            progress=not args.no_progress, jpeg_quality=args.jpeg_quality, exports=exports)
    backend = None
    if args.backend == "ray":
        from ..dataset.ray_backend import RayBackend, RayOptions

        backend = RayBackend(spec, RayOptions(address=args.ray_address, workers=args.workers,
                                              gpus_per_worker=args.gpus_per_worker,
                                              cpus_per_worker=args.cpus_per_worker,
                                              max_retries=args.max_retries), options)
    runner = DatasetRunner(spec.build, layout, options, model_settings, shard=shard, backend=backend)
    summary = runner.run(jobs)
    where = f"shard {shard}: " if shard is not None else ""
    print(f"gsam2-video dataset: {where}{summary.line()} -> {layout.root}", file=sys.stderr)
    if summary.failed:
        failures = layout.failures_path if shard is None else layout.shard_dir(shard) / "failures.jsonl"
        print(f"gsam2-video dataset: failures listed in {failures}", file=sys.stderr)
    if shard is not None:
        print(f"gsam2-video dataset: when all {shard.count} shards have finished, run: "
              f"gsam2-video dataset --merge {layout.root}", file=sys.stderr)
    if summary.interrupted:
        return 130
    return 1 if summary.failed else 0
