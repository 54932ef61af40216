"""Turn what a user typed into a typed source description, following ultralytics' conventions.

An int or a string of digits is a webcam index; ``scheme://`` with a streaming scheme is a network URL; a
string with glob characters that is not an existing path is a glob; an existing directory is an image folder;
an existing image file is a one-image sequence; any other existing file is a video. Parsing never opens the
source, so it is cheap, and every rejection is a :class:`SourceError` naming the input.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

from ..errors import SourceError

SourceKind = Literal["file", "folder", "glob", "image", "webcam", "stream"]

STREAM_SCHEMES = ("rtsp", "rtsps", "rtmp", "rtmps", "http", "https", "udp", "tcp", "srt", "rtp")
IMAGE_EXTENSIONS = frozenset({".bmp", ".jpg", ".jpeg", ".jpe", ".png", ".tif", ".tiff", ".webp", ".pgm",
                              ".ppm", ".pbm", ".pnm", ".pfm", ".jp2", ".gif"})
# A URL whose path ends like this is a remote file, read once (not live) unless the caller says otherwise.
VIDEO_FILE_EXTENSIONS = frozenset({".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg",
                                   ".wmv", ".flv", ".asf", ".mts", ".m2ts", ".3gp", ".ogv"})
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
_GLOB_CHARS = re.compile(r"[*?\[]")


@dataclass(frozen=True)
class SourceSpec:
    """A parsed source: ``target`` is a Path (file/folder/image), a pattern (glob), an int (webcam) or a URL."""

    kind: SourceKind
    target: str | Path | int
    name: str  # short human name for messages and outputs
    uri: str  # full description for run records (credentials redacted)

    @property
    def default_live(self) -> bool:
        """ultralytics' rule: cameras and streams are live; files, folders and remote video files are not."""
        if self.kind == "webcam":
            return True
        if self.kind == "stream":
            parts = urlsplit(str(self.target))
            if parts.scheme.lower() in ("http", "https"):
                return Path(parts.path).suffix.lower() not in VIDEO_FILE_EXTENSIONS
            return True
        return False


def redact_url(url: str) -> str:
    """``rtsp://user:pass@host/x`` -> ``rtsp://***@host/x`` so secrets never reach logs or run records."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit((parts.scheme, "***@" + host, parts.path, parts.query, parts.fragment))


def is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS


def parse_source(spec: str | Path | int) -> SourceSpec:
    """Classify ``spec``; raises SourceError for unknown strings and missing paths."""
    if isinstance(spec, bool) or not isinstance(spec, (str, Path, int)):
        raise SourceError(f"unknown source {spec!r}: expected a path, glob, webcam index or stream URL")
    if isinstance(spec, int):
        if spec < 0:
            raise SourceError(f"unknown source {spec}: a webcam index must be >= 0")
        return SourceSpec("webcam", spec, f"webcam{spec}", f"webcam:{spec}")
    text = str(spec).strip() if isinstance(spec, str) else str(spec)
    if not text:
        raise SourceError("unknown source '': expected a path, glob, webcam index or stream URL")
    if isinstance(spec, str) and text.isdecimal():
        index = int(text)
        return SourceSpec("webcam", index, f"webcam{index}", f"webcam:{index}")
    scheme = _SCHEME.match(text)
    if scheme:
        name = scheme.group(1).lower()
        if name == "file":
            return _parse_path(Path(urlsplit(text).path), text)
        if name not in STREAM_SCHEMES:
            raise SourceError(f"unknown source {redact_url(text)!r}: unsupported URL scheme '{name}' "
                              f"(supported: {', '.join(STREAM_SCHEMES)})")
        if not urlsplit(text).hostname and name not in ("udp", "rtp", "srt"):
            raise SourceError(f"unknown source {redact_url(text)!r}: URL has no host")
        safe = redact_url(text)
        return SourceSpec("stream", text, safe, safe)
    return _parse_path(Path(text).expanduser(), text)


def _parse_path(path: Path, text: str) -> SourceSpec:
    if path.is_dir():
        resolved = path.resolve()
        return SourceSpec("folder", resolved, resolved.name or str(resolved), str(resolved))
    if path.is_file():
        resolved = path.resolve()
        kind: SourceKind = "image" if is_image_file(resolved) else "file"
        return SourceSpec(kind, resolved, resolved.name, str(resolved))
    if path.exists():
        raise SourceError(f"{text}: not a regular file or directory")
    if _GLOB_CHARS.search(text):
        return SourceSpec("glob", text, text, text)
    raise SourceError(f"{text}: no such file or directory")
