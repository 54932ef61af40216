"""Track identities over a video: birth, confirmation, keyframe bookkeeping, label votes, retirement.

The registry owns track IDs so that an object keeps one ID for its whole life: IDs start at 1 (0 is the
background in label maps), increase, and are never reused, even after a track is removed. A tentative track
that is never confirmed used an ID too, so the IDs users see may skip numbers (as in SORT and ByteTrack).

Birth and confirmation (DEVA's in-clip consensus, SAM 3's hot start, ByteTrack's unconfirmed tracks): a
detection that is not a match or a duplicate starts a track at once, so SAM 2 follows it from that frame,
but the track is *tentative*: it is not emitted, not back-filled and cannot trigger a keyframe until it is
confirmed, either at birth by a detection scoring >= ``confirm_score`` or by being matched again on
``confirm_hits`` of the next ``confirm_window`` keyframes. A tentative track that runs out of window is
discarded silently (``LifecycleUpdate.discarded``). Offline runs hold frames for a keyframe interval, so a
track confirmed on the next keyframe is still shown from the frame it was born on.

Rules applied on every keyframe (after association, two-stage: see two_stage.py):

* a track matched by a confident detection resets its counters, counts a hit and casts a label vote (class,
  detection score); one matched only by a weak detection (``low_matches``) resets its counters, nothing else;
* occlusion tolerance is counted in frames, not keyframes: a track SAM 2 cannot see (empty mask) is kept,
  and can be re-identified (association's pass 3, by its last box or its constant-velocity prediction,
  :meth:`TrackRegistry.predicted_boxes`, and SAM 2's object pointer where the session has them), until it has been invisible for more than ``max_lost_frames``
  source frames (default 2 s at the source fps); then it is ended on the next keyframe. Counting keyframes
  instead let other objects' occlusions (each score-triggered keyframe) shorten this one's;
* a track SAM 2 still sees but no detection matches, on ``retire_unmatched_keyframes`` keyframes in a row
  on which its class *was* detected elsewhere in the frame, is ended: SAM 2 holds on to false positives
  (posters, reflections) and a track it still sees would otherwise live forever. Keyframes on which the
  detector found nothing of that class do not count (a detector blind to the class, e.g. at night, never
  ends tracks this way). A track whose mask lies mostly inside a matched track
  (``AssociationResult.covered_tracks``) is a second track on an already tracked object and counts the same;
* optionally (``max_missed_keyframes``), a track missed that many keyframes in a row while invisible (or
  covered) is ended too;
* a track's label is the majority vote over its matched detections (ties: the higher summed score, then
  the lower class id); its ``score`` is the mean score of those detections (the creating one included);
* ``max_objects`` caps live tracks: new detections are admitted best score first while there is room;
  existing tracks are never evicted to make room. Slots freed by removals on the same keyframe are reused.

The pipeline records visible boxes per frame with :meth:`TrackRegistry.observe`; they feed the lost-frame
count, :meth:`lost_boxes` and :meth:`predicted_boxes`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..config import AssociationConfig
from .association import AssociationResult

#: occlusion tolerance when the config leaves it to the source: this many seconds at the source fps
LOST_SECONDS = 2.0
#: ... and this many frames when the source does not know its fps (image folders, some streams)
LOST_FRAMES_NO_FPS = 60
#: observations (frame, box) kept per track for the constant-velocity prediction
MOTION_HISTORY = 8


def resolve_max_lost_frames(config: AssociationConfig, fps: float | None) -> int:
    """The occlusion tolerance in source frames: the configured value, else ``LOST_SECONDS`` at ``fps``."""
    if config.max_lost_frames is not None:
        return int(config.max_lost_frames)
    if fps is None or not np.isfinite(fps) or fps <= 0:
        return LOST_FRAMES_NO_FPS
    return max(1, round(LOST_SECONDS * float(fps)))


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
    invisible_misses: int = 0  # consecutive keyframes missed while invisible or covered (max_missed_keyframes)
    unmatched_streak: int = 0  # consecutive keyframes missed while its class was detected elsewhere
    hits: int = 0  # confident detections matched to this track, the creating one included
    confirmed: bool = True
    keyframes_since_birth: int = 0  # keyframes after the birth one (tentative tracks count their window)
    last_box: tuple[float, float, float, float] | None = None  # where it was last visible (see observe())
    last_visible: int = -1  # frame of last_box
    history: deque = field(default_factory=lambda: deque(maxlen=MOTION_HISTORY))  # (frame, xyxy) observations

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

    def frames_lost(self, frame_idx: int) -> int:
        """Source frames since it was last visible (since its birth if it never was)."""
        return int(frame_idx) - (self.last_visible if self.last_visible >= 0 else self.first_frame)

    def predict(self, frame_idx: int) -> np.ndarray | None:
        """Constant-velocity box at ``frame_idx`` from the observations kept (None if never seen). The velocity
        is the mean displacement per frame of the box centre over the history (OC-SORT re-fits motion from
        observations rather than from its own predictions through a gap); the size stays the last one."""
        if not self.history:
            return None
        f1, b1 = self.history[-1]
        f0, b0 = self.history[0]
        box = np.asarray(b1, np.float64).copy()
        if f1 > f0:
            c0 = 0.5 * (np.asarray(b0[:2]) + np.asarray(b0[2:]))
            c1 = 0.5 * (np.asarray(b1[:2]) + np.asarray(b1[2:]))
            v = (c1 - c0) / float(f1 - f0)
            box += np.tile(v * float(int(frame_idx) - f1), 2)
        return box


@dataclass
class LifecycleUpdate:
    """What the propagator must do after a keyframe.

    ``new_ids`` is aligned with ``AssociationResult.new``: the new track id, or 0 where the detection was not
    admitted because of ``max_objects``. ``created`` lists the admitted ones as (track_id, det_idx), tentative
    ones included (SAM 2 follows them; the pipeline shows them once confirmed). ``refresh`` are
    (track_id, det_idx) to re-condition on the detection mask; ``removed`` are track ids to forget, of which
    ``discarded`` are tentative tracks never confirmed and ``retired`` tracks ended by the unmatched rule;
    ``confirmed`` are tentative tracks confirmed on this keyframe.
    """

    new_ids: list[int] = field(default_factory=list)
    created: list[tuple[int, int]] = field(default_factory=list)
    refresh: list[tuple[int, int]] = field(default_factory=list)
    removed: list[int] = field(default_factory=list)
    capped: list[int] = field(default_factory=list)  # det indices not admitted because of max_objects
    confirmed: list[int] = field(default_factory=list)
    discarded: list[int] = field(default_factory=list)
    retired: list[int] = field(default_factory=list)


class TrackRegistry:
    """Live tracks and the ID counter of one tracking session.

    ``fps`` is the source's frame rate (None if unknown); it sizes the default occlusion tolerance.
    """

    def __init__(self, config: AssociationConfig, fps: float | None = None) -> None:
        config.validate()
        self.config = config
        self.max_lost_frames = resolve_max_lost_frames(config, fps)
        self.tracks: dict[int, Track] = {}
        self._next_id = 1
        # confirmed tracks ended recently: frames still held for back-fill may show them (bounded, not a log)
        self._ended_confirmed: deque[int] = deque(maxlen=4096)

    def __len__(self) -> int:
        return len(self.tracks)

    def __contains__(self, track_id: object) -> bool:
        return track_id in self.tracks

    @property
    def next_id(self) -> int:
        """The id the next new track will get."""
        return self._next_id

    def new_track(self, class_id: int, label: str, score: float, frame_idx: int, *, confirmed: bool = True) -> int:
        """Register a track (ignores ``max_objects``: the caller decided) and return its fresh id."""
        tid = self._next_id
        self._next_id += 1
        track = Track(id=tid, class_id=int(class_id), label=str(label), first_frame=int(frame_idx),
                      last_seen=int(frame_idx), confirmed=bool(confirmed))
        track.vote(int(class_id), str(label), float(score))
        self.tracks[tid] = track
        return tid

    def is_confirmed(self, track_id: int) -> bool:
        track = self.tracks.get(int(track_id))
        return track is not None and track.confirmed

    def emittable(self, track_id: int) -> bool:
        """Whether results may show this id: a live confirmed track, or a confirmed one ended recently (frames
        held for back-fill were committed while it lived). Tentative and discarded tracks are never shown."""
        track = self.tracks.get(int(track_id))
        if track is not None:
            return track.confirmed
        return int(track_id) in self._ended_confirmed

    def trigger_scores(self, scores: Mapping[int, float]) -> dict[int, float]:
        """The object scores the keyframe policy should watch: confirmed tracks only (a tentative track
        fading out is mostly a false positive SAM 2 let go of; detecting again would find the next one)."""
        return {int(t): float(s) for t, s in scores.items() if self.is_confirmed(int(t))}

    def observe(self, frame_idx: int, boxes: Mapping[int, Any]) -> None:
        """Record the boxes of the tracks visible on this frame (any frame, not only keyframes); they feed
        the lost-frame count, :meth:`lost_boxes` and :meth:`predicted_boxes`. Empty boxes are ignored."""
        for tid, box in boxes.items():
            track = self.tracks.get(int(tid))
            if track is None:
                continue
            b = np.asarray(box, dtype=np.float64).reshape(4)
            if b[2] > b[0] and b[3] > b[1]:
                track.last_box = (float(b[0]), float(b[1]), float(b[2]), float(b[3]))
                track.last_visible = int(frame_idx)
                track.history.append((int(frame_idx), track.last_box))

    def lost_boxes(self, track_ids: Sequence[int]) -> np.ndarray:
        """T x 4 float32: each track's last visible box from :meth:`observe` (zeros where never seen)."""
        out = np.zeros((len(track_ids), 4), np.float32)
        for k, tid in enumerate(track_ids):
            box = self.tracks[int(tid)].last_box
            if box is not None:
                out[k] = box
        return out

    def predicted_boxes(self, track_ids: Sequence[int], frame_idx: int) -> np.ndarray:
        """T x 4 float32: each track's constant-velocity box at ``frame_idx`` (zeros where never seen), the
        extrapolation capped at ``max_lost_frames`` frames past the last observation."""
        out = np.zeros((len(track_ids), 4), np.float32)
        for k, tid in enumerate(track_ids):
            track = self.tracks[int(tid)]
            if track.last_visible < 0:
                continue
            horizon = min(int(frame_idx), track.last_visible + self.max_lost_frames)
            box = track.predict(horizon)
            if box is not None:
                out[k] = box
        return out

    def remove(self, track_id: int) -> None:
        """Retire a track; its id is never handed out again."""
        if track_id not in self.tracks:
            raise KeyError(f"track {track_id} is not live")
        track = self.tracks.pop(track_id)
        if track.confirmed:
            self._ended_confirmed.append(int(track_id))

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
        frame (object score >= 0); a track missing from ``visible`` counts as invisible. ``frame_idx`` is the
        source frame index (the unit of ``max_lost_frames``)."""
        cfg = self.config
        frame_idx = int(frame_idx)
        scores = np.asarray(det_scores, dtype=np.float64).reshape(-1)
        classes = np.asarray(det_classes, dtype=np.int64).reshape(-1)
        labels = list(det_labels) if det_labels else [""] * len(scores)
        if not (len(scores) == len(classes) == len(labels)):
            raise ValueError(f"keyframe detections disagree in length: {len(scores)} scores, "
                             f"{len(classes)} classes, {len(labels)} labels")
        for tid, _ in (*result.matches, *result.low_matches):
            if tid not in self.tracks:
                raise KeyError(f"association matched track {tid}, which is not live")
        for tid in result.unmatched_tracks:
            if tid not in self.tracks:
                raise KeyError(f"association reports track {tid} as unmatched, but it is not live")

        update = LifecycleUpdate(refresh=list(result.refresh))
        covered = set(result.covered_tracks)
        low = set(result.low)
        detected_classes = {int(classes[j]) for j in range(len(classes)) if j not in low}
        for track in self.tracks.values():
            if track.first_frame != frame_idx:
                track.keyframes_since_birth += 1
        for tid, j in result.matches:
            track = self.tracks[tid]
            track.misses = track.invisible_misses = track.unmatched_streak = 0
            track.last_seen = frame_idx
            track.vote(int(classes[j]), labels[j], float(scores[j]))
            if not track.confirmed and track.hits - 1 >= cfg.confirm_hits:
                track.confirmed = True
                update.confirmed.append(tid)
        for tid, _ in result.low_matches:
            track = self.tracks[tid]
            track.misses = track.invisible_misses = track.unmatched_streak = 0
            track.last_seen = frame_idx
        for tid in result.unmatched_tracks:
            track = self.tracks[tid]
            track.misses += 1
            seen = visible.get(tid, False) and tid not in covered
            track.invisible_misses = 0 if seen else track.invisible_misses + 1
            if (visible.get(tid, False) or tid in covered) and track.class_id in detected_classes:
                track.unmatched_streak += 1
            missed_too_often = (cfg.max_missed_keyframes is not None
                                and track.invisible_misses >= cfg.max_missed_keyframes)
            lost_too_long = not visible.get(tid, False) and track.frames_lost(frame_idx) > self.max_lost_frames
            if missed_too_often or lost_too_long:
                update.removed.append(tid)
            elif (cfg.retire_unmatched_keyframes is not None
                  and track.unmatched_streak >= cfg.retire_unmatched_keyframes):
                update.removed.append(tid)
                update.retired.append(tid)
        removed = set(update.removed)
        for tid, track in self.tracks.items():
            if (not track.confirmed and tid not in removed
                    and track.keyframes_since_birth >= cfg.confirm_window):
                update.removed.append(tid)
                update.discarded.append(tid)
        for tid in update.removed:
            self.remove(tid)
        update.refresh = [(t, j) for t, j in update.refresh if t in self.tracks]

        cap = cfg.max_objects
        order = sorted(range(len(result.new)), key=lambda k: (-scores[result.new[k]], k))
        new_ids = [0] * len(result.new)
        for k in order:
            j = result.new[k]
            if cap is not None and len(self.tracks) >= cap:
                update.capped.append(j)
                continue
            confirmed = cfg.confirm_hits == 0 or (cfg.confirm_score is not None
                                                  and scores[j] >= cfg.confirm_score)
            tid = self.new_track(int(classes[j]), labels[j], float(scores[j]), frame_idx, confirmed=confirmed)
            new_ids[k] = tid
        update.new_ids = new_ids
        update.created = [(tid, j) for tid, j in zip(new_ids, result.new) if tid]
        update.capped.sort()
        return update
