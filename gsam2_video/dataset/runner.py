"""Label a list of videos: models loaded once, one video at a time, each failing alone.

Why a loop of its own rather than calling ``track`` per video: models load once for the whole set (loading
dominates short clips), finished videos are skipped without loading anything, and every video goes through
the publish protocol of :mod:`.layout`, so killing the process at any instant loses at most the video in
progress. A video fails alone: its error (one line, plus the traceback for unexpected errors) goes to
``failures.jsonl`` and the loop moves on; Ctrl-C stops the loop but still rebuilds the set-wide files.

A video must decode completely: when fewer frames arrive than the source declares (a truncated or corrupt
file), the video fails unless ``allow_partial`` is set, because a half-labelled video in a training set is
worse than a missing one.
"""

from __future__ import annotations

import json
import logging
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Protocol

from ..errors import Gsam2Error, SourceError
from ..sinks.runinfo import to_jsonable
from .inputs import VideoJob
from .layout import JPEG_QUALITY, DatasetLayout
from .record import VideoCollector, VideoRecord

log = logging.getLogger("gsam2_video")


class TrackerLike(Protocol):
    """What the runner needs from :class:`gsam2_video.pipeline.Tracker`."""

    def track(self, source: Any, prompt: str, **options: Any) -> Any: ...


@dataclass(frozen=True)
class RunnerOptions:
    """Run-wide choices that are not per-video settings."""

    save_frames: bool = False
    allow_partial: bool = False
    progress: bool = True
    jpeg_quality: int = JPEG_QUALITY


@dataclass
class DatasetSummary:
    """What one run did. ``frames`` and ``objects`` count the videos labelled in this run."""

    done: int = 0
    skipped: int = 0
    failed: int = 0
    frames: int = 0
    objects: int = 0
    seconds: float = 0.0
    interrupted: bool = False
    failures: list[dict[str, Any]] = field(default_factory=list)
    total: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"videos": self.total, "done": self.done, "skipped": self.skipped, "failed": self.failed,
                "frames": self.frames, "objects": self.objects, "seconds": round(self.seconds, 3),
                "interrupted": self.interrupted, "failures": self.failures}

    def line(self) -> str:
        text = (f"{self.done} done, {self.skipped} skipped, {self.failed} failed of {self.total} videos; "
                f"{self.frames} frames, {self.objects} objects; {self.seconds:.1f} s")
        return text + (" (interrupted)" if self.interrupted else "")


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def expected_frames(run: Any) -> int | None:
    """Frames the run's source will yield (None when unknown). Sources report ``info.frame_count`` after
    start / stride / max_frames, counted from the file's data (not its header)."""
    info = getattr(run, "info", None) or getattr(getattr(run, "source", None), "info", None)
    count = getattr(info, "frame_count", None)
    return None if count is None else int(count)


class DatasetRunner:
    """Runs jobs into a :class:`DatasetLayout`. ``make_tracker`` is called at most once, lazily, so a run
    with nothing left to do loads no model; ``model_settings`` are the run-wide settings that shape outputs
    (model ids, thresholds, dtype) and are stored with each video to detect changed settings on re-runs."""

    def __init__(self, make_tracker: Callable[[], TrackerLike], layout: DatasetLayout, options: RunnerOptions,
                 model_settings: dict[str, Any]) -> None:
        self._make_tracker = make_tracker
        self._tracker: TrackerLike | None = None
        self.layout = layout
        self.options = options
        self.model_settings = model_settings

    def settings(self, job: VideoJob) -> dict[str, Any]:
        """The job's output-shaping settings in their JSON form (tuples as lists), as stored in its record, so
        a re-run compares like with like."""
        settings = {**job.settings(), "models": self.model_settings, "save_frames": self.options.save_frames}
        return json.loads(json.dumps(to_jsonable(settings), sort_keys=True))

    @property
    def tracker(self) -> TrackerLike:
        if self._tracker is None:
            self._tracker = self._make_tracker()
        return self._tracker

    def run(self, jobs: list[VideoJob]) -> DatasetSummary:
        from tqdm import tqdm

        summary = DatasetSummary(total=len(jobs))
        started, t0 = _now(), time.perf_counter()
        with self.layout.locked():
            self.layout.prepare()
            self.layout.write_failures([])
            todo = []
            for job in jobs:
                if self.layout.is_done(job.name, self.settings(job), self.options.save_frames):
                    summary.skipped += 1
                else:
                    todo.append(job)
            if summary.skipped:
                log.info("%d of %d videos already done; skipping them", summary.skipped, len(jobs))
            bar = tqdm(total=len(todo), unit="video", desc="videos", disable=not self.options.progress,
                       file=sys.stderr, dynamic_ncols=True)
            try:
                if todo:  # load models before the first video: a model error stops the run, not a video
                    self._tracker = self.tracker
                for job in todo:
                    bar.set_postfix_str(job.name, refresh=True)
                    try:
                        record = self._label(job)
                    except Exception as exc:  # noqa: BLE001 - a video fails alone
                        summary.failed += 1
                        summary.failures.append(self._failure(job, exc))
                        self.layout.write_failures(summary.failures)
                        bar.write(f"gsam2-video: {job.name}: FAILED: {summary.failures[-1]['message']}",
                                  file=sys.stderr)
                    else:
                        summary.done += 1
                        summary.frames += record.length
                        summary.objects += len(record.objects)
                    bar.update(1)
            except KeyboardInterrupt:
                summary.interrupted = True
            finally:
                bar.close()
                self.layout.tidy()
                self.layout.write_set_files()
                summary.seconds = time.perf_counter() - t0
                self._write_run(summary, started)
        return summary

    # -- one video -----------------------------------------------------------------------------------------
    def _label(self, job: VideoJob) -> VideoRecord:
        from tqdm import tqdm

        layout, opts = self.layout, self.options
        layout.discard(job.name)
        stage = layout.stage(job.name, opts.jpeg_quality)
        try:
            started, t0 = _now(), time.perf_counter()
            collector = VideoCollector(job.name)
            so = job.source_options
            run = self.tracker.track(job.source, job.prompt, mode="offline", keep_images=opts.save_frames,
                                     decoder=so.decoder, start=so.start, stride=so.stride,
                                     max_frames=so.max_frames, **job.tracking)
            with run:
                expected = expected_frames(run)
                bar = tqdm(total=expected, unit="frame", desc=job.name, leave=False, position=1,
                           disable=not opts.progress, file=sys.stderr, dynamic_ncols=True)
                try:
                    for result in run:
                        collector.add(result)
                        if opts.save_frames:
                            stage.save_frame(result.frame_index, result.image)
                        bar.update(1)
                finally:
                    bar.close()
                source = getattr(run, "source", None)
                source_stats = dict(getattr(source, "stats", {}) or {})
                tracker_stats = run.stats.to_json() if hasattr(run, "stats") else {}
                info = run.info.to_json() if getattr(run, "info", None) is not None else {}
            track_seconds = time.perf_counter() - t0
            self._check_complete(job, collector.frames, expected, source_stats)
            record = collector.finish(job.filters, self.settings(job))
            t1 = time.perf_counter()
            stage.write_annotations(record)
            report = {"video": job.name, "source": job.source, "origin": job.origin, "info": info,
                      "settings": record.settings, "frames": record.length, "objects_tracked": len(collector.tracks),
                      "objects_kept": len(record.objects), "filtered": record.filtered,
                      "source_stats": source_stats, "tracker_stats": tracker_stats,
                      "seconds": {"track": round(track_seconds, 3), "write": round(time.perf_counter() - t1, 3),
                                  "total": round(time.perf_counter() - t0, 3)},
                      "started": started, "finished": _now()}
            stage.write_record(record, report)
            layout.publish(job.name, stage)
            return record
        except BaseException:
            layout.abandon(stage)
            raise

    def _check_complete(self, job: VideoJob, got: int, expected: int | None, stats: dict[str, Any]) -> None:
        if got == 0:
            raise SourceError(f"{job.source}: no frames decoded")
        if self.options.allow_partial:
            return
        missing = int(stats.get("frames_missing", 0) or 0)
        if expected is not None and got < expected:
            raise SourceError(f"{job.source}: decoded {got} of {expected} frames (truncated or corrupt video); "
                              f"pass --allow-partial to keep what decodes")
        if missing > 0:  # the source read to the end of the file and found fewer frames than it declares
            raise SourceError(f"{job.source}: truncated or corrupt video, {missing} of its frames do not decode "
                              f"({got} decoded); pass --allow-partial to keep what decodes")

    @staticmethod
    def _failure(job: VideoJob, exc: BaseException) -> dict[str, Any]:
        entry: dict[str, Any] = {"video": job.name, "source": job.source, "origin": job.origin,
                                 "error": type(exc).__name__}
        if isinstance(exc, Gsam2Error):
            entry["message"] = str(exc)
        else:
            entry["message"] = f"{type(exc).__name__}: {exc}"
            entry["traceback"] = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
            log.debug("%s failed:\n%s", job.name, entry["traceback"])
        return entry

    def _write_run(self, summary: DatasetSummary, started: str) -> None:
        from ..sinks.runinfo import write_run_json

        write_run_json(self.layout.run_path, {"kind": "dataset", "out": str(self.layout.root),
                                              "models": self.model_settings, "started": started,
                                              "finished": _now(), "summary": summary.to_json()})
