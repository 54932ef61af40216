"""The live outputs a ``track`` run was asked for, set up in two steps around the model load.

Why two steps: a port in use or an unwritable ``--jsonl`` folder must fail in one line before the models
load (seconds to minutes), while the sinks themselves need the opened source (its dropped-frame counter).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ..sinks.base import Sink
from .options import check_live_options


class LiveOutputs:
    """``--jsonl`` / ``--stream-out`` / ``--preview`` of one run. Binds the preview port when created."""

    def __init__(self, args: argparse.Namespace) -> None:
        check_live_options(args)
        self.jsonl: str | None = getattr(args, "jsonl", None)
        self.stream_out: str | None = getattr(args, "stream_out", None)
        self.preview: Any = None
        port = getattr(args, "preview", None)
        if port is not None:
            from .preview import PreviewServer

            self.preview = PreviewServer(getattr(args, "preview_host", "127.0.0.1"), port)
            print(f"gsam2-video: preview at {self.preview.url}", file=sys.stderr)

    @property
    def needs_image(self) -> bool:
        """True when a live output shows the annotated picture (the pipeline must keep frame pixels)."""
        return self.stream_out is not None or self.preview is not None

    @property
    def needs_rle(self) -> bool:
        """True when a live output writes COCO RLE masks (the JSONL lines)."""
        return self.jsonl is not None

    def sinks(self, source: Any) -> list[Sink]:
        """The sinks, in the order they run on the writer thread: lines first (cheapest, most urgent)."""
        out: list[Sink] = []
        if self.jsonl is not None:
            from .jsonl import JsonlSink

            out.append(JsonlSink(self.jsonl))
        if self.preview is not None:
            from .preview import PreviewSink

            out.append(PreviewSink(self.preview, lambda: int((getattr(source, "stats", {}) or {})
                                                             .get("frames_dropped", 0))))
        if self.stream_out is not None:
            from .streamout import StreamOutSink

            out.append(StreamOutSink(self.stream_out))
        return out

    def close(self) -> None:
        """Release what the constructor took (the preview port) when the run ends before its sinks exist."""
        if self.preview is not None:
            self.preview.close()
