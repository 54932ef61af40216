"""Which tracked objects make it into the dataset, decided once a whole video has been tracked.

Why after tracking and not per frame: a minimum track length and a "best N objects" cap need the whole
track; the tracker cannot know either while frames stream by. Each video's tracks are kept as compressed
RLE (see :mod:`.record`), then filtered here in a fixed order, so the result never depends on frame timing:

1. ``min_area``: on each frame, a mask with fewer pixels is dropped from that frame (the object counts as
   absent there), removing specks;
2. category: each remaining track takes its most frequent class name over its frames (ties: the class seen
   first), then ``classes`` keeps only the named classes;
3. ``min_track_length``: tracks present on fewer frames are dropped;
4. ``max_objects``: the longest tracks are kept (ties: higher mean score, then lower track id);
5. the survivors are numbered 1..K in order of first appearance (ties: track id) -- the ids in the PNGs.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError


@dataclass(frozen=True)
class FrameEntry:
    """One track on one frame: compressed COCO RLE counts, tight ``x, y, w, h`` box, area, score, class."""

    counts: str
    box: tuple[int, int, int, int]
    area: int
    score: float
    class_name: str


@dataclass(frozen=True)
class DatasetObject:
    """A track that survived the filters, with its dataset object id (pixel value in the PNGs)."""

    object_id: int
    track_id: int
    category: str
    score: float  # mean over the frames where it is present
    frames: dict[int, FrameEntry]  # frame position -> entry, only where present

    @property
    def first_position(self) -> int:
        return min(self.frames)


def normalise_class(name: str) -> str:
    """Category names are unified across videos by this form: lower case, single spaces."""
    return " ".join(str(name).lower().split())


@dataclass(frozen=True)
class Filters:
    """Object filters applied per video; defaults keep everything."""

    min_area: int = 0
    min_track_length: int = 1
    max_objects: int | None = None
    classes: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        for name, low in (("min_area", 0), ("min_track_length", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigError(f"{name.replace('_', ' ')} must be an integer >= {low}, got {value!r}")
        if self.max_objects is not None and (isinstance(self.max_objects, bool)
                                             or not isinstance(self.max_objects, int) or self.max_objects < 1):
            raise ConfigError(f"max objects must be an integer >= 1, got {self.max_objects!r}")
        if self.classes is not None:
            names = tuple(dict.fromkeys(normalise_class(c) for c in self.classes if normalise_class(c)))
            if not names:
                raise ConfigError("classes to keep is empty: name at least one class, e.g. 'person,car'")
            object.__setattr__(self, "classes", names)

    @staticmethod
    def parse_classes(text: str | Iterable[str] | None) -> tuple[str, ...] | None:
        """``"person, car"`` or ``["person", "car"]`` -> ``("person", "car")``; None stays None."""
        if text is None:
            return None
        parts = text.split(",") if isinstance(text, str) else [str(t) for t in text]
        return tuple(p for p in (normalise_class(x) for x in parts) if p)

    def check_against_prompt(self, prompt_classes: Iterable[str], where: str) -> None:
        """A class to keep that the prompt never asks for can only yield an empty video: reject it."""
        if self.classes is None:
            return
        known = {normalise_class(c) for c in prompt_classes}
        missing = [c for c in self.classes if c not in known]
        if missing:
            raise ConfigError(f"{where}: classes to keep {', '.join(missing)} not in the prompt's classes "
                              f"({', '.join(sorted(known))})")

    def to_json(self) -> dict[str, Any]:
        return {"min_area": self.min_area, "min_track_length": self.min_track_length,
                "max_objects": self.max_objects,
                "classes": list(self.classes) if self.classes is not None else None}

    def apply(self, tracks: Mapping[int, Mapping[int, FrameEntry]]) -> tuple[list[DatasetObject], dict[str, int]]:
        """Filter ``{track_id: {frame position: entry}}``; returns the objects kept and how many each rule
        removed (``small_masks`` counts track-frames, the others count tracks)."""
        removed = {"small_masks": 0, "empty": 0, "classes": 0, "min_track_length": 0, "max_objects": 0}
        candidates: list[DatasetObject] = []
        for tid in sorted(tracks):
            frames = {pos: e for pos, e in sorted(tracks[tid].items()) if e.area >= max(self.min_area, 1)}
            removed["small_masks"] += sum(1 for e in tracks[tid].values() if 0 < e.area < self.min_area)
            if not frames:
                removed["empty"] += 1
                continue
            category = _majority(e.class_name for e in frames.values())
            if self.classes is not None and category not in self.classes:
                removed["classes"] += 1
                continue
            if len(frames) < self.min_track_length:
                removed["min_track_length"] += 1
                continue
            score = sum(e.score for e in frames.values()) / len(frames)
            candidates.append(DatasetObject(0, tid, category, score, frames))
        if self.max_objects is not None and len(candidates) > self.max_objects:
            ranked = sorted(candidates, key=lambda o: (-len(o.frames), -o.score, o.track_id))
            removed["max_objects"] = len(candidates) - self.max_objects
            candidates = ranked[: self.max_objects]
        ordered = sorted(candidates, key=lambda o: (o.first_position, o.track_id))
        kept = [DatasetObject(i, o.track_id, o.category, o.score, o.frames) for i, o in enumerate(ordered, 1)]
        return kept, removed


def _majority(names: Iterable[str]) -> str:
    """Most frequent normalised name; ties go to the one seen first (Counter keeps insertion order)."""
    counts = Counter(normalise_class(n) for n in names)
    best = max(counts.values())
    return next(n for n, c in counts.items() if c == best)
