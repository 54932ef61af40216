"""Label a list of videos into a dataset folder: skip the finished ones, label the rest, each failing alone.

Why a loop of its own rather than calling ``track`` per video: models load once for the whole set (loading
dominates short clips), finished videos are skipped without loading anything, and every video goes through
the publish protocol of :mod:`.layout`, so killing the process at any instant loses at most the videos in
progress. A video fails alone: its error (one line, plus the traceback for unexpected errors) goes to
``failures.jsonl`` and the loop moves on; Ctrl-C stops the loop but still rebuilds the set-wide files.

Who computes is a *backend*: :class:`LocalBackend` labels one video at a time in this process; the Ray
backend (:mod:`.ray_backend`) spreads videos over workers that each load the models once. Either way this
process alone writes the output folder (:class:`VideoWriter`), so the publish protocol, the lock and the
byte-for-byte results do not depend on the backend. Failures are listed in input order whatever order
videos finish in.

With a shard (:mod:`.shard`), the run labels only its share of the inputs, shares the folder with the other
shards (see ``DatasetLayout.locked``), keeps its failures and report under ``shards/<I>-of-<N>/`` and leaves
``meta.json`` / ``instances.json`` to ``gsam2-video dataset --merge``; without one, the run rebuilds them
itself as its last step.

A video must decode completely: when fewer frames arrive than the source declares (a truncated or corrupt
file), the video fails unless ``allow_partial`` is set, because a half-labelled video in a training set is
worse than a missing one.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..sinks.runinfo import to_jsonable, write_run_json
from .inputs import VideoJob
from .layout import JPEG_QUALITY, DatasetLayout, VideoStage
from .record import VideoRecord
from .shard import Shard
from .work import LabelledVideo, TrackerLike, expected_frames, failure_entry, label_video, now

log = logging.getLogger("gsam2_video")

__all__ = ["DatasetRunner", "DatasetSummary", "LocalBackend", "Outcome", "RunProgress", "RunnerOptions",
           "TrackerLike", "VideoWriter", "WorkItem", "expected_frames"]


@dataclass(frozen=True)
class RunnerOptions:
    """Run-wide choices that are not per-video settings."""

    save_frames: bool = False
    allow_partial: bool = False
    progress: bool = True
    jpeg_quality: int = JPEG_QUALITY
    #: set-wide exports built with meta.json / instances.json: "yolo", "coco", "cvat" (see .exports)
    exports: tuple[str, ...] = ()


@dataclass
class DatasetSummary:
    """What one run did. ``frames`` and ``objects`` count the videos labelled in this run; ``retried`` counts
    videos started again because the worker labelling them died (Ray backend)."""

    done: int = 0
    skipped: int = 0
    failed: int = 0
    frames: int = 0
    objects: int = 0
    seconds: float = 0.0
    interrupted: bool = False
    failures: list[dict[str, Any]] = field(default_factory=list)
    total: int = 0
    retried: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"videos": self.total, "done": self.done, "skipped": self.skipped, "failed": self.failed,
                "frames": self.frames, "objects": self.objects, "seconds": round(self.seconds, 3),
                "interrupted": self.interrupted, "retried": self.retried, "failures": self.failures}

    def line(self) -> str:
        text = (f"{self.done} done, {self.skipped} skipped, {self.failed} failed of {self.total} videos; "
                f"{self.frames} frames, {self.objects} objects; {self.seconds:.1f} s")
        return text + (" (interrupted)" if self.interrupted else "")


@dataclass(frozen=True)
class WorkItem:
    """A video to label: its position in the input list (orders the failures), job and stored settings."""

    index: int
    job: VideoJob
    settings: dict[str, Any]


@dataclass(frozen=True)
class Outcome:
    """A video a backend finished: published (``record``) or failed (``failure``, a failures.jsonl entry)."""

    item: WorkItem
    record: VideoRecord | None = None
    failure: dict[str, Any] | None = None


class RunProgress:
    """The videos bar (shared by all backends) and the one-line messages printed above it."""

    def __init__(self, total: int, enabled: bool) -> None:
        from tqdm import tqdm

        self.enabled = enabled
        self._bar = tqdm(total=total, unit="video", desc="videos", disable=not enabled, file=sys.stderr,
                         dynamic_ncols=True)
        self._frames: Any = None

    def add_frames(self, count: int) -> None:
        """Frames labelled across all workers (a second bar, for backends that run videos side by side; the
        local backend shows a bar per video instead)."""
        if not self.enabled or count == 0:
            return
        if self._frames is None:
            from tqdm import tqdm

            self._frames = tqdm(unit="frame", desc="frames", position=1, file=sys.stderr, dynamic_ncols=True)
        self._frames.update(count)

    def started(self, name: str) -> None:
        self._bar.set_postfix_str(name, refresh=True)

    def finished(self) -> None:
        self._bar.update(1)

    def message(self, text: str) -> None:
        self._bar.write(f"gsam2-video: {text}", file=sys.stderr)

    def close(self) -> None:
        if self._frames is not None:
            self._frames.close()
        self._bar.close()


class VideoWriter:
    """The output side of one video, always in the process that holds the folder: staging, PNGs, record,
    publish (see :mod:`.layout`)."""

    def __init__(self, layout: DatasetLayout, options: RunnerOptions) -> None:
        self.layout = layout
        self.options = options

    def open(self, name: str) -> VideoStage:
        """Remove what an earlier run left of the video (record first) and give it a fresh staging folder."""
        self.layout.discard(name)
        return self.layout.stage(name, self.options.jpeg_quality)

    def finish(self, stage: VideoStage, labelled: LabelledVideo) -> VideoRecord:
        """Write the annotations and the record into ``stage`` and publish it."""
        t0 = time.perf_counter()
        record = labelled.record
        stage.write_annotations(record)
        seconds = dict(labelled.report.get("seconds", {}))
        seconds["write"] = round(time.perf_counter() - t0, 3)
        seconds["total"] = round(sum(v for k, v in seconds.items() if k != "total"), 3)
        stage.write_record(record, {**labelled.report, "seconds": seconds, "finished": now()})
        self.layout.publish(record.name, stage)
        return record

    def abandon(self, stage: VideoStage) -> None:
        self.layout.abandon(stage)


class Backend(Protocol):
    """Labels work items and yields one :class:`Outcome` per item, in any order. Errors that concern the
    whole run (models that do not load) are raised; errors of one video become a failed outcome."""

    def label(self, items: list[WorkItem], writer: VideoWriter, progress: RunProgress) -> Iterator[Outcome]: ...


class LocalBackend:
    """One video at a time in this process; ``make_tracker`` is called once, before the first video, so a
    model error stops the run instead of failing every video, and a run with nothing to do loads nothing."""

    def __init__(self, make_tracker: Callable[[], TrackerLike], options: RunnerOptions) -> None:
        self._make_tracker = make_tracker
        self._tracker: TrackerLike | None = None
        self.options = options

    def label(self, items: list[WorkItem], writer: VideoWriter, progress: RunProgress) -> Iterator[Outcome]:
        if items and self._tracker is None:
            self._tracker = self._make_tracker()
        for item in items:
            progress.started(item.job.name)
            try:
                record = self._one(item, writer, progress.enabled)
            except Exception as exc:  # noqa: BLE001 - a video fails alone
                yield Outcome(item, failure=failure_entry(item.job, exc))
            else:
                yield Outcome(item, record=record)

    def _one(self, item: WorkItem, writer: VideoWriter, frame_bar: bool) -> VideoRecord:
        assert self._tracker is not None
        stage = writer.open(item.job.name)
        try:
            labelled = label_video(self._tracker, item.job, item.settings, save_frames=self.options.save_frames,
                                   allow_partial=self.options.allow_partial, on_frame=stage.save_frame,
                                   frame_bar=frame_bar)
            return writer.finish(stage, labelled)
        except BaseException:
            writer.abandon(stage)
            raise


class DatasetRunner:
    """Runs jobs into a :class:`DatasetLayout`. ``make_tracker`` builds the local backend's tracker (at most
    once, lazily); ``backend`` replaces the local backend; ``model_settings`` are the run-wide settings that
    shape outputs (model ids, thresholds, dtype), stored with each video to detect changed settings on
    re-runs; ``shard`` restricts the run to its share of the jobs (see the module docstring)."""

    def __init__(self, make_tracker: Callable[[], TrackerLike] | None, layout: DatasetLayout,
                 options: RunnerOptions, model_settings: dict[str, Any], *, shard: Shard | None = None,
                 backend: Backend | None = None) -> None:
        if backend is None:
            if make_tracker is None:
                raise ValueError("DatasetRunner needs make_tracker or a backend")
            backend = LocalBackend(make_tracker, options)
        self.backend = backend
        self.layout = layout
        self.options = options
        self.model_settings = model_settings
        self.shard = shard

    def settings(self, job: VideoJob) -> dict[str, Any]:
        """The job's output-shaping settings in their JSON form (tuples as lists), as stored in its record, so
        a re-run compares like with like."""
        settings = {**job.settings(), "models": self.model_settings, "save_frames": self.options.save_frames}
        return json.loads(json.dumps(to_jsonable(settings), sort_keys=True))

    def run(self, jobs: list[VideoJob]) -> DatasetSummary:
        layout, shard = self.layout, self.shard
        if shard is not None:
            jobs = shard.select(jobs)
        summary = DatasetSummary(total=len(jobs))
        started, t0 = now(), time.perf_counter()
        failures: dict[int, dict[str, Any]] = {}
        with layout.locked(shard):
            layout.prepare(shard)
            layout.write_failures([], shard)
            todo = []
            for index, job in enumerate(jobs):
                settings = self.settings(job)
                if layout.is_done(job.name, settings, self.options.save_frames):
                    summary.skipped += 1
                else:
                    todo.append(WorkItem(index, job, settings))
            if summary.skipped:
                log.info("%d of %d videos already done; skipping them", summary.skipped, len(jobs))
            progress = RunProgress(len(todo), self.options.progress)
            try:
                for outcome in self.backend.label(todo, VideoWriter(layout, self.options), progress):
                    if outcome.record is not None:
                        summary.done += 1
                        summary.frames += outcome.record.length
                        summary.objects += len(outcome.record.objects)
                    else:
                        assert outcome.failure is not None
                        summary.failed += 1
                        failures[outcome.item.index] = outcome.failure
                        summary.failures = [failures[i] for i in sorted(failures)]
                        layout.write_failures(summary.failures, shard)
                        progress.message(f"{outcome.item.job.name}: FAILED: {outcome.failure['message']}")
                        if "traceback" in outcome.failure:
                            log.debug("%s failed:\n%s", outcome.item.job.name, outcome.failure["traceback"])
                    progress.finished()
            except KeyboardInterrupt:
                summary.interrupted = True
            finally:
                progress.close()
                summary.retried = int(getattr(self.backend, "retried", 0))
                if shard is None:
                    layout.tidy()
                    layout.write_set_files(self.options.exports)
                summary.seconds = time.perf_counter() - t0
                self._write_run(summary, started)
        return summary

    def _write_run(self, summary: DatasetSummary, started: str) -> None:
        doc: dict[str, Any] = {"kind": "dataset", "out": str(self.layout.root), "models": self.model_settings,
                               "backend": getattr(self.backend, "name", "local"), "started": started,
                               "finished": now(), "summary": summary.to_json()}
        if hasattr(self.backend, "stats"):
            doc["backend_stats"] = self.backend.stats()
        if self.shard is not None:
            doc["shard"] = self.shard.to_json()
        write_run_json(self.layout.run_report_path(self.shard), doc)
