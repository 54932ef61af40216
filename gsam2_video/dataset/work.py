"""Labelling one video, apart from where its files go: tracker in, a finished record and report out.

Why its own module: the same computation runs in two places. The local backend runs it in the command's own
process and streams saved frames straight into the video's staging folder; a Ray worker runs it on another
machine and sends the record (RLE, a few KB per frame) and the encoded JPEG bytes back to the process that
owns the output folder. Keeping the computation free of any folder is what lets both give byte-identical
outputs and lets the publish protocol (:mod:`.layout`) keep a single writer.

:class:`TrackerSpec` is what a worker needs to load the models itself: plain, picklable settings instead of
a closure over the command line.
"""

from __future__ import annotations

import io
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Protocol

import numpy as np

from ..config import FrameExtras, TrackerConfig
from ..errors import Gsam2Error, OutputError, SourceError
from .inputs import VideoJob
from .record import VideoCollector, VideoRecord

FrameHook = Callable[[int, "np.ndarray | None"], None]


class TrackerLike(Protocol):
    """What labelling needs from :class:`gsam2_video.pipeline.Tracker`."""

    def track(self, source: Any, prompt: str, **options: Any) -> Any: ...

    def extras_for(self, *, picture: bool, rle: bool) -> FrameExtras: ...


@dataclass(frozen=True)
class TrackerSpec:
    """How to load the tracker: model ids or paths, device, dtype and the run-wide tracker config."""

    detector: str
    sam2: str
    device: str
    dtype: str
    config: TrackerConfig

    def build(self) -> TrackerLike:
        from ..pipeline import Tracker

        return Tracker.from_pretrained(detector=self.detector, sam2=self.sam2, device=self.device,
                                       dtype=self.dtype, config=self.config)


@dataclass
class LabelledVideo:
    """A tracked and filtered video: its record (what the dataset files are written from) and its run report
    (``run.json``, without the write timings, which the writer adds)."""

    record: VideoRecord
    report: dict[str, Any]


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def expected_frames(run: Any) -> int | None:
    """Frames the run's source will yield (None when unknown). Sources report ``info.frame_count`` after
    start / stride / max_frames, counted from the file's data (not its header)."""
    info = getattr(run, "info", None) or getattr(getattr(run, "source", None), "info", None)
    count = getattr(info, "frame_count", None)
    return None if count is None else int(count)


def encode_jpeg(frame_index: int, image: np.ndarray | None, quality: int) -> bytes:
    """The bytes ``VideoStage.save_frame`` writes for this frame (same encoder, same quality)."""
    from PIL import Image

    if image is None:
        raise OutputError(f"frame {frame_index}: the tracker returned no image to save (--save-frames)")
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image)).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def label_video(tracker: TrackerLike, job: VideoJob, settings: dict[str, Any], *, save_frames: bool,
                allow_partial: bool, on_frame: FrameHook | None = None,
                on_progress: Callable[[int], None] | None = None, frame_bar: bool = False) -> LabelledVideo:
    """Track ``job``'s video with offline back-fill, collect and filter it. ``on_frame(index, image)`` gets
    every frame when ``save_frames``; ``on_progress(frames so far)`` is called after each frame."""
    from tqdm import tqdm

    started, t0 = now(), time.perf_counter()
    collector = VideoCollector(job.name)
    so = job.source_options
    # the record is COCO RLE: on a GPU its runs come from the label map's changes, built in the frame's copy
    extras = tracker.extras_for(picture=False, rle=True)
    run = tracker.track(job.source, job.prompt, mode="offline", keep_images=save_frames, decoder=so.decoder,
                       start=so.start, stride=so.stride, max_frames=so.max_frames, extras=extras, **job.tracking)
    with run:
        expected = expected_frames(run)
        bar = tqdm(total=expected, unit="frame", desc=job.name, leave=False, position=1, disable=not frame_bar,
                   file=sys.stderr, dynamic_ncols=True)
        try:
            for result in run:
                collector.add(result)
                if save_frames and on_frame is not None:
                    on_frame(result.frame_index, result.image)
                bar.update(1)
                if on_progress is not None:
                    on_progress(collector.frames)
        finally:
            bar.close()
        source = getattr(run, "source", None)
        source_stats = dict(getattr(source, "stats", {}) or {})
        tracker_stats = run.stats.to_json() if hasattr(run, "stats") else {}
        info = run.info.to_json() if getattr(run, "info", None) is not None else {}
    track_seconds = time.perf_counter() - t0
    check_complete(job, collector.frames, expected, source_stats, allow_partial)
    record = collector.finish(job.filters, settings)
    report = {"video": job.name, "source": job.source, "origin": job.origin, "info": info,
              "settings": record.settings, "precision": getattr(getattr(tracker, "config", None), "dtype", None),
              "frames": record.length, "objects_tracked": len(collector.tracks),
              "objects_kept": len(record.objects), "filtered": record.filtered,
              "source_stats": source_stats, "tracker_stats": tracker_stats,
              "device_extras": {"overlay": extras.overlay, "rle": extras.rle},
              "seconds": {"track": round(track_seconds, 3), "filter": round(time.perf_counter() - t0
                                                                           - track_seconds, 3)},
              "started": started}
    return LabelledVideo(record, report)


def check_complete(job: VideoJob, got: int, expected: int | None, stats: dict[str, Any],
                   allow_partial: bool) -> None:
    """A video must decode completely unless ``allow_partial`` (see :mod:`.runner`)."""
    if got == 0:
        raise SourceError(f"{job.source}: no frames decoded")
    if allow_partial:
        return
    missing = int(stats.get("frames_missing", 0) or 0)
    if expected is not None and got < expected:
        raise SourceError(f"{job.source}: decoded {got} of {expected} frames (truncated or corrupt video); "
                          f"pass --allow-partial to keep what decodes")
    if missing > 0:  # the source read to the end of the file and found fewer frames than it declares
        raise SourceError(f"{job.source}: truncated or corrupt video, {missing} of its frames do not decode "
                          f"({got} decoded); pass --allow-partial to keep what decodes")


def failure_entry(job: VideoJob, exc: BaseException) -> dict[str, Any]:
    """The failures.jsonl line of a video that failed: one-line message, traceback for unexpected errors."""
    entry: dict[str, Any] = {"video": job.name, "source": job.source, "origin": job.origin,
                             "error": type(exc).__name__}
    if isinstance(exc, Gsam2Error):
        entry["message"] = str(exc)
    else:
        entry["message"] = f"{type(exc).__name__}: {exc}"
        entry["traceback"] = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return entry
