"""The dataset folder on disk, and the protocol that makes it crash-safe and resumable.

Layout (YouTube-VOS-like, plus YouTube-VIS instances)::

    DIR/Annotations/<video>/00000.png   palette PNG per frame, pixel = object id (1..K), 0 = background
    DIR/JPEGImages/<video>/00000.jpg    the frames (--save-frames)
    DIR/runs/<video>/objects.json       the video's record (see .record); its presence marks the video done
    DIR/runs/<video>/run.json           versions, source, settings, counters, timings (volatile)
    DIR/meta.json                       YouTube-VOS meta: per video, objects with category and frames
    DIR/instances.json                  YouTube-VIS: every finished video, COCO RLE, categories unified by name
    DIR/failures.jsonl                  one line per video that failed in the latest run (empty if none)
    DIR/run.json                        the latest run's summary (volatile)

File names are the source frame index (``00000``), as in YouTube-VOS, so a ``--stride`` shows in the names.
Object ids above 255 switch that video's PNGs to 16-bit (the DAVIS writer's rule).

Crash safety: a video is built in ``DIR/.partial/<video>/`` and published by renames, with the record folder
``runs/<video>`` moved last. A video counts as done only when its record exists, names the same settings,
and its folders are in place; anything else is partial and is wiped and redone. Before redoing, the record
is removed *first*, so no interruption can leave an old record describing new files. The set-wide files are
rebuilt from the records (sorted by video name) and written atomically at the end of every run, so they
always describe exactly the finished videos. A lock file keeps two runs from writing one folder.

Shards (``--shard I/N``, see :mod:`.shard`) share a folder: each holds ``DIR/.lock`` *shared* plus its own
``DIR/shards/I-of-N/.lock`` exclusively, so N shards run side by side while a full run or a merge (which
hold ``DIR/.lock`` exclusively) cannot start, the same shard cannot run twice, and shards of different
counts N (which would overlap) refuse each other. A shard touches only its own videos: it does not sweep
the staging area or rebuild the set-wide files, and writes its failures and report to
``DIR/shards/I-of-N/``; the merge (:mod:`.merge`) does the rest.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import OutputError
from ..sinks.atomic import (
    PARTIAL_TAG,
    AtomicFile,
    prepare_output_dir,
    remove_quietly,
    replace_dir,
    write_text_atomic,
)
from ..sinks.davis import DavisSink
from ..sinks.runinfo import write_run_json
from ..types import VideoInfo
from .filters import normalise_class
from .record import VideoRecord, frame_name
from .work import encode_jpeg

if TYPE_CHECKING:
    from .shard import Shard

log = logging.getLogger("gsam2_video")

RECORD_FILE = "objects.json"
RUN_FILE = "run.json"
FAILURES_FILE = "failures.jsonl"
JPEG_QUALITY = 95


def _package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("gsam2-video")
    except PackageNotFoundError:
        return "unknown"


def _write_json(path: Path, doc: Any, *, compact: bool = False) -> Path:
    text = (json.dumps(doc, separators=(",", ":")) if compact else json.dumps(doc, indent=2)) + "\n"
    return write_text_atomic(path, text)


class VideoStage:
    """The temporary folder one video is built in: ``Annotations/``, ``JPEGImages/``, ``record/``."""

    def __init__(self, root: Path, jpeg_quality: int = JPEG_QUALITY) -> None:
        self.root = root
        self.jpeg_quality = jpeg_quality
        self.frames_dir = root / "JPEGImages"
        self.record_dir = root / "record"

    @property
    def annotations_dir(self) -> Path:
        return self.root / "Annotations"

    def save_frame(self, frame_index: int, image: np.ndarray | None) -> None:
        self.save_frame_bytes(frame_index, encode_jpeg(frame_index, image, self.jpeg_quality))

    def save_frame_bytes(self, frame_index: int, data: bytes) -> None:
        """Write an encoded frame (what a remote worker sends back; the same bytes ``save_frame`` writes)."""
        self.frames_dir.mkdir(exist_ok=True)
        path = self.frames_dir / f"{frame_name(frame_index)}.jpg"
        try:
            path.write_bytes(data)
        except OSError as err:
            raise OutputError(f"cannot write {path}: {err.strerror or err}") from err

    def write_annotations(self, record: VideoRecord) -> None:
        """One palette PNG per frame through the DAVIS writer (16-bit when an object id exceeds 255)."""
        sink = DavisSink(self.root, folder="Annotations")
        sink.open(VideoInfo(record.name, record.name, record.width, record.height), [])
        try:
            for pos in range(record.length):
                sink.write(record.frame_result(pos))
        except BaseException:
            sink.abort()
            raise
        sink.close()

    def write_record(self, record: VideoRecord, report: dict[str, Any]) -> None:
        self.record_dir.mkdir(exist_ok=True)
        _write_json(self.record_dir / RECORD_FILE, record.to_json(), compact=True)
        write_run_json(self.record_dir / RUN_FILE, report)


class DatasetLayout:
    """Paths of a dataset folder and the publish / resume / rebuild operations on it."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.annotations = self.root / "Annotations"
        self.images = self.root / "JPEGImages"
        self.runs = self.root / "runs"
        self.staging = self.root / ".partial"
        self.meta_path = self.root / "meta.json"
        self.instances_path = self.root / "instances.json"
        self.failures_path = self.root / FAILURES_FILE
        self.run_path = self.root / RUN_FILE
        self.shards = self.root / "shards"

    # -- setup ---------------------------------------------------------------------------------------------
    def shard_dir(self, shard: Shard) -> Path:
        """Where a shard keeps its failures, report and lock: ``DIR/shards/I-of-N``."""
        return self.shards / shard.label

    def run_report_path(self, shard: Shard | None = None) -> Path:
        return self.run_path if shard is None else self.shard_dir(shard) / RUN_FILE

    @contextmanager
    def locked(self, shard: Shard | None = None) -> Iterator[DatasetLayout]:
        """Hold the folder's locks for the duration of a run (released by the OS even on SIGKILL): ``DIR/.lock``
        exclusively, or for a shard shared plus its own shard lock (see the module docstring)."""
        prepare_output_dir(self.root)
        busy = f"output directory {self.root} is in use by another gsam2-video dataset run"
        with open(self.root / ".lock", "a+") as fh:
            try:
                fcntl.flock(fh.fileno(), (fcntl.LOCK_EX if shard is None else fcntl.LOCK_SH) | fcntl.LOCK_NB)
            except OSError:
                raise OutputError(busy + (" (a run without --shard, or a merge)" if shard else "")) from None
            if shard is None:
                yield self
                return
            folder = self.shard_dir(shard)
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as err:
                raise OutputError(f"cannot create {folder}: {err.strerror or err}") from err
            with open(folder / ".lock", "a+") as own:
                try:
                    fcntl.flock(own.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    raise OutputError(f"{busy} (shard {shard} is already running)") from None
                # checked after taking our own lock, so of two shards starting together at least one sees the other
                other = self._running_shard_count(shard.count)
                if other is not None:
                    raise OutputError(f"{busy} with {other} shards; shard {shard} would overlap it (use the "
                                      f"same N for every shard of a folder)")
                yield self

    def _running_shard_count(self, count: int) -> int | None:
        """The N of a shard run in progress with a different N than ``count``, if any."""
        for folder in sorted(self.shards.glob("*-of-*")):
            try:
                n = int(folder.name.rsplit("-of-", 1)[1])
            except ValueError:
                continue
            if n == count or not (folder / ".lock").is_file():
                continue
            with open(folder / ".lock", "a+") as fh:
                try:
                    fcntl.flock(fh.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
                except OSError:
                    return n
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
        return None

    def prepare(self, shard: Shard | None = None) -> None:
        """Create the folders and, for a whole-folder run, remove debris an interrupted run left (temporary
        files and folders). A shard leaves that to the merge: the debris may belong to a running shard."""
        for folder in (self.root, self.annotations, self.runs):
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as err:
                raise OutputError(f"cannot create {folder}: {err.strerror or err}") from err
        if shard is not None:
            return
        remove_quietly(self.staging)
        for folder in (self.root, self.annotations, self.images, self.runs):
            if folder.is_dir():
                for entry in folder.iterdir():
                    if entry.name.startswith(".") and PARTIAL_TAG in entry.name:
                        remove_quietly(entry)

    # -- per video -----------------------------------------------------------------------------------------
    def record_path(self, name: str) -> Path:
        return self.runs / name / RECORD_FILE

    def load_record(self, name: str) -> VideoRecord | None:
        """The video's record if it exists and reads back; None otherwise (treated as not done)."""
        path = self.record_path(name)
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
            return VideoRecord.from_json(doc, str(path))
        except (OSError, ValueError, OutputError):
            return None

    def is_done(self, name: str, settings: dict[str, Any], save_frames: bool) -> bool:
        """True when the video finished earlier with exactly these settings and all its folders exist."""
        record = self.load_record(name)
        if record is None or record.settings != settings:
            return False
        if not (self.annotations / name).is_dir():
            return False
        return (self.images / name).is_dir() == save_frames

    def discard(self, name: str) -> None:
        """Remove every trace of a video, record first (see the module docstring)."""
        remove_quietly(self.runs / name)
        for folder in (self.annotations / name, self.images / name, self.staging / name):
            remove_quietly(folder)

    def stage(self, name: str, jpeg_quality: int = JPEG_QUALITY) -> VideoStage:
        """A fresh, empty temporary folder for the video."""
        folder = self.staging / name
        remove_quietly(folder)
        try:
            folder.mkdir(parents=True)
        except OSError as err:
            raise OutputError(f"cannot create {folder}: {err.strerror or err}") from err
        return VideoStage(folder, jpeg_quality)

    def publish(self, name: str, stage: VideoStage) -> None:
        """Move a finished video into place; the record folder goes last and marks it done."""
        if not stage.annotations_dir.is_dir() or not (stage.record_dir / RECORD_FILE).is_file():
            raise OutputError(f"{name}: cannot publish an unfinished video")
        remove_quietly(self.runs / name)
        replace_dir(stage.annotations_dir, self.annotations / name)
        if stage.frames_dir.is_dir():
            self.images.mkdir(exist_ok=True)
            replace_dir(stage.frames_dir, self.images / name)
        else:
            remove_quietly(self.images / name)
        replace_dir(stage.record_dir, self.runs / name)
        remove_quietly(stage.root)

    def abandon(self, stage: VideoStage) -> None:
        remove_quietly(stage.root)

    def tidy(self) -> None:
        """Remove the (by now empty) staging folder at the end of a run."""
        remove_quietly(self.staging)

    # -- the whole set -------------------------------------------------------------------------------------
    def finished_names(self) -> list[str]:
        """Videos whose record and annotation folder both exist, sorted by name."""
        if not self.runs.is_dir():
            return []
        names = [p.name for p in self.runs.iterdir()
                 if not p.name.startswith(".") and (p / RECORD_FILE).is_file() and (self.annotations / p.name).is_dir()]
        return sorted(names)

    def finished_records(self) -> list[VideoRecord]:
        records = []
        for name in self.finished_names():
            record = self.load_record(name)
            if record is not None:
                records.append(record)
        return records

    def write_set_files(self, exports: Sequence[str] = ()) -> None:
        """Rebuild ``meta.json`` and ``instances.json`` (and the ``exports``, see :mod:`.exports`) from every
        finished video.

        Two passes over the records, one record in memory at a time: the first gathers the categories (ids
        must be known before any annotation is written), video entries and meta.json; the second streams the
        annotations into instances.json. So memory stays at one video's RLE however large the set.
        """
        names, videos, meta_videos, categories = [], [], {}, set()
        for name in self.finished_names():
            record = self.load_record(name)
            if record is None:
                continue
            names.append(name)
            videos.append(video_entry(record, len(names), (self.images / name).is_dir()))
            meta_videos[name] = meta_entry(record)
            categories |= {normalise_class(o.category) for o in record.objects}
        _write_json(self.meta_path, {"videos": meta_videos})
        cat_ids = {n: i for i, n in enumerate(sorted(categories), 1)}
        head = instances_head(videos, cat_ids)
        out = AtomicFile(self.instances_path, "w")
        try:
            out.write(json.dumps(head, separators=(",", ":"))[:-1] + ',"annotations":[')
            next_id = 1
            for vid, name in enumerate(names, 1):
                record = self.load_record(name)
                if record is None:
                    raise OutputError(f"{self.record_path(name)} changed while instances.json was written")
                for ann in annotation_entries(record, vid, cat_ids, next_id):
                    out.write(("," if next_id > 1 else "") + json.dumps(ann, separators=(",", ":")))
                    next_id += 1
            out.write("]}\n")
        except BaseException:
            out.discard()
            raise
        out.commit()
        if exports:
            from .exports import write_exports

            write_exports(self.root, self.images, names, lambda: self._records(names), exports)
        self._warn_stale_exports(exports)

    def _warn_stale_exports(self, exports: Sequence[str]) -> None:
        """Exports an earlier run built but this one did not: they still describe the older set of videos."""
        from .exports import export_paths

        stale = [k for k, path in export_paths(self.root).items() if k not in exports and path.exists()]
        if stale:
            log.warning("%s still describe(s) the videos of an earlier run; add --save %s to rebuild",
                        ", ".join(str(export_paths(self.root)[k].name) for k in stale), ",".join(stale))

    def _records(self, names: Sequence[str]) -> Iterator[VideoRecord]:
        """The records of ``names``, loaded one at a time (a record that vanished mid-way is an error)."""
        for name in names:
            record = self.load_record(name)
            if record is None:
                raise OutputError(f"{self.record_path(name)} changed while the set-wide files were written")
            yield record

    def write_failures(self, failures: Iterable[dict[str, Any]], shard: Shard | None = None) -> None:
        """``failures.jsonl`` (a shard's goes to its own folder; the merge folds them together)."""
        text = "".join(json.dumps(f, sort_keys=True) + "\n" for f in failures)
        path = self.failures_path if shard is None else self.shard_dir(shard) / FAILURES_FILE
        out = AtomicFile(path, "w")
        out.write(text)
        out.commit()


def meta_entry(r: VideoRecord) -> dict[str, Any]:
    """One video of YouTube-VOS ``meta.json``: ``{"objects": {"1": {"category", "frames"}}}``."""
    names = r.frame_names
    return {"objects": {str(o.object_id): {"category": o.category, "frames": [names[p] for p in sorted(o.frames)]}
                        for o in r.objects}}


def build_meta(records: Iterable[VideoRecord]) -> dict[str, Any]:
    """YouTube-VOS ``meta.json``: ``{"videos": {video: {"objects": {"1": {"category", "frames"}}}}}``."""
    return {"videos": {r.name: meta_entry(r) for r in sorted(records, key=lambda r: r.name)}}


def video_entry(r: VideoRecord, vid: int, has_frames: bool) -> dict[str, Any]:
    """One element of instances.json ``videos``."""
    return {"id": vid, "name": r.name, "width": r.width, "height": r.height, "length": r.length,
            "file_names": [f"{r.name}/{n}.jpg" for n in r.frame_names], "frame_indices": list(r.frame_indices),
            "has_frames": has_frames}


def annotation_entries(r: VideoRecord, vid: int, cat_ids: dict[str, int], first_id: int) -> list[dict[str, Any]]:
    """instances.json annotations of one video, ids from ``first_id``, in object id order."""
    out = []
    for k, o in enumerate(sorted(r.objects, key=lambda o: o.object_id)):
        segs: list[dict[str, Any] | None] = [None] * r.length
        boxes: list[list[int] | None] = [None] * r.length
        areas: list[int | None] = [None] * r.length
        for pos, e in sorted(o.frames.items()):
            segs[pos] = {"size": [r.height, r.width], "counts": e.counts}
            boxes[pos] = list(e.box)
            areas[pos] = e.area
        out.append({"id": first_id + k, "video_id": vid, "category_id": cat_ids[normalise_class(o.category)],
                    "object_id": o.object_id, "track_id": o.track_id, "iscrowd": 0, "height": r.height,
                    "width": r.width, "segmentations": segs, "bboxes": boxes, "areas": areas, "score": o.score})
    return out


def instances_head(videos: list[dict[str, Any]], cat_ids: dict[str, int]) -> dict[str, Any]:
    """instances.json without its annotations."""
    return {"info": {"description": "gsam2-video dataset", "generator": f"gsam2-video {_package_version()}"},
            "licenses": [], "videos": videos,
            "categories": [{"id": i, "name": n, "supercategory": "object"} for n, i in cat_ids.items()]}


def build_instances(records: Iterable[VideoRecord], with_frames: set[str]) -> dict[str, Any]:
    """YouTube-VIS ``instances.json`` for the whole set, in memory (what ``write_set_files`` streams).

    Categories are every object's category name (normalised) across all videos, sorted, ids 1..C; videos are
    sorted by name, ids 1..V; annotations follow video then object id. ``file_names`` point into
    JPEGImages (``<video>/<frame>.jpg``; ``has_frames`` says whether they were saved); ``frame_indices`` give
    the source frame of each entry and ``object_id`` the pixel value in that video's PNGs.
    """
    records = sorted(records, key=lambda r: r.name)
    cat_ids = {n: i for i, n in enumerate(sorted({normalise_class(o.category) for r in records
                                                   for o in r.objects}), 1)}
    videos, annotations = [], []
    for vid, r in enumerate(records, 1):
        videos.append(video_entry(r, vid, r.name in with_frames))
        annotations += annotation_entries(r, vid, cat_ids, len(annotations) + 1)
    return {**instances_head(videos, cat_ids), "annotations": annotations}
