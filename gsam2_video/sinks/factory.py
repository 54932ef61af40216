"""Build sinks from output names, the one place that maps a name ("masks") to a writer and its file.

Why here and not in the CLI: the CLI, the Python API and the dataset job all accept the same output names and
must fail the same way on a bad one (ConfigError) or on an unusable output folder (OutputError), before any
model is loaded.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from ..errors import ConfigError
from .atomic import prepare_output_dir
from .base import Sink
from .coco import CocoSink
from .cvat import CvatSink
from .davis import DavisSink
from .encoders import choose_encoder
from .mot import MotSink
from .mots import MotsSink
from .video import VideoSink
from .yolo import YoloSink
from .ytvis import YtvisSink

#: output names, in the order their files are listed; each maps to one file or folder in the output dir
SINK_KINDS: tuple[str, ...] = ("video", "masks", "json", "mots", "mot", "yolo", "coco", "cvat")

#: outputs that need the frame's pixels (the tracker must keep each frame's image for them)
IMAGE_KINDS: frozenset[str] = frozenset({"video", "yolo"})

#: outputs that show the annotated picture (on a GPU its masks' overlay is drawn on the device)
PICTURE_KINDS: frozenset[str] = frozenset({"video"})

#: outputs that store COCO RLE (on a GPU the label map's runs are found on the device)
RLE_KINDS: frozenset[str] = frozenset({"json", "mots", "coco"})

#: what each name writes, for --help texts
SINK_FILES: dict[str, str] = {
    "video": "video.mp4 (annotated H.264)",
    "masks": "masks/<frame:05d>.png (DAVIS palette PNG, pixel = track id)",
    "json": "tracks.json (YouTube-VIS style, COCO RLE)",
    "mots": "mots.txt (TrackEval MOTS)",
    "mot": "mot.txt (MOTChallenge boxes)",
    "yolo": "yolo/ (Ultralytics YOLO segmentation: data.yaml, images/, labels/)",
    "coco": "coco.json (COCO instance segmentation, RLE, track_id per annotation)",
    "cvat": "cvat.xml (CVAT for video 1.1, mask shapes, to correct in CVAT)",
}


def make_sinks(kinds: Iterable[str], out_dir: str | os.PathLike[str], *, mots_frame_base: int = 1,
               video_crf: int = 23, video_preset: str = "veryfast", mask_alpha: float = 0.5,
               draw_boxes: bool = True, draw_labels: bool = True, video_codec: str = "auto",
               video_threads: int = 0) -> list[Sink]:
    """One sink per distinct name in ``kinds`` (order kept), writing into ``out_dir`` (created if needed).

    Raises ConfigError for an unknown name or an unusable ``video_codec`` (:mod:`.encoders`) and OutputError
    when ``out_dir`` is not a writable directory.
    """
    names: list[str] = []
    for kind in kinds:
        name = kind.strip().lower()
        if name not in SINK_KINDS:
            raise ConfigError(f"unknown output {kind!r}; choose from {', '.join(SINK_KINDS)}")
        if name not in names:
            names.append(name)
    if not 0.0 <= mask_alpha <= 1.0:
        raise ConfigError(f"mask opacity must be in [0, 1], got {mask_alpha}")
    if not 0 <= video_crf <= 51:
        raise ConfigError(f"video CRF must be in [0, 51], got {video_crf}")
    if mots_frame_base not in (0, 1):
        raise ConfigError(f"MOTS frame base must be 0 (KITTI-MOTS) or 1 (MOTSChallenge), got {mots_frame_base}")
    encoder = (choose_encoder(video_codec, crf=video_crf, preset=video_preset, threads=video_threads)
               if "video" in names else None)
    out = prepare_output_dir(out_dir)
    sinks: list[Sink] = []
    for name in names:
        if name == "video":
            sinks.append(VideoSink(out, crf=video_crf, preset=video_preset, alpha=mask_alpha,
                                   draw_boxes=draw_boxes, draw_labels=draw_labels, encoder=encoder))
        elif name == "masks":
            sinks.append(DavisSink(out))
        elif name == "json":
            sinks.append(YtvisSink(out))
        elif name == "mots":
            sinks.append(MotsSink(out, frame_base=mots_frame_base))
        elif name == "mot":
            sinks.append(MotSink(out))
        elif name == "yolo":
            sinks.append(YoloSink(out))
        elif name == "coco":
            sinks.append(CocoSink(out))
        else:
            sinks.append(CvatSink(out))
    return sinks
