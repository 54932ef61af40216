"""Options every command spells the same way, in one place.

Why one module: a flag must mean the same thing in ``track``, ``dataset`` and any later command. Defining the
model, tracking, decoding and output options once, and building the :class:`TrackerConfig` from them once,
makes a second meaning for the same spelling impossible without editing this file. The command modules
import this module and nothing else from the CLI package, so there is no import cycle between the top-level
parser (``gsam2_video.cli``) and the commands.

Argument types raise ``argparse.ArgumentTypeError`` so a bad value is a one-line usage error (exit 2).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from typing import Any

from ..config import (
    DEFAULT_DETECTOR,
    DEFAULT_SAM2,
    AssociationConfig,
    DetectorConfig,
    KeyframeConfig,
    PropagatorConfig,
    TrackerConfig,
    valid_device,
)
from ..errors import ConfigError

SAVE_DEFAULT = "video,masks,json"
DECODERS = ("av", "decord", "opencv")
# argparse namespace attribute holding deprecation notes; the top-level CLI logs them once logging is set up
DEPRECATIONS = "deprecations"


def int_at_least(low: int) -> Callable[[str], int]:
    """argparse type: an integer >= ``low``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be >= {low}, got {value}")
        return value

    return parse


def float_at_least(low: float) -> Callable[[str], float]:
    """argparse type: a number >= ``low`` (NaN is rejected)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not value >= low:
            raise argparse.ArgumentTypeError(f"must be >= {low:g}, got {text}")
        return value

    return parse


def device_name(text: str) -> str:
    """argparse type: auto, cpu, cuda or cuda:N."""
    if not valid_device(text):
        raise argparse.ArgumentTypeError(f"expected auto, cpu, cuda or cuda:N, got {text!r}")
    return text


def unit_float(text: str) -> float:
    """argparse type: a number in [0, 1] (thresholds)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {value}")
    return value


class _DeprecatedAlias(argparse.Action):
    """An old spelling that still works: stores into the new option's ``dest`` and leaves a note that the
    top-level CLI logs as a warning (after logging is configured, so it looks like every other warning)."""

    def __init__(self, option_strings: Sequence[str], dest: str, *, replacement: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, default=argparse.SUPPRESS, help=argparse.SUPPRESS, **kwargs)
        self.replacement = replacement

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        setattr(namespace, self.dest, values)
        notes = list(getattr(namespace, DEPRECATIONS, []))
        notes.append(f"{option_string} is deprecated; use {self.replacement} (same meaning)")
        setattr(namespace, DEPRECATIONS, notes)


class _Retired(argparse.Action):
    """An old spelling whose meaning differed between commands: refused with one line naming its successors,
    never silently reinterpreted."""

    def __init__(self, option_strings: Sequence[str], dest: str, *, message: str, **kwargs: Any) -> None:
        super().__init__(option_strings, argparse.SUPPRESS, default=argparse.SUPPRESS, help=argparse.SUPPRESS,
                         **kwargs)
        self.message = message

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        parser.error(f"{option_string}: {self.message}")


def add_deprecated_alias(p: argparse.ArgumentParser, old: str, new_dest: str, replacement: str,
                         value_type: Callable[[str], Any]) -> None:
    """Accept ``old`` as a hidden alias of the option whose dest is ``new_dest``."""
    p.add_argument(old, dest=new_dest, action=_DeprecatedAlias, replacement=replacement, type=value_type,
                   metavar="N")


def add_retired_option(p: argparse.ArgumentParser, old: str, message: str) -> None:
    """Refuse ``old`` (taking one value) with ``message``."""
    p.add_argument(old, action=_Retired, message=message, metavar="N")


def add_model_options(p: argparse.ArgumentParser) -> None:
    """Model, device, detection and tracking options: every command that runs the tracker takes these."""
    g = p.add_argument_group("models")
    g.add_argument("--detector", default=DEFAULT_DETECTOR, metavar="ID|PATH",
                   help=f"Grounding DINO / OWLv2 hub id or local directory (default {DEFAULT_DETECTOR})")
    g.add_argument("--sam2", default=DEFAULT_SAM2, metavar="ID|PATH",
                   help=f"SAM 2 hub id, local directory or Meta .pt checkpoint (default {DEFAULT_SAM2})")
    g.add_argument("--device", default="auto", type=device_name,
                   help="auto (default: the first CUDA GPU if any), cpu, cuda or cuda:N")
    g.add_argument("--strict-fp32", action="store_true",
                   help="with --dtype fp32 on an Ampere+ GPU: no TF32 matmuls (bit-for-bit fp32 as the parity "
                        "tests check; slower)")
    g.add_argument("--dtype", default="auto", choices=["auto", "fp32", "bf16", "fp16"],
                   help="auto (default): bf16 autocast where the GPU or CPU has bf16 hardware (Ampere+, AVX-512 "
                        "BF16, AMX), else fp32; fp32: exact; fp16: GPU only")
    g.add_argument("--compile", action="store_true",
                   help="torch.compile SAM 2's image encoder and memory attention (static shapes; the first "
                        "frames pay the compile time; worth it on a GPU)")
    g = p.add_argument_group("detection and tracking")
    g.add_argument("--detect-every", type=int_at_least(1), default=10, metavar="K",
                   help="run the detector every K frames (plus adaptive keyframes); default 10")
    g.add_argument("--box-threshold", type=unit_float, default=0.35, metavar="F")
    g.add_argument("--text-threshold", type=unit_float, default=0.25, metavar="F")
    g.add_argument("--max-live-objects", type=int_at_least(1), default=None, metavar="N",
                   help="cap on simultaneous tracks while tracking: once full, new objects are not started "
                        "(the best-scoring detections are admitted first); default no cap")
    g.add_argument("--detector-size", type=int_at_least(1), nargs=2, default=(800, 1333),
                   metavar=("SHORT", "LONG"), help="detector input shortest / longest edge (default 800 1333)")
    g.add_argument("--iou-threshold", type=unit_float, default=0.5, metavar="F",
                   help="minimum mask IoU to match a detection to a track (default 0.5)")
    g.add_argument("--max-lost-frames", type=int_at_least(1), default=None, metavar="N",
                   help="an object out of sight keeps its id this many source frames (default: 2 seconds at "
                        "the source's fps, 60 frames if unknown)")
    g.add_argument("--reid-min-similarity", type=unit_float, default=0.3, metavar="F",
                   help="a lost object is re-found only by a detection whose SAM 2 object pointer has at least "
                        "this cosine similarity with its own, besides being where its last position or motion "
                        "puts it (default 0.3; 0 = position and motion only)")
    g.add_argument("--reid-weight", type=unit_float, default=0.5, metavar="F",
                   help="when several lost objects could take a detection, the best (1 - F) x box IoU + F x "
                        "pointer similarity wins (default 0.5)")
    g.add_argument("--confirm-hits", type=int_at_least(0), default=1, metavar="K",
                   help="a new track is shown once detected again on K of the next --confirm-window keyframes "
                        "(default 1; 0 shows every track at once)")
    g.add_argument("--confirm-window", type=int_at_least(1), default=2, metavar="N",
                   help="keyframes a new track has to be confirmed in before it is dropped unseen (default 2)")
    g.add_argument("--confirm-score", type=unit_float, default=0.6, metavar="F",
                   help="a detection scoring at least F is confirmed at once (default 0.6; 0 confirms all)")
    g.add_argument("--retire-after", type=int_at_least(0), default=5, metavar="M",
                   help="end a track no detection matched on M keyframes in a row while its class was "
                        "detected elsewhere (default 5; 0 = never)")
    g.add_argument("--low-threshold", type=unit_float, default=0.2, metavar="F",
                   help="detections between F and --box-threshold only keep tracks alive (default 0.2; 0 = off)")


def add_decoding_options(p: argparse.ArgumentParser) -> None:
    """Which frames of a source are read, and with which decoder."""
    g = p.add_argument_group("decoding")
    g.add_argument("--decoder", default="av", choices=list(DECODERS))
    g.add_argument("--start", type=int_at_least(0), default=0, metavar="N", help="first frame index")
    g.add_argument("--stride", type=int_at_least(1), default=1, metavar="S", help="use every S-th frame")
    g.add_argument("--max-frames", type=int_at_least(1), default=None, metavar="N",
                   help="read at most N frames of each source")


def add_progress_option(p: argparse.ArgumentParser) -> None:
    """``--no-progress``: no progress bars (logs, CI)."""
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def parse_save(text: str) -> list[str]:
    """``--save`` value -> sink kinds, in the order given, duplicates dropped; 'none' -> []."""
    from ..sinks import SINK_KINDS  # here, not at the top: the sinks import PyAV / PIL, options stay light

    kinds = [k.strip().lower() for k in text.split(",") if k.strip()]
    if kinds == ["none"]:
        return []
    unknown = [k for k in kinds if k not in SINK_KINDS]
    if unknown or not kinds:
        raise ConfigError(f"--save: unknown output {', '.join(unknown) or repr(text)}; "
                          f"choose from {', '.join(SINK_KINDS)} or none")
    return list(dict.fromkeys(kinds))


def tracker_config(args: argparse.Namespace) -> TrackerConfig:
    """The TrackerConfig the options of :func:`add_model_options` describe (validated)."""
    short, long_ = args.detector_size
    config = TrackerConfig(
        detector=DetectorConfig(model=args.detector, box_threshold=args.box_threshold,
                                text_threshold=args.text_threshold, shortest_edge=short, longest_edge=long_),
        propagator=PropagatorConfig(model=args.sam2, compile=args.compile),
        association=AssociationConfig(
            iou_threshold=args.iou_threshold, max_objects=args.max_live_objects,
            max_lost_frames=args.max_lost_frames,
            reid_min_similarity=args.reid_min_similarity or None,
            reid_weight=args.reid_weight,
            confirm_hits=0 if args.confirm_score == 0 else args.confirm_hits,
            confirm_window=args.confirm_window,
            confirm_score=args.confirm_score or None,
            retire_unmatched_keyframes=args.retire_after or None,
            low_score_threshold=args.low_threshold or None),
        keyframes=KeyframeConfig(detect_every=args.detect_every),
        device=args.device, dtype=args.dtype, tf32=not args.strict_fp32,
        mode=getattr(args, "mode", "auto") or "auto",
    )
    config.validate()
    return config
