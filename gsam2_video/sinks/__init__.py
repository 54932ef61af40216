"""Output writers: annotated video, DAVIS mask PNGs, YouTube-VIS JSON, MOTS and MOT text, YOLO segmentation,
COCO instance segmentation, CVAT for video XML, run.json.

Every writer is a :class:`Sink` (open / write per frame / close / abort) and writes atomically: output goes to
a hidden temporary name in the output folder and is renamed into place only when complete, so an interrupted
run never leaves a file that looks finished. :class:`AsyncWriter` runs the sinks on one background thread
behind a bounded queue. Typical use::

    sinks = make_sinks(["video", "masks", "json", "mots", "mot"], out_dir)
    with AsyncWriter(sinks, max_queue=32) as writer:
        writer.open(info, categories)
        for result in results:
            writer.write(result)
    write_run_json(out_dir / "run.json", report)

The rules all formats share (non-overlapping masks, visibility, boxes, 1-based category ids) are in
:mod:`gsam2_video.sinks.base`; each format's layout is in its module's docstring.
"""

from __future__ import annotations

from .atomic import AtomicFile, prepare_output_dir
from .base import FrameView, Sink, VisibleTracks, visible_tracks
from .davis import DavisSink, davis_palette
from .factory import IMAGE_KINDS, PICTURE_KINDS, RLE_KINDS, SINK_FILES, SINK_KINDS, make_sinks
from .mot import MotSink
from .mots import MotsSink
from .rle import decode_mask, encode_masks
from .runinfo import collect_versions, write_run_json
from .video import VideoSink
from .writer import AsyncWriter
from .ytvis import YtvisSink

__all__ = [
    "IMAGE_KINDS",
    "PICTURE_KINDS",
    "RLE_KINDS",
    "SINK_FILES",
    "SINK_KINDS",
    "AsyncWriter",
    "AtomicFile",
    "DavisSink",
    "FrameView",
    "MotSink",
    "MotsSink",
    "Sink",
    "VideoSink",
    "VisibleTracks",
    "YtvisSink",
    "collect_versions",
    "davis_palette",
    "decode_mask",
    "encode_masks",
    "make_sinks",
    "prepare_output_dir",
    "visible_tracks",
    "write_run_json",
]
