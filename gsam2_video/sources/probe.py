"""What a video file says about itself, read once with PyAV whichever decoder will do the decoding.

Why count packets: container headers can be wrong in both directions. AVI files mark skipped frames with
empty packets (tree.avi declares 444 frames, 68 of which carry pictures; OpenCV reports 444 and decodes 68),
and a truncated file keeps its original header (the first 100 KB of vtest.avi still declares 795 frames).
For AVI, and whenever the header gives no count, the packets are demuxed (no decoding, cheap) and counted
(FFmpeg's AVI demuxer already skips the empty ones); that is the exact number every backend decodes. An AVI
time base is one tick per index entry, so the last packet's dts + 1 is how many entries the data covers;
when the header declares more, the file is truncated and the difference is kept to report it.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from ..errors import SourceError


def _reason(exc: BaseException) -> str:
    text = getattr(exc, "strerror", None) or str(exc)
    return str(text).split(": '", 1)[0].strip() or type(exc).__name__


def probe_file(path: Path, name: str) -> ProbedFile:
    """Open ``path`` with PyAV, check a frame decodes, and count frames when the header cannot be trusted."""
    import av

    if path.stat().st_size == 0:
        raise SourceError(f"{name}: file is empty (0 bytes)")
    try:
        container = av.open(str(path), metadata_errors="ignore")
    except av.error.EOFError:
        raise SourceError(f"{name}: file ends before any video data (no frames, or a cut-off header)") from None
    except (av.error.FFmpegError, OSError, UnicodeDecodeError) as exc:
        raise SourceError(f"{name}: not a readable video ({_reason(exc)})") from None
    try:
        if not container.streams.video:
            raise SourceError(f"{name}: contains no video stream")
        stream = container.streams.video[0]
        first = None
        try:
            for frame in container.decode(stream):
                first = frame
                break
        except av.error.FFmpegError as exc:
            raise SourceError(f"{name}: corrupt video, first frame does not decode ({_reason(exc)})") from None
        if first is None:
            raise SourceError(f"{name}: contains no video frames")
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        fps = float(rate) if rate else None
        declared = int(stream.frames) if stream.frames else None
        time_base = stream.time_base or Fraction(1, 1)
        start_pts = int(stream.start_time) if stream.start_time is not None else 0
        fmt = container.format.name
        codec = stream.codec_context.name
        width, height = int(first.width), int(first.height)
    finally:
        container.close()

    excess = 0
    is_avi = "avi" in fmt.split(",")
    if declared is None or is_avi:
        frame_count, covered = _count_packets(path, name)
        if is_avi and declared and covered is not None:
            excess = max(0, declared - covered)
    else:
        frame_count = declared
    return ProbedFile(width, height, fps, frame_count, declared, time_base, start_pts, fmt, codec, excess)


def _count_packets(path: Path, name: str) -> tuple[int, int | None]:
    """(packets holding data, last dts + 1 relative to the first dts, or None without dts)."""
    import av

    count = 0
    first_dts: int | None = None
    last_dts: int | None = None
    try:
        with av.open(str(path), metadata_errors="ignore") as container:
            stream = container.streams.video[0]
            try:
                for packet in container.demux(stream):
                    if packet.size == 0:
                        continue  # the flush packet demux() appends, or an empty (skipped) frame
                    count += 1
                    if packet.dts is not None:
                        first_dts = packet.dts if first_dts is None else first_dts
                        last_dts = packet.dts
            except av.error.FFmpegError:
                pass  # unreadable tail: count what was demuxed, decoding reports the rest
    except (av.error.FFmpegError, OSError) as exc:
        raise SourceError(f"{name}: not a readable video ({_reason(exc)})") from None
    covered = None if last_dts is None or first_dts is None else last_dts - first_dts + 1
    return count, covered


@dataclass(frozen=True)
class ProbedFile:
    """Result of :func:`probe_file` (see the module docstring for why two counts)."""

    width: int
    height: int
    fps: float | None
    frame_count: int
    declared_frames: int | None
    time_base: Fraction
    start_pts: int
    format_name: str
    codec: str
    header_excess: int = 0  # frames the header declares beyond the file's data (truncation)

    @property
    def expected_frames(self) -> int:
        return self.frame_count + self.header_excess
