"""``open_source``: the single entry point from a user's source string to a :class:`FrameSource`."""

from __future__ import annotations

from pathlib import Path

from ..errors import SourceError
from .base import FrameSource, Selection
from .images import DEFAULT_IMAGE_FPS, ImageSequenceSource, list_folder, list_glob
from .reconnect import ReconnectPolicy
from .spec import parse_source
from .stream import StreamSource
from .video import VideoFileSource
from .webcam import CaptureFactory, WebcamSource, open_camera


def open_source(spec: str | Path | int, *, decoder: str = "av", start: int = 0, stride: int = 1,
                max_frames: int | None = None, live: bool | None = None, prefetch: int = 8,
                image_fps: float = DEFAULT_IMAGE_FPS, open_timeout: float = 10.0, read_timeout: float = 10.0,
                reconnect: ReconnectPolicy | None = None, av_options: dict[str, str] | None = None,
                capture_factory: CaptureFactory = open_camera) -> FrameSource:
    """Open a video file, image folder, glob, single image, webcam index or stream URL.

    ``decoder`` picks the video-file backend (av | decord | opencv). ``start``/``stride``/``max_frames``
    select frames (indices keep the source's numbering). ``live=None`` means live for webcams and network
    streams (newest frame only, older ones dropped and counted) and offline for files and folders; a
    non-live reader never drops a frame and blocks when ``prefetch`` frames are waiting. ``live=True`` on a
    file or folder replays it in real time on its timestamps, newest frame only (a camera simulation). ``prefetch=0``
    decodes on the caller's thread (offline only). ``image_fps`` stamps image sequences. The timeouts,
    ``reconnect`` policy and ``av_options`` (FFmpeg protocol options) apply to streams and cameras.

    Raises SourceError (one line naming the source) when the input is missing, unreadable or unknown.
    """
    parsed = parse_source(spec)
    selection = Selection(start, stride, max_frames)
    policy = reconnect or ReconnectPolicy()
    is_live = parsed.default_live if live is None else bool(live)
    if parsed.kind == "file":
        return VideoFileSource(Path(parsed.target), name=parsed.name, decoder=decoder, selection=selection,
                               prefetch=prefetch, live=is_live)
    if parsed.kind in ("folder", "glob", "image"):
        if parsed.kind == "folder":
            files = list_folder(Path(parsed.target))
        elif parsed.kind == "glob":
            files = list_glob(str(parsed.target))
        else:
            files = [Path(parsed.target)]
        if not files:
            what = "folder has no images" if parsed.kind == "folder" else "glob matches no images"
            raise SourceError(f"{parsed.uri}: {what}")
        return ImageSequenceSource(files, name=parsed.name, uri=parsed.uri, fps=image_fps,
                                   selection=selection, prefetch=prefetch, live=is_live)
    if parsed.kind == "webcam":
        return WebcamSource(int(parsed.target), name=parsed.name, uri=parsed.uri, live=is_live,
                            selection=selection, prefetch=prefetch, reconnect_policy=policy,
                            capture_factory=capture_factory)
    return StreamSource(str(parsed.target), name=parsed.name, uri=parsed.uri, live=is_live,
                        selection=selection, prefetch=prefetch, open_timeout=open_timeout,
                        read_timeout=read_timeout, reconnect_policy=policy, av_options=av_options)
