"""Frame sources: every input a user has (file, folder, glob, webcam, stream URL) as one iterator of frames.

    with open_source("clip.mp4", stride=2) as src:
        for frame in src:          # Frame(index, timestamp seconds, RGB uint8 H x W x 3)
            ...

Decoding runs on a background thread (bounded queue offline, newest-frame slot live); see :mod:`.base`.
"""

from __future__ import annotations

from .base import FrameSource, Selection
from .channel import Channel
from .convert import to_rgb, to_uint8
from .images import DEFAULT_IMAGE_FPS, ImageSequenceSource, list_folder, list_glob, natural_key, read_image
from .open import open_source
from .probe import ProbedFile, probe_file
from .reconnect import ReconnectPolicy
from .spec import IMAGE_EXTENSIONS, STREAM_SCHEMES, SourceSpec, parse_source, redact_url
from .stream import StreamSource
from .video import DECODERS, VideoFileSource
from .webcam import WebcamSource

__all__ = [
    "DECODERS",
    "DEFAULT_IMAGE_FPS",
    "IMAGE_EXTENSIONS",
    "STREAM_SCHEMES",
    "Channel",
    "FrameSource",
    "ImageSequenceSource",
    "ProbedFile",
    "ReconnectPolicy",
    "Selection",
    "SourceSpec",
    "StreamSource",
    "VideoFileSource",
    "WebcamSource",
    "list_folder",
    "list_glob",
    "natural_key",
    "open_source",
    "parse_source",
    "probe_file",
    "read_image",
    "redact_url",
    "to_rgb",
    "to_uint8",
]
