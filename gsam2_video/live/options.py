"""Command-line options for live runs, and their checks, kept out of the main parser module.

Why here: ``track`` wires these with two calls (``add_live_options`` and ``live_sinks``), so the parser
layout can change without touching them. Every check runs before torch is imported (a bad URL or port is a
one-line error in well under 2 s); nothing is bound or connected until the models have loaded.
"""

from __future__ import annotations

import argparse
import math
import os
from pathlib import Path
from typing import Any

from ..errors import ConfigError

#: URL schemes ``--stream-out`` accepts (what FFmpeg's muxers can push to)
STREAM_OUT_SCHEMES = ("udp", "tcp", "rtp", "srt", "rtsp", "rtmp", "rtmps")


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a TCP port number, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be 0-65535 (0 picks a free port), got {value}")
    return value


def add_live_options(parser: argparse.ArgumentParser) -> None:
    """The ``live`` option group of ``gsam2-video track``."""
    g = parser.add_argument_group("live streams and live outputs (all off by default)")
    g.add_argument("--stream-timeout", type=_positive_seconds, default=10.0, metavar="S",
                   help="streams: seconds to wait for a connection or for data before reconnecting (default 10)")
    g.add_argument("--jsonl", default=None, metavar="PATH|-",
                   help="one JSON line per frame as soon as it is final (index, timestamp, tracks with id, "
                        "class, score, box, COCO RLE mask), flushed per line; '-' is stdout")
    g.add_argument("--stream-out", default=None, metavar="URL",
                   help="re-encode the annotated frames to a network stream at the source's pace: "
                        "udp://HOST:PORT or tcp://HOST:PORT (MPEG-TS), rtsp://..., rtmp://... (FLV)")
    g.add_argument("--preview", type=_port, default=None, metavar="PORT",
                   help="serve a browser preview (MJPEG, fps, live objects, dropped frames) on PORT")
    g.add_argument("--preview-host", default="127.0.0.1", metavar="HOST",
                   help="address the preview binds (default 127.0.0.1: this machine only)")


def check_live_options(args: argparse.Namespace) -> None:
    """Reject bad live-output values with one line, before anything heavy is imported."""
    jsonl = getattr(args, "jsonl", None)
    if jsonl is not None and jsonl != "-":
        path = Path(jsonl)
        if path.is_dir():
            raise ConfigError(f"--jsonl {jsonl}: is a directory; give a file path or '-' for stdout")
        parent = path.parent if str(path.parent) else Path(".")
        if not parent.is_dir():
            raise ConfigError(f"--jsonl {jsonl}: folder {parent} does not exist")
        if not os.access(parent, os.W_OK):
            raise ConfigError(f"--jsonl {jsonl}: folder {parent} is not writable")
    url = getattr(args, "stream_out", None)
    if url is not None:
        stream_out_format(url)


def stream_out_format(url: str) -> str:
    """The FFmpeg muxer for ``url`` (``mpegts``, ``rtsp`` or ``flv``); ConfigError for anything else."""
    scheme, sep, rest = url.partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in STREAM_OUT_SCHEMES or not rest.strip("/"):
        raise ConfigError(f"--stream-out {url!r}: expected a URL such as udp://127.0.0.1:5000, "
                          f"tcp://HOST:PORT, rtsp://HOST/PATH or rtmp://HOST/APP/KEY "
                          f"(schemes: {', '.join(STREAM_OUT_SCHEMES)})")
    if scheme == "rtsp":
        return "rtsp"
    if scheme in ("rtmp", "rtmps"):
        return "flv"
    return "mpegts"


def stream_timeouts(args: argparse.Namespace) -> dict[str, Any]:
    """``open_source`` keyword arguments for the stream timeouts."""
    seconds = float(getattr(args, "stream_timeout", 10.0))
    return {"open_timeout": seconds, "read_timeout": seconds}
