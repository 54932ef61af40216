"""``gsam2-video track`` and ``gsam2-video dataset``.

Errors a user can fix (bad source, bad option, missing weights) print one line and exit non-zero; Ctrl-C
finishes the frames already done and closes every output properly, marking run.json as interrupted.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from .config import (
    DEFAULT_DETECTOR,
    DEFAULT_SAM2,
    AssociationConfig,
    DetectorConfig,
    KeyframeConfig,
    PropagatorConfig,
    TrackerConfig,
)
from .errors import Gsam2Error

log = logging.getLogger("gsam2_video")

SAVE_DEFAULT = "video,masks,json"


def int_at_least(low: int) -> Callable[[str], int]:
    """argparse type: an integer >= ``low`` (so a bad value is a one-line usage error)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be >= {low}, got {value}")
        return value

    return parse


def _unit_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {value}")
    return value


def add_model_options(p: argparse.ArgumentParser) -> None:
    """Model, device and keyframe options shared by ``track`` and ``dataset``."""
    g = p.add_argument_group("models")
    g.add_argument("--detector", default=DEFAULT_DETECTOR, metavar="ID|PATH",
                   help=f"Grounding DINO / OWLv2 hub id or local directory (default {DEFAULT_DETECTOR})")
    g.add_argument("--sam2", default=DEFAULT_SAM2, metavar="ID|PATH",
                   help=f"SAM 2 hub id, local directory or Meta .pt checkpoint (default {DEFAULT_SAM2})")
    g.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    g.add_argument("--dtype", default="auto", choices=["auto", "fp32", "bf16", "fp16"],
                   help="auto (default): bf16 autocast where the GPU or CPU has bf16 hardware (Ampere+, AVX-512 "
                        "BF16, AMX), else fp32; fp32: exact; fp16: GPU only")
    g = p.add_argument_group("detection and tracking")
    g.add_argument("--detect-every", type=int_at_least(1), default=10, metavar="K",
                   help="run the detector every K frames (plus adaptive keyframes); default 10")
    g.add_argument("--box-threshold", type=_unit_float, default=0.35, metavar="F")
    g.add_argument("--text-threshold", type=_unit_float, default=0.25, metavar="F")
    g.add_argument("--max-objects", type=int_at_least(1), default=None, metavar="N",
                   help="cap on simultaneous tracks: once full, new objects are not started "
                        "(the best-scoring detections are admitted first)")
    g.add_argument("--detector-size", type=int_at_least(1), nargs=2, default=(800, 1333),
                   metavar=("SHORT", "LONG"), help="detector input shortest / longest edge (default 800 1333)")
    g.add_argument("--iou-threshold", type=_unit_float, default=0.5, metavar="F",
                   help="minimum mask IoU to match a detection to a track (default 0.5)")


def tracker_config(args: argparse.Namespace) -> TrackerConfig:
    """The TrackerConfig the shared model options describe."""
    short, long_ = args.detector_size
    config = TrackerConfig(
        detector=DetectorConfig(model=args.detector, box_threshold=args.box_threshold,
                                text_threshold=args.text_threshold, shortest_edge=short, longest_edge=long_),
        propagator=PropagatorConfig(model=args.sam2),
        association=AssociationConfig(iou_threshold=args.iou_threshold, max_objects=args.max_objects),
        keyframes=KeyframeConfig(detect_every=args.detect_every),
        device=args.device, dtype=args.dtype,
        mode=getattr(args, "mode", "auto") or "auto",
    )
    config.validate()
    return config


def _build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="gsam2-video",
        description="Track text-specified objects through video (Grounding DINO + SAM 2).")
    parser.add_argument("--version", action="version", version=f"gsam2-video {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{track,dataset}")

    t = sub.add_parser("track", help="track objects in one video, folder of frames, camera or stream",
                       description="Track the objects a prompt names through one source and write the "
                                   "annotated video, per-frame masks and tracks in standard formats.")
    t.add_argument("source", help="video file, image folder, glob, camera index (0) or stream URL "
                                  "(rtsp/rtmp/http(s)/udp/tcp)")
    t.add_argument("--prompt", required=True, help='classes to track, e.g. "person. car."')
    t.add_argument("--out", type=Path, default=None, metavar="DIR",
                   help="output folder (default runs/track/<source name>, numbered if it exists)")
    t.add_argument("--save", default=SAVE_DEFAULT, metavar="LIST",
                   help=f"comma list of outputs: video, masks, json, mots, mot (default {SAVE_DEFAULT}; "
                        "'none' writes only run.json)")
    t.add_argument("--video-codec", default="auto", metavar="CODEC",
                   help="video.mp4 codec: auto (H.264: NVENC on an NVIDIA GPU that has it, else libx264), "
                        "h264, hevc, av1, or an encoder name (libx264, h264_nvenc, libx265, libsvtav1, ...); "
                        "a codec this FFmpeg build cannot encode stops the run with one line")
    t.add_argument("--decoder", default="av", choices=["av", "decord", "opencv"])
    t.add_argument("--start", type=int_at_least(0), default=0, metavar="N", help="first frame index")
    t.add_argument("--stride", type=int_at_least(1), default=1, metavar="S", help="use every S-th frame")
    t.add_argument("--max-frames", type=int_at_least(1), default=None, metavar="N")
    mode = t.add_mutually_exclusive_group()
    mode.add_argument("--live", dest="mode", action="store_const", const="live",
                      help="no lag, no back-fill (default for cameras and streams)")
    mode.add_argument("--offline", dest="mode", action="store_const", const="offline",
                      help="results lag up to K frames so new tracks are back-filled (default for files)")
    t.add_argument("--show", action="store_true", help="show the annotated frames in a window (q quits)")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_model_options(t)

    try:
        from .dataset.cli import add_dataset_parser
    except ImportError:  # pragma: no cover - the dataset package is part of the distribution
        add_dataset_parser = None
    if add_dataset_parser is not None:
        add_dataset_parser(sub)
    return parser


def _configure_logging(verbose: bool) -> None:
    """Our warnings as ``gsam2-video: WARNING: ...``; the libraries' chatter (weight-loading bars, hub
    retries) only with --verbose."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("gsam2-video: %(levelname)s: %(message)s"))
    log.handlers[:] = [handler]
    log.setLevel(logging.DEBUG if verbose else logging.WARNING)
    log.propagate = False
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING)
    if not verbose:
        try:
            from transformers.utils import logging as hf_logging

            hf_logging.set_verbosity_error()
            hf_logging.disable_progress_bar()
        except ImportError:  # pragma: no cover - transformers is a dependency
            pass


def main(argv: Sequence[str] | None = None) -> int:
    parser = _build_parser()
    args = parser.parse_args(argv)
    _configure_logging(args.verbose)
    try:
        if args.command == "track":
            from .commands.track import run_track

            return run_track(args)
        from .dataset.cli import run_dataset

        return run_dataset(args)
    except Gsam2Error as exc:
        print(f"gsam2-video: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("gsam2-video: interrupted", file=sys.stderr)
        return 130
