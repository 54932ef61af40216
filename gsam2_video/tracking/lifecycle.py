"""Track identities over a video: creation, keyframe bookkeeping, label votes, retirement.

The registry owns track IDs so that an object keeps one ID for its whole life: IDs start at 1 (0 is the
background in label maps), increase, and are never reused, even after a track is removed.

Rules applied on every keyframe (after :func:`~gsam2_video.tracking.association.associate`):

* a matched track resets its miss counters and casts a label vote (class, detection score);
* an unmatched track counts a miss; it is removed only after ``max_missed_keyframes`` consecutive keyframes
  on which it was both missed *and* invisible (SAM 2 object score < 0). A track SAM 2 still sees is kept
  however often the detector misses it: the detector missing an object is far more common than SAM 2
  hallucinating one, and a removed track's ID could never come back. The exception is a track whose mask
  lies mostly inside a matched track (``AssociationResult.covered_tracks``): it is a second track on an
  object already tracked (or on a part of it), so it counts as invisible and ages out the same way;
* a track's label is the majority vote over its matched detections (ties: the higher summed score, then
  the lower class id);
* a track's ``score`` is the mean score of the detections matched to it (including the one that created
  it). ``max_objects`` caps live tracks: new detections are admitted best score first while there is room;
  existing tracks are never evicted to make room, since evicting would end an ID that is still being tracked
  well in favour of a one-frame detection. Slots freed by removals on the same keyframe are reused.

Tracks SAM 2 has lost (empty mask) can re-acquire a detection near the box where they were last seen: the
pipeline records visible boxes per frame with :meth:`TrackRegistry.observe` and passes
:meth:`TrackRegistry.lost_boxes` to ``associate(..., lost_boxes=...)``.

No min-hits confirmation: a detection that is not a match or a duplicate becomes a track at once. A
confirmation rule would hide an object for a whole keyframe interval after it appears (back-fill could
repair that offline, but live mode cannot), and the detector's own thresholds already decide what counts
as an object. A one-off false positive therefore gets a track, which is removed like any other once it has
been invisible for ``max_missed_keyframes`` keyframes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..config import AssociationConfig
from .association import AssociationResult


@dataclass
class LabelVote:
    """Votes for one class on one track."""

    label: str
    count: int = 0
    score_sum: float = 0.0


@dataclass
class Track:
    """One live object. ``last_seen`` is the last keyframe it was matched (or created) on."""

    id: int
    class_id: int
    label: str
    votes: dict[int, LabelVote] = field(default_factory=dict)
    score: float = 0.0  # mean score of the detections matched to this track
    first_frame: int = 0
    last_seen: int = 0
    misses: int = 0  # consecutive keyframes without a matching detection
    invisible_misses: int = 0  # consecutive keyframes missed while invisible; removal counts these
    hits: int = 0  # detections matched to this track, the creating one included
    last_box: tuple[float, float, float, float] | None = None  # where it was last visible (see observe())
    last_visible: int = -1  # frame of last_box

    def vote(self, class_id: int, label: str, score: float) -> None:
        v = self.votes.setdefault(class_id, LabelVote(label))
        v.count += 1
        v.score_sum += score
        if not v.label:
            v.label = label
        self.score += (score - self.score) / (self.hits + 1)
        self.hits += 1
        best = max(self.votes.items(), key=lambda kv: (kv[1].count, kv[1].score_sum, -kv[0]))
        self.class_id, self.label = best[0], best[1].label


@dataclass
class LifecycleUpdate:
    """What the propagator must do after a keyframe.

    ``new_ids`` is aligned with ``AssociationResult.new``: the new track id, or 0 where the detection was not
    admitted because of ``max_objects``. ``created`` lists the admitted ones as (track_id, det_idx).
    ``refresh`` are (track_id, det_idx) to re-condition on the detection mask; ``removed`` are track ids.
    """

    new_ids: list[int] = field(default_factory=list)
    created: list[tuple[int, int]] = field(default_factory=list)
    refresh: list[tuple[int, int]] = field(default_factory=list)
    removed: list[int] = field(default_factory=list)
    capped: list[int] = field(default_factory=list)  # det indices not admitted because of max_objects


class TrackRegistry:
    """Live tracks and the ID counter of one tracking session."""

    def __init__(self, config: AssociationConfig) -> None:
        config.validate()
        self.config = config
        self.tracks: dict[int, Track] = {}
        self._next_id = 1

    def __len__(self) -> int:
        return len(self.tracks)

    def __contains__(self, track_id: object) -> bool:
        return track_id in self.tracks

    @property
    def next_id(self) -> int:
        """The id the next new track will get."""
        return self._next_id

    def new_track(self, class_id: int, label: str, score: float, frame_idx: int) -> int:
        """Register a track (ignores ``max_objects``: the caller decided) and return its fresh id."""
        tid = self._next_id
        self._next_id += 1
        track = Track(id=tid, class_id=int(class_id), label=str(label), first_frame=int(frame_idx),
                      last_seen=int(frame_idx))
        track.vote(int(class_id), str(label), float(score))
        self.tracks[tid] = track
        return tid

    def observe(self, frame_idx: int, boxes: Mapping[int, Any]) -> None:
        """Record the boxes of the tracks visible on this frame (any frame, not only keyframes); they feed
        :meth:`lost_boxes`, which lets a track SAM 2 lost re-acquire a detection (see ``associate``)."""
        for tid, box in boxes.items():
            track = self.tracks.get(int(tid))
            if track is None:
                continue
            b = np.asarray(box, dtype=np.float64).reshape(4)
            if b[2] > b[0] and b[3] > b[1]:
                track.last_box = (float(b[0]), float(b[1]), float(b[2]), float(b[3]))
                track.last_visible = int(frame_idx)

    def lost_boxes(self, track_ids: Sequence[int]) -> np.ndarray:
        """T x 4 float32: each track's last visible box from :meth:`observe` (zeros where never seen)."""
        out = np.zeros((len(track_ids), 4), np.float32)
        for k, tid in enumerate(track_ids):
            box = self.tracks[int(tid)].last_box
            if box is not None:
                out[k] = box
        return out

    def remove(self, track_id: int) -> None:
        """Retire a track; its id is never handed out again."""
        if track_id not in self.tracks:
            raise KeyError(f"track {track_id} is not live")
        del self.tracks[track_id]

    def on_keyframe(
        self,
        result: AssociationResult,
        det_scores: Any,
        det_classes: Any,
        det_labels: Sequence[str] | None,
        visible: Mapping[int, bool],
        frame_idx: int,
    ) -> LifecycleUpdate:
        """Apply one keyframe's association. ``visible[track_id]`` is whether SAM 2 sees the track on this
        frame (object score >= 0); a track missing from ``visible`` counts as invisible."""
        scores = np.asarray(det_scores, dtype=np.float64).reshape(-1)
        classes = np.asarray(det_classes, dtype=np.int64).reshape(-1)
        labels = list(det_labels) if det_labels else [""] * len(scores)
        if not (len(scores) == len(classes) == len(labels)):
            raise ValueError(f"keyframe detections disagree in length: {len(scores)} scores, "
                             f"{len(classes)} classes, {len(labels)} labels")
        for tid, _ in result.matches:
            if tid not in self.tracks:
                raise KeyError(f"association matched track {tid}, which is not live")
        for tid in result.unmatched_tracks:
            if tid not in self.tracks:
                raise KeyError(f"association reports track {tid} as unmatched, but it is not live")

        update = LifecycleUpdate(refresh=list(result.refresh))
        covered = set(result.covered_tracks)
        for tid, j in result.matches:
            track = self.tracks[tid]
            track.misses = 0
            track.invisible_misses = 0
            track.last_seen = int(frame_idx)
            track.vote(int(classes[j]), labels[j], float(scores[j]))
        for tid in result.unmatched_tracks:
            track = self.tracks[tid]
            track.misses += 1
            if visible.get(tid, False) and tid not in covered:
                track.invisible_misses = 0
            else:
                track.invisible_misses += 1
                if track.invisible_misses >= self.config.max_missed_keyframes:
                    update.removed.append(tid)
        for tid in update.removed:
            del self.tracks[tid]

        cap = self.config.max_objects
        order = sorted(range(len(result.new)), key=lambda k: (-scores[result.new[k]], k))
        new_ids = [0] * len(result.new)
        for k in order:
            j = result.new[k]
            if cap is not None and len(self.tracks) >= cap:
                update.capped.append(j)
                continue
            tid = self.new_track(int(classes[j]), labels[j], float(scores[j]), frame_idx)
            new_ids[k] = tid
        update.new_ids = new_ids
        update.created = [(tid, j) for tid, j in zip(new_ids, result.new) if tid]
        update.capped.sort()
        return update
