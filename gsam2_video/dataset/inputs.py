"""What to label: command-line inputs and manifests turned into one named job per video.

Why this is its own step: everything here is checked before any model loads, so a typo in a manifest costs
a second, not a model load; and each video gets a stable, unique folder name, which is what makes a re-run
find the videos it already finished.

Inputs (positional ``INPUT...``):

* a video file -> one video, named by its file stem;
* a folder holding video files -> each video (natural order); a folder holding images -> one video (an image
  sequence, named by the folder); a folder of image folders (``JPEGImages/<video>/``) -> one video each;
* a glob -> each matched video / folder; a glob matching only images -> one image-sequence video;
* the URL of a remote video file (``https://host/clip.mp4``) is passed through; a path that does not exist
  is kept as a job (:func:`collect_jobs` only names and checks settings). Webcam indices and live stream URLs
  are rejected: a dataset needs inputs that end.

:func:`check_sources` then proves every local input is there before anything heavy happens: it exists, can
be opened for reading and is not empty (a file of 0 bytes, a folder or glob with no images). The command
runs it before torch is imported, so a typo in a manifest of thousands of rows costs a second, not a model
load followed by one failure per row. A file that disappears later, during a long run, still fails alone
(recorded in the failures file) while the rest run.

Manifest (``--manifest FILE``, ``.jsonl`` or ``.csv``): one video per row/line with ``source`` (required;
relative paths are relative to the manifest's folder), ``prompt`` (falls back to ``--prompt``), optional
``name`` and setting overrides: ``decoder start stride max_frames`` (decoding), ``min_area
min_track_length keep_longest classes`` (filters, spelled like the command-line flags) and the tracker's keyframe / association fields such as
``detect_every`` or ``iou_threshold``. Unknown keys and bad values are errors naming the file and line.

Names are the file stem (or folder name) with characters outside ``[A-Za-z0-9._-]`` replaced by ``_``;
two inputs with the same name get their parent folder's name prefixed; a name still shared is an error.
"""

from __future__ import annotations

import csv
import dataclasses
import glob as globlib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from ..config import AssociationConfig, KeyframeConfig
from ..errors import ConfigError, Gsam2Error, SourceError
from ..prompts import parse_prompt
from ..sources.images import list_folder, list_glob, natural_key
from ..sources.spec import VIDEO_FILE_EXTENSIONS, is_image_file, parse_source, redact_url
from .filters import Filters

DECODERS = ("av", "decord", "opencv")
SOURCE_KEYS = ("decoder", "start", "stride", "max_frames")
FILTER_KEYS = ("min_area", "min_track_length", "keep_longest", "classes")
# manifest key -> Filters field, where they differ (keep_longest, like --keep-longest, is the filter that
# keeps the longest objects; max_objects is the tracker's live cap, which is not a per-video setting)
_FILTER_FIELDS = {"keep_longest": "max_objects"}
TRACKING_KEYS = tuple(f.name for cfg in (KeyframeConfig, AssociationConfig) for f in dataclasses.fields(cfg)
                      if f.name != "max_objects")
MANIFEST_KEYS = ("source", "prompt", "name") + SOURCE_KEYS + FILTER_KEYS + TRACKING_KEYS
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_GLOB_CHARS = re.compile(r"[*?\[]")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


@dataclass(frozen=True)
class SourceOptions:
    """How a video is decoded: which decoder, first frame, stride, frame cap."""

    decoder: str = "av"
    start: int = 0
    stride: int = 1
    max_frames: int | None = None

    def __post_init__(self) -> None:
        if self.decoder not in DECODERS:
            raise ConfigError(f"decoder must be one of {', '.join(DECODERS)}, got {self.decoder!r}")
        for name, low in (("start", 0), ("stride", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigError(f"{name} must be an integer >= {low}, got {value!r}")
        if self.max_frames is not None and (isinstance(self.max_frames, bool)
                                            or not isinstance(self.max_frames, int) or self.max_frames < 1):
            raise ConfigError(f"max frames must be an integer >= 1, got {self.max_frames!r}")

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class JobDefaults:
    """Settings from the command line; manifest rows override them per video."""

    prompt: str | None = None
    filters: Filters = field(default_factory=Filters)
    source: SourceOptions = field(default_factory=SourceOptions)


@dataclass(frozen=True)
class VideoJob:
    """One video to label. ``source`` is the string handed to ``open_source``."""

    name: str
    source: str
    prompt: str
    filters: Filters = field(default_factory=Filters)
    source_options: SourceOptions = field(default_factory=SourceOptions)
    tracking: dict[str, Any] = field(default_factory=dict)  # per-video Tracker.track overrides
    origin: str = "command line"  # where the job came from, for messages

    def settings(self) -> dict[str, Any]:
        """Everything about this job that shapes its output (compared on re-runs)."""
        return {"source": self.source, "prompt": self.prompt, "filters": self.filters.to_json(),
                "decoding": self.source_options.to_json(), "tracking": dict(sorted(self.tracking.items()))}


#: longest video name: file systems allow 255 bytes per name, and the hidden temporary names built from it
#: (".<name>.<random>.partial", ".<name>.old.<random>.partial") add up to 26 more
MAX_NAME_BYTES = 200


def safe_name(text: str) -> str:
    """A folder name that is the same on every OS and never hidden: ``[A-Za-z0-9._-]``, no leading dot."""
    name = _UNSAFE.sub("_", text).strip("_")
    name = name.lstrip(".")
    return name or "video"


# -- command-line inputs -----------------------------------------------------------------------------------
def _is_video_file(path: Path) -> bool:
    return path.is_file() and not path.name.startswith(".") and path.suffix.lower() in VIDEO_FILE_EXTENSIONS


def _has_images(folder: Path) -> bool:
    return any(p.is_file() and not p.name.startswith(".") and is_image_file(p) for p in folder.iterdir())


def _expand_folder(folder: Path) -> list[tuple[str, Path]]:
    """(source, path) pairs for a folder: its videos, else itself as frames, else its frame folders."""
    children = sorted((p for p in folder.iterdir() if not p.name.startswith(".")), key=lambda p: natural_key(p.name))
    videos = [p for p in children if _is_video_file(p)]
    if videos:
        return [(str(p), p) for p in videos]
    if _has_images(folder):
        return [(str(folder), folder)]
    frame_dirs = [p for p in children if p.is_dir() and _has_images(p)]
    if frame_dirs:
        return [(str(p), p) for p in frame_dirs]
    raise ConfigError(f"{folder}: folder holds no videos, images or folders of images")


def _expand_one(text: str) -> list[tuple[str, Path | None]]:
    """(source string, path used for naming) for one positional input."""
    stripped = text.strip()
    if not stripped:
        raise ConfigError("empty input: give a video file, folder or glob")
    if stripped.isdecimal():
        raise ConfigError(f"{stripped}: a webcam never ends; dataset inputs must be files, folders or globs")
    if _SCHEME.match(stripped):
        if parse_source(stripped).default_live:
            raise ConfigError(f"{redact_url(stripped)}: a live stream never ends; dataset inputs must be files "
                              f"(a URL of a remote video file is fine)")
        return [(stripped, None)]
    path = Path(stripped).expanduser()
    if path.is_dir():
        return [(s, p) for s, p in _expand_folder(path.resolve())]
    if path.exists():
        return [(str(path.resolve()), path.resolve())]
    if _GLOB_CHARS.search(stripped):
        matches = sorted((Path(m) for m in globlib.glob(str(path), recursive=True)),
                         key=lambda p: natural_key(str(p)))
        matches = [m for m in matches if not m.name.startswith(".")]
        if not matches:
            raise ConfigError(f"{stripped}: glob matches no files")
        if all(m.is_file() and is_image_file(m) for m in matches):
            parent = Path(stripped).parent
            return [(stripped, parent.resolve() if str(parent) not in ("", ".") else Path.cwd())]
        out: list[tuple[str, Path | None]] = []
        for m in matches:
            if m.is_dir():
                out += [(s, p) for s, p in _expand_folder(m.resolve())]
            elif is_image_file(m):
                raise ConfigError(f"{stripped}: glob matches both images and videos; use one glob per kind")
            else:
                out.append((str(m.resolve()), m.resolve()))
        return out
    return [(stripped, path)]  # missing path: kept so it fails alone, with the source's own message


def _base_name(source: str, path: Path | None) -> str:
    if path is None:  # URL
        parts = urlsplit(source)
        tail = Path(unquote(parts.path)).stem if parts.path.strip("/") else (parts.hostname or "stream")
        return safe_name(tail)
    return safe_name(path.stem if path.suffix.lower() in VIDEO_FILE_EXTENSIONS else path.name)


def _unique_names(entries: list[tuple[str, Path | None, str | None]]) -> list[str]:
    """Names for (source, path, explicit name) entries; see the module docstring for the collision rule."""
    names = [explicit or _base_name(src, path) for src, path, explicit in entries]
    counts: dict[str, int] = {}
    for n in names:
        counts[n] = counts.get(n, 0) + 1
    for i, (src, path, explicit) in enumerate(entries):
        if counts[names[i]] > 1 and explicit is None and path is not None and path.parent.name:
            names[i] = safe_name(f"{path.parent.name}_{names[i]}")
    seen: dict[str, str] = {}
    for n, (src, _, _) in zip(names, entries):
        if len(n.encode("utf-8")) > MAX_NAME_BYTES:
            raise ConfigError(f"video name {n[:40]!r}... ({src}) is {len(n.encode('utf-8'))} bytes long; names "
                              f"become folder names and must be at most {MAX_NAME_BYTES} bytes: give a shorter "
                              f"manifest 'name'")
        if n in seen:
            raise ConfigError(f"two inputs would both be named {n!r} ({seen[n]} and {src}); give them distinct "
                              f"names with a manifest 'name' column")
        seen[n] = src
    return names


# -- manifests -------------------------------------------------------------------------------------------
def _coerce(key: str, value: Any, where: str) -> Any:
    """Type-check a manifest value, converting CSV strings; None/'' means 'not set'."""
    if value is None or (isinstance(value, str) and value.strip() == ""):
        return None
    if key in ("source", "prompt", "name", "decoder"):
        if not isinstance(value, str):
            raise ConfigError(f"{where}: {key} must be a string, got {value!r}")
        return value.strip()
    if key == "classes":
        if isinstance(value, str) or (isinstance(value, list) and all(isinstance(v, str) for v in value)):
            return Filters.parse_classes(value)
        raise ConfigError(f"{where}: classes must be a comma-separated string or a list of strings, got {value!r}")
    kind = _kind_of(key)
    if kind == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in ("true", "1", "yes", "false", "0", "no"):
            return value.strip().lower() in ("true", "1", "yes")
        raise ConfigError(f"{where}: {key} must be true or false, got {value!r}")
    if kind == "int":
        if isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                raise ConfigError(f"{where}: {key} must be an integer, got {value!r}") from None
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: {key} must be an integer, got {value!r}")
        return value
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            raise ConfigError(f"{where}: {key} must be a number, got {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{where}: {key} must be a number, got {value!r}")
    return float(value)


def _kind_of(key: str) -> str:
    if key in ("start", "stride", "max_frames", "min_area", "min_track_length", "keep_longest"):
        return "int"
    for cfg in (KeyframeConfig, AssociationConfig):
        for f in dataclasses.fields(cfg):
            if f.name == key:
                annotation = str(f.type)
                return "bool" if "bool" in annotation else "int" if "int" in annotation else "float"
    raise AssertionError(key)  # pragma: no cover - keys are checked against MANIFEST_KEYS first


def read_manifest(path: str | Path) -> list[tuple[str, dict[str, Any]]]:
    """Rows of a ``.jsonl`` / ``.csv`` manifest as (``file:line`` location, {key: typed value or None})."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"manifest {path}: no such file")
    suffix = path.suffix.lower()
    raw_rows: list[tuple[str, dict[str, Any]]] = []
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"manifest {path}: cannot read ({exc})") from None
    if suffix in (".jsonl", ".ndjson"):
        for lineno, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ConfigError(f"{where}: not valid JSON ({exc.msg})") from None
            if not isinstance(row, dict):
                raise ConfigError(f"{where}: each line must be a JSON object, got {type(row).__name__}")
            raw_rows.append((where, row))
    elif suffix == ".csv":
        reader = csv.DictReader(text.splitlines())
        if not reader.fieldnames or "source" not in [f.strip() for f in reader.fieldnames]:
            raise ConfigError(f"manifest {path}: the CSV header must have a 'source' column")
        for row in reader:
            where = f"{path}:{reader.line_num}"
            if None in row:
                raise ConfigError(f"{where}: more cells than header columns")
            clean = {k.strip(): v for k, v in row.items() if k is not None}
            if all((v or "").strip() == "" for v in clean.values()):
                continue
            raw_rows.append((where, clean))
    else:
        raise ConfigError(f"manifest {path}: unknown format {suffix or '(no extension)'}; use .jsonl or .csv")
    if not raw_rows:
        raise ConfigError(f"manifest {path}: no rows")
    rows = []
    for where, row in raw_rows:
        if "max_objects" in row:
            raise ConfigError(f"{where}: 'max_objects' is renamed 'keep_longest' (keep the N longest objects "
                              "of the video)")
        unknown = sorted(set(row) - set(MANIFEST_KEYS))
        if unknown:
            raise ConfigError(f"{where}: unknown key {', '.join(map(repr, unknown))} "
                              f"(allowed: {', '.join(MANIFEST_KEYS)})")
        typed = {k: _coerce(k, v, where) for k, v in row.items()}
        if typed.get("source") is None:
            raise ConfigError(f"{where}: 'source' is required")
        rows.append((where, typed))
    return rows


def _manifest_source(source: str, base: Path) -> tuple[str, Path | None]:
    if _SCHEME.match(source):
        return source, None
    path = Path(source).expanduser()
    if not path.is_absolute():
        path = base / path
    return str(path.resolve()), path.resolve()


def _job_from_row(where: str, row: dict[str, Any], defaults: JobDefaults, source: str, name: str) -> VideoJob:
    prompt = row.get("prompt") or defaults.prompt
    if not prompt:
        raise ConfigError(f"{where}: no prompt; add a 'prompt' value or pass --prompt")
    try:
        filters = dataclasses.replace(defaults.filters, **{_FILTER_FIELDS.get(k, k): row[k] for k in FILTER_KEYS
                                                           if row.get(k) is not None})
        decoding = dataclasses.replace(defaults.source, **{k: row[k] for k in SOURCE_KEYS
                                                            if row.get(k) is not None})
        tracking = {k: row[k] for k in TRACKING_KEYS if row.get(k) is not None}
        _check_tracking(tracking)
    except Gsam2Error as exc:
        raise ConfigError(f"{where}: {exc}") from None
    return VideoJob(name, source, prompt, filters, decoding, tracking, where)


def _check_tracking(overrides: dict[str, Any]) -> None:
    """Validate per-video tracker overrides the same way the Tracker will."""
    kf = dataclasses.replace(KeyframeConfig(), **{k: v for k, v in overrides.items()
                                                  if k in {f.name for f in dataclasses.fields(KeyframeConfig)}})
    assoc = dataclasses.replace(AssociationConfig(), **{k: v for k, v in overrides.items()
                                                        if k in {f.name for f in dataclasses.fields(AssociationConfig)}})
    kf.validate()
    assoc.validate()


# -- putting it together ---------------------------------------------------------------------------------
def collect_jobs(inputs: Iterable[str], defaults: JobDefaults, manifest: str | Path | None = None) -> list[VideoJob]:
    """All jobs, manifest rows first then positional inputs, each checked (prompt, filters, overrides)."""
    entries: list[tuple[str, Path | None, str | None]] = []
    makers: list[tuple[str, dict[str, Any]]] = []
    if manifest is not None:
        base = Path(manifest).resolve().parent
        for where, row in read_manifest(manifest):
            source, path = _manifest_source(row["source"], base)
            explicit = safe_name(row["name"]) if row.get("name") else None
            entries.append((source, path, explicit))
            makers.append((where, row))
    for text in inputs:
        for source, path in _expand_one(text):
            entries.append((source, path, None))
            makers.append(("command line", {}))
    if not entries:
        raise ConfigError("no inputs: give video files, folders or globs, or --manifest FILE")
    names = _unique_names(entries)
    jobs: list[VideoJob] = []
    for (source, _, _), name, (where, row) in zip(entries, names, makers):
        job = _job_from_row(where, row, defaults, source, name)
        try:
            prompt = parse_prompt(job.prompt)
        except Gsam2Error as exc:
            raise ConfigError(f"{where}: {exc}") from None
        job.filters.check_against_prompt(prompt.classes, where)
        jobs.append(job)
    return jobs


# -- sources present before the models load ----------------------------------------------------------------
def _check_readable(path: Path) -> None:
    """``path`` opens for reading and holds at least one byte; SourceError naming it otherwise."""
    try:
        with path.open("rb") as fh:
            empty = not fh.read(1)
    except OSError as exc:
        raise SourceError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    if empty:
        raise SourceError(f"{path}: file is empty (0 bytes)")


def check_source(source: str) -> None:
    """One job's source is usable as far as can be told without decoding it: a local file exists, is
    readable and not empty; a folder or glob holds images. URLs (remote files) are left to the run.

    Cheap on purpose (a stat, one byte read, a folder listing): it runs for every input of a dataset before
    the models load, and decoding each video here would cost as much as the run's own first frame.
    """
    if _SCHEME.match(source.strip()) and not source.strip().lower().startswith("file:"):
        return
    spec = parse_source(source)  # SourceError "<path>: no such file or directory" for a missing path
    try:
        if spec.kind in ("file", "image"):
            _check_readable(Path(spec.target))
        elif spec.kind == "folder":
            if not list_folder(Path(spec.target)):
                raise SourceError(f"{spec.target}: folder has no images")
        elif spec.kind == "glob" and not list_glob(str(spec.target)):
            raise SourceError(f"{spec.target}: glob matches no images")
    except OSError as exc:  # an unreadable folder (permissions) while listing it
        raise SourceError(f"{source}: cannot be read ({exc.strerror or exc})") from None


def check_sources(jobs: Iterable[VideoJob]) -> None:
    """Every job's source passes :func:`check_source`; otherwise one SourceError whose line names the first
    bad input (with the manifest line it came from) and how many more there are, so one run of the
    command lists what to fix instead of failing them one by one after the models load."""
    problems: list[str] = []
    for job in jobs:
        try:
            check_source(job.source)
        except SourceError as exc:
            problems.append(str(exc) if job.origin == "command line" else f"{job.origin}: {exc}")
    if problems:
        more = len(problems) - 1
        tail = f" (and {more} more unusable input{'s' if more > 1 else ''})" if more else ""
        raise SourceError(problems[0] + tail)
