"""Oracle models that replay human-annotated pedestrian trajectories through the real tracking code.

Why: identity quality (ID switches, occlusions survived, false tracks) is decided by the tracker's logic, not
by the networks' weights, and no weights are available here. These stand-ins plug into the same seams as
Grounding DINO and SAM 2 (``detector.detect(image, prompt, frame_index=...)`` and the propagator session's
reset / encode / propagate / segment_boxes / add_object / refresh / remove / commit / backfill), so the real
``Tracker`` runs unchanged on top of them.

The world: the MOT-format ground truth motmetrics ships (TUD-Campus, TUD-Stadtmitte; 640 x 480 at 25 fps),
scaled down. Each frame is rendered back to front (a person whose box reaches lower in the image is nearer
the camera and hides the ones behind); a person's *visible region* is the part of their box left uncovered.
A person is visible when at least ``VISIBLE_FRAC`` of the box is uncovered; otherwise they are occluded.

* Detector: every visible person is detected with probability 1 - p_miss (more misses the more occluded),
  box = tight box of the visible region plus jitter, score drawn around a visibility-dependent mean; plus
  random false positives and a few fixed "poster" spots that fire now and then. Detections depend only on
  (sequence, seed, frame), never on what the tracker did, and are filtered at the configured box threshold
  (like Grounding DINO's post-processing), so every method sees the same boxes on the frames it detects.
* Propagator: box -> mask gives the visible region of the person whose visible box the box overlaps best
  (a false-positive box gives the box itself). A tracked object returns its person's visible region, empty
  with a negative score while occluded. Noise: after an occlusion SAM 2 sometimes does not pick the person
  up again (lost until re-prompted); where two people overlap it sometimes jumps to the neighbour; a track
  started on a false positive keeps showing that blob for a while, or for good (``p_hold_forever``).
  Random events are drawn from generators keyed by (seed, object id, frame), so they do not depend on how
  many other objects exist.
* Object pointers (what re-identification compares): every annotated person has a fixed random unit
  identity vector (seeded); a tracked object's pointer on a frame where it shows something is the identity
  of the person whose region it shows plus small noise (``Noise.pointer_sd``), so when it jumps to a
  neighbour its pointer follows the neighbour; a false-positive blob has its own random vector (keyed by its
  box). A box decode's pointer is that of the person the box selects (or of the blob it makes). The session
  keeps each object's pointer from its last frame with a non-empty mask, as the SAM 2 session does.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gsam2_video.config import DetectorConfig, PropagatorConfig
from gsam2_video.types import Detections, Frame, VideoInfo

VISIBLE_FRAC = 0.3  # uncovered fraction of the box at which a person counts as visible
LOGIT = 10.0  # mask logit magnitude of the oracle masks
POINTER_DIM = 256  # SAM 2's object pointer length (hidden size of the released models)


# ----------------------------------------------------------------------------------------------- world
@dataclass
class World:
    """An annotated sequence rendered back to front: per frame, a label map (person id per pixel)."""

    name: str
    fps: float
    height: int
    width: int
    labels: np.ndarray  # F x H x W int32, 0 = background
    boxes: list[dict[int, np.ndarray]]  # per frame: person id -> full xyxy box (scaled, clipped)
    visible: list[dict[int, float]]  # per frame: person id -> uncovered fraction of the box

    @property
    def frames(self) -> int:
        return len(self.boxes)

    def region(self, pid: int, t: int) -> np.ndarray:
        return self.labels[t] == pid

    def is_visible(self, pid: int, t: int) -> bool:
        return self.visible[t].get(pid, 0.0) >= VISIBLE_FRAC

    def visible_ids(self, t: int) -> list[int]:
        return [pid for pid, v in self.visible[t].items() if v >= VISIBLE_FRAC]

    def visible_box(self, pid: int, t: int) -> np.ndarray:
        return tight_box(self.region(pid, t))


def tight_box(mask: np.ndarray) -> np.ndarray:
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    if not len(rows):
        return np.zeros(4, np.float32)
    return np.array([cols[0], rows[0], cols[-1] + 1, rows[-1] + 1], np.float32)


def box_iou(a: np.ndarray, b: np.ndarray) -> float:
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def load_world(gt_path: Path, name: str, scale: float, fps: float = 25.0, size: tuple[int, int] = (480, 640)) -> World:
    """MOT-format gt.txt (frame, id, x, y, w, h, ...; frames from 1) -> a rendered World."""
    rows = np.loadtxt(gt_path, delimiter=",", ndmin=2)
    n = int(rows[:, 0].max())
    boxes: list[dict[int, np.ndarray]] = [{} for _ in range(n)]
    for r in rows:
        x0, y0 = r[2] * scale, r[3] * scale
        boxes[int(r[0]) - 1][int(r[1])] = np.array([x0, y0, x0 + r[4] * scale, y0 + r[5] * scale], np.float32)
    return world_from_boxes(name, fps, round(size[0] * scale), round(size[1] * scale), boxes)


def world_from_boxes(name: str, fps: float, h: int, w: int, boxes: list[dict[int, np.ndarray]]) -> World:
    """Render per-frame person boxes (id -> xyxy, ids >= 1) back to front into a World."""
    n = len(boxes)
    clipped: list[dict[int, np.ndarray]] = []
    for frame in boxes:
        keep = {}
        for pid, b in frame.items():
            b = np.clip(np.asarray(b, np.float32), 0, [w, h, w, h])
            if b[2] - b[0] >= 1 and b[3] - b[1] >= 1:
                keep[int(pid)] = b
        clipped.append(keep)
    labels = np.zeros((n, h, w), np.int32)
    visible: list[dict[int, float]] = []
    for t in range(n):
        area = {}
        for pid, b in sorted(clipped[t].items(), key=lambda kv: kv[1][3]):  # far (higher up) first
            x0, y0, x1, y1 = int(round(b[0])), int(round(b[1])), int(round(b[2])), int(round(b[3]))
            labels[t, y0:y1, x0:x1] = pid
            area[pid] = max(1, (x1 - x0) * (y1 - y0))
        counts = np.bincount(labels[t].reshape(-1), minlength=max(area, default=0) + 1)
        visible.append({pid: float(counts[pid]) / a for pid, a in area.items()})
    return World(name, fps, h, w, labels, clipped, visible)


# ----------------------------------------------------------------------------------------------- noise
@dataclass(frozen=True)
class Noise:
    """How imperfect the detector and SAM 2 are (probabilities per keyframe or per frame, as noted)."""

    p_miss: float = 0.0  # a fully visible person is not detected on a keyframe
    p_miss_occluded: float = 0.0  # extra miss probability times the covered fraction of the box
    jitter: float = 0.0  # box corner noise, std as a fraction of the box's width / height
    score_sd: float = 0.0  # 0: every true detection scores 0.9
    fp_rate: float = 0.0  # random false positives per keyframe (Poisson mean)
    fp_spots: int = 0  # fixed places (posters, mannequins) the detector fires on now and then
    p_spot: float = 0.0  # probability per keyframe that a spot fires
    fp_hold: float = 0.0  # mean frames SAM 2 keeps showing a false-positive blob (geometric)
    p_hold_forever: float = 0.0  # SAM 2 keeps a false-positive blob for good
    p_lost_after_occlusion: float = 0.0  # SAM 2 does not pick a person up again after an occlusion
    p_jump: float = 0.0  # per frame, while overlapping a neighbour, SAM 2 jumps to the neighbour
    # object pointer noise, per component (identities are unit vectors of POINTER_DIM): 0.02 gives a cosine
    # similarity of about 0.95 between two pointers of one person, about 0 +- 0.06 between two people
    pointer_sd: float = 0.02


NOISE = {
    "clean": Noise(),
    "moderate": Noise(p_miss=0.1, p_miss_occluded=0.3, jitter=0.04, score_sd=0.1, fp_rate=0.3, fp_spots=1,
                      p_spot=0.3, fp_hold=20, p_hold_forever=0.3, p_lost_after_occlusion=0.2, p_jump=0.01),
    "heavy": Noise(p_miss=0.2, p_miss_occluded=0.5, jitter=0.08, score_sd=0.15, fp_rate=1.0, fp_spots=2,
                   p_spot=0.5, fp_hold=40, p_hold_forever=0.6, p_lost_after_occlusion=0.4, p_jump=0.03),
}


@dataclass
class Clock:
    """The frame the propagator last encoded; lets the detector know the frame when the caller does not pass
    ``frame_index`` (older pipelines)."""

    t: int = 0


# -------------------------------------------------------------------------------------------- detector
@dataclass
class OracleDetector:
    """Replays annotated boxes with misses, jitter and false positives (see the module docstring)."""

    world: World
    noise: Noise
    seed: int
    clock: Clock
    config: DetectorConfig = field(default_factory=DetectorConfig)
    calls: list[int] = field(default_factory=list)

    def with_thresholds(self, config: DetectorConfig) -> OracleDetector:
        return replace(self, config=config, calls=self.calls)

    def candidates(self, t: int) -> tuple[np.ndarray, np.ndarray]:
        """Every detection of frame ``t`` before the score threshold: (N x 4 boxes, N scores)."""
        nz, wd = self.noise, self.world
        rng = np.random.default_rng([self.seed, t, 11])
        boxes, scores = [], []
        for pid in sorted(wd.boxes[t]):
            vis = wd.visible[t][pid]
            miss = nz.p_miss + nz.p_miss_occluded * (1.0 - vis)
            u, noise4, s = rng.random(), rng.normal(0, 1, 4), rng.normal(0, 1)
            if vis < VISIBLE_FRAC or u < miss:
                continue
            b = wd.visible_box(pid, t)
            bw, bh = b[2] - b[0], b[3] - b[1]
            b = b + noise4 * nz.jitter * np.array([bw, bh, bw, bh])
            boxes.append(b)
            scores.append(0.9 if nz.score_sd == 0 else 0.35 + 0.4 * vis + nz.score_sd * s)
        for _ in range(rng.poisson(nz.fp_rate)):
            bw = rng.uniform(0.04, 0.1) * wd.width
            bh = bw * rng.uniform(1.5, 3.0)
            x, y = rng.uniform(0, wd.width - bw), rng.uniform(0, wd.height - bh)
            boxes.append(np.array([x, y, x + bw, y + bh]))
            scores.append(0.38 + 0.1 * rng.normal())
        spots = np.random.default_rng([self.seed, 99])
        for _ in range(nz.fp_spots):
            bw = spots.uniform(0.05, 0.09) * wd.width
            bh = bw * spots.uniform(1.8, 2.6)
            x, y = spots.uniform(0, wd.width - bw), spots.uniform(0, wd.height - bh)
            if rng.random() < nz.p_spot:
                boxes.append(np.array([x, y, x + bw, y + bh]) + rng.normal(0, 0.5, 4))
                scores.append(0.45 + 0.1 * rng.normal())
        if not boxes:
            return np.zeros((0, 4), np.float32), np.zeros(0, np.float32)
        arr = np.clip(np.array(boxes, np.float32), 0, [wd.width, wd.height, wd.width, wd.height])
        return arr, np.clip(np.array(scores, np.float32), 0.01, 0.99)

    def detect(self, image: np.ndarray, prompt: Any, frame_index: int | None = None) -> Detections:
        t = self.clock.t if frame_index is None else int(frame_index)
        self.calls.append(t)
        boxes, scores = self.candidates(t)
        keep = (scores > self.config.box_threshold) & (boxes[:, 2] - boxes[:, 0] >= 1) & (boxes[:, 3] - boxes[:, 1] >= 1)
        n = int(keep.sum())
        return Detections(boxes[keep], scores[keep], np.zeros(n, np.int64), ["person"] * n)


# ------------------------------------------------------------------------------------------ propagator
@dataclass(frozen=True)
class Feats:
    frame_idx: int


@dataclass
class Out:
    """What the pipeline reads from propagate() / commit() / backfill(): logits at video resolution."""

    frame_idx: int
    obj_ids: list[int]
    logits: torch.Tensor  # N x H x W
    object_scores: torch.Tensor

    @property
    def low_res(self) -> torch.Tensor:  # the oracle's "low resolution" is the video's
        return self.logits[:, None]

    @property
    def height(self) -> int:
        return int(self.logits.shape[1])

    @property
    def width(self) -> int:
        return int(self.logits.shape[2])


@dataclass
class OracleBoxMasks:
    keep: np.ndarray
    low: torch.Tensor  # K x H x W bool
    pointers: torch.Tensor  # K x POINTER_DIM float32

    def __len__(self) -> int:
        return len(self.keep)

    def masks(self, threshold: float = 0.0) -> torch.Tensor:
        return self.low.clone()

    @property
    def logits(self) -> torch.Tensor:
        return torch.where(self.low, LOGIT, -LOGIT)


@dataclass
class _Obj:
    target: int | None  # person id, or None for a false-positive blob
    blob: np.ndarray | None = None
    blob_until: float = 0.0
    blob_identity: np.ndarray | None = None  # the blob's pointer direction
    lost: bool = False  # SAM 2 dropped it until re-prompted
    occluded: bool = False


class OracleSession:
    """SAM 2 stand-in (see the module docstring): the segmentation model and, for one run at a time, its
    session (``new_session`` starts a new video on this same object)."""

    device = torch.device("cpu")
    mask_threshold = 0.0
    amp_dtype = None

    def __init__(self, world: World, noise: Noise, seed: int, clock: Clock) -> None:
        self.world, self.noise, self.seed, self.clock = world, noise, seed, clock
        self.config = PropagatorConfig()
        self._objects: dict[int, _Obj] = {}
        self._pending: dict[int, np.ndarray] = {}
        self._current: dict[int, np.ndarray] = {}
        self._pointers: dict[int, torch.Tensor] = {}  # last visible frame's pointer per object
        self._identities: dict[int, np.ndarray] = {}
        self._t = -1

    @property
    def obj_ids(self) -> list[int]:
        return list(self._objects)

    def reset(self, height: int, width: int, num_frames: int | None = None) -> None:
        self._objects, self._pending, self._current, self._pointers, self._t = {}, {}, {}, {}, -1

    def new_session(self, height: int, width: int, num_frames: int | None = None) -> OracleSession:
        self.reset(height, width, num_frames)
        return self

    def encode(self, image: np.ndarray, frame_idx: int) -> Feats:
        self._t = self.clock.t = int(frame_idx)
        self._pending, self._current = {}, {}
        return Feats(int(frame_idx))

    def _identify(self, mask: np.ndarray, t: int) -> int | None:
        """The visible person a prompt mask covers (IoU >= 0.5), else None (a false positive)."""
        lab = self.world.labels[t][mask]
        if not lab.size:
            return None
        counts = np.bincount(lab, minlength=1)
        counts[0] = 0
        pid = int(counts.argmax())
        if pid == 0:
            return None
        inter = counts[pid]
        union = mask.sum() + np.count_nonzero(self.world.labels[t] == pid) - inter
        return pid if inter / union >= 0.5 else None

    def _rng(self, tid: int, t: int, salt: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, tid, t, salt])

    # ---- object pointers
    def identity(self, pid: int) -> np.ndarray:
        """Person ``pid``'s fixed unit identity vector (seeded)."""
        if pid not in self._identities:
            v = np.random.default_rng([self.seed, pid, 23]).normal(size=POINTER_DIM)
            self._identities[pid] = v / np.linalg.norm(v)
        return self._identities[pid]

    def blob_identity(self, mask: np.ndarray) -> np.ndarray:
        """A false-positive blob's own unit vector, keyed by its box (the box decode and the object it
        starts share it)."""
        box = [max(0, int(v)) for v in tight_box(mask)]
        v = np.random.default_rng([self.seed, *box, 29]).normal(size=POINTER_DIM)
        return v / np.linalg.norm(v)

    def _noisy(self, direction: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return direction + rng.normal(0.0, self.noise.pointer_sd, POINTER_DIM)

    def _object_direction(self, obj: _Obj) -> np.ndarray:
        """What the object shows now: its current person's identity (it follows a jump), or its blob's."""
        if obj.target is not None:
            return self.identity(obj.target)
        assert obj.blob_identity is not None
        return obj.blob_identity

    def object_pointers(self, obj_ids: list[int]) -> torch.Tensor:
        """N x POINTER_DIM: each object's pointer from its last frame with a non-empty mask (NaN if none)."""
        rows = []
        for oid in obj_ids:
            if int(oid) not in self._objects:
                raise ValueError(f"object {oid} is not tracked")
            rows.append(self._pointers.get(int(oid), torch.full((POINTER_DIM,), float("nan"))))
        return torch.stack(rows) if rows else torch.zeros(0, POINTER_DIM)

    def _new_obj(self, tid: int, mask: np.ndarray, t: int) -> _Obj:
        pid = self._identify(mask, t)
        if pid is not None:
            return _Obj(pid)
        rng = self._rng(tid, t, 3)
        hold = math.inf if rng.random() < self.noise.p_hold_forever else t + rng.geometric(
            1.0 / max(1.0, self.noise.fp_hold))
        return _Obj(None, mask.copy(), hold, self.blob_identity(mask))

    def _track(self, tid: int, t: int) -> np.ndarray:
        obj = self._objects[tid]
        wd = self.world
        if obj.target is None:
            return obj.blob if (obj.blob is not None and t < obj.blob_until) else np.zeros((wd.height, wd.width), bool)
        if not wd.is_visible(obj.target, t):
            obj.occluded = True
            return np.zeros((wd.height, wd.width), bool)
        rng = self._rng(tid, t, 5)
        if obj.occluded:  # reappearing after an occlusion
            obj.occluded = False
            if rng.random() < self.noise.p_lost_after_occlusion:
                obj.lost = True
        if obj.lost:
            return np.zeros((wd.height, wd.width), bool)
        if self.noise.p_jump and rng.random() < self.noise.p_jump:
            mine = wd.boxes[t][obj.target]
            near = [p for p in wd.visible_ids(t) if p != obj.target and box_iou(mine, wd.boxes[t][p]) > 0.1]
            if near:
                obj.target = near[int(rng.integers(len(near)))]
        return wd.region(obj.target, t)

    def _output(self) -> Out:
        ids = list(self._objects)
        h, w = self.world.height, self.world.width
        if not ids:
            return Out(self._t, [], torch.zeros(0, h, w), torch.zeros(0))
        masks = torch.from_numpy(np.stack([self._pending.get(i, self._current.get(i)) for i in ids]))
        scores = torch.tensor([1.0 if bool(m.any()) else -1.0 for m in masks])
        return Out(self._t, ids, torch.where(masks, LOGIT, -LOGIT), scores)

    def propagate(self, feats: Feats) -> Out:
        for tid in self._objects:
            if tid not in self._pending and tid not in self._current:
                self._current[tid] = self._track(tid, feats.frame_idx)
        return self._output()

    def segment_boxes(self, feats: Feats, boxes: np.ndarray) -> OracleBoxMasks:
        t, wd = feats.frame_idx, self.world
        out, pointers = [], []
        for k, b in enumerate(np.asarray(boxes, np.float64).reshape(-1, 4)):
            best, best_iou = None, 0.3
            for pid in wd.boxes[t]:
                iou = box_iou(b, wd.visible_box(pid, t))
                if iou > best_iou:
                    best, best_iou = pid, iou
            if best is not None:
                out.append(wd.region(best, t))
                direction = self.identity(best)
            else:
                m = np.zeros((wd.height, wd.width), bool)
                x0, y0, x1, y1 = (int(round(v)) for v in b)
                m[max(0, y0):y1, max(0, x0):x1] = True
                out.append(m)
                direction = self.blob_identity(m)
            pointers.append(self._noisy(direction, np.random.default_rng([self.seed, t, k, 37])))
        keep = np.arange(len(out), dtype=np.int64)
        low = torch.from_numpy(np.stack(out)) if out else torch.zeros(0, wd.height, wd.width, dtype=torch.bool)
        ptr = (torch.from_numpy(np.stack(pointers)).float() if pointers else torch.zeros(0, POINTER_DIM))
        return OracleBoxMasks(keep, low, ptr)

    def add_object(self, obj_id: int, feats: Feats, *, mask: Any = None, box: Any = None) -> None:
        m = _np_mask(mask)
        if int(obj_id) in self._objects:
            raise ValueError(f"object {obj_id} is already tracked")
        self._objects[int(obj_id)] = self._new_obj(int(obj_id), m, feats.frame_idx)
        self._pending[int(obj_id)] = m

    def refresh(self, obj_id: int, feats: Feats, mask: Any) -> None:
        m = _np_mask(mask)
        self._objects[int(obj_id)] = self._new_obj(int(obj_id), m, feats.frame_idx)
        self._pending[int(obj_id)] = m

    def remove(self, obj_id: int) -> None:
        del self._objects[int(obj_id)]
        self._pending.pop(int(obj_id), None)
        self._current.pop(int(obj_id), None)
        self._pointers.pop(int(obj_id), None)

    def commit(self, feats: Feats) -> Out:
        self.propagate(feats)
        out = self._output()
        for tid in self._pending:
            self._current[tid] = self._pending[tid]
        self._pending = {}
        for tid, obj in self._objects.items():  # visible objects' pointers replace the kept ones
            if self._current[tid].any():
                rng = self._rng(tid, feats.frame_idx, 31)
                self._pointers[tid] = torch.from_numpy(self._noisy(self._object_direction(obj), rng)).float()
        return out

    def backfill(self, obj_id: int, feats_at_birth: Feats, mask: Any, past: list[Feats]) -> list[Out]:
        birth = feats_at_birth.frame_idx
        obj = self._new_obj(int(obj_id), _np_mask(mask), birth)  # a blob is held backwards as long as forwards
        out = []
        for f in past:
            if obj.target is not None and self.world.is_visible(obj.target, f.frame_idx):
                m = torch.from_numpy(self.world.region(obj.target, f.frame_idx))
            elif obj.target is None and obj.blob is not None and birth - f.frame_idx < obj.blob_until - birth:
                m = torch.from_numpy(obj.blob)
            else:
                m = torch.zeros(self.world.height, self.world.width, dtype=torch.bool)
            out.append(Out(f.frame_idx, [int(obj_id)], torch.where(m, LOGIT, -LOGIT)[None],
                           torch.tensor([1.0 if bool(m.any()) else -1.0])))
        return out


def _np_mask(mask: Any) -> np.ndarray:
    if isinstance(mask, torch.Tensor):
        return mask.detach().cpu().numpy().astype(bool)
    return np.asarray(mask, bool)


# ------------------------------------------------------------------------------------------------ source
class OracleSource:
    """A FrameSource over the world's frames (grey images: the oracle models never look at pixels)."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.info = VideoInfo(world.name, f"oracle://{world.name}", world.width, world.height, world.fps,
                              world.frames, False)
        self._image = np.full((world.height, world.width, 3), 128, np.uint8)

    def __iter__(self) -> Iterator[Frame]:
        for t in range(self.world.frames):
            yield Frame(t, t / self.world.fps, self._image)

    def __enter__(self) -> OracleSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        pass
