"""Score palette-PNG mask folders (DAVIS / YouTube-VOS layout) against ground truth: J, F and J&F per object.

Inputs: a folder of ``<frame>.png`` files is one sequence; a folder of such folders (DAVIS
``Annotations/480p/<seq>/``, YouTube-VOS ``Annotations/<video>/``, a ``gsam2-video dataset`` folder's
``Annotations/``) is one sequence per sub-folder, paired with the prediction's sub-folder of the same name
(one sequence on each side is paired whatever the names). Pixel value = object id, 0 = background; 8-bit
palette, grayscale or 16-bit PNGs are read as integer ids. The frames scored are the ground truth's files
(YouTube-VOS annotates every 5th frame); the prediction must have a file of the same name for each.

Objects: every non-zero id in the ground truth's frames (except ``void_id``, whose pixels are left out of
both J and F, DAVIS's void label). Matching predicted ids to ground-truth ids (per sequence):

* ``id``: ground-truth object k is scored against predicted id k (a semi-supervised run, or our own run
  scored against itself);
* ``hungarian``: predicted objects (padded with empty ones up to the ground truth's count) are assigned to
  ground-truth objects to maximise the summed mean J over the frames (``scipy`` Hungarian), then F is taken
  for the assigned pairs: TrackEval's ``JAndF`` with ``optim_type='J'``, the usual choice for a tracker whose
  ids are its own (DAVIS 2017 unsupervised assigns on mean J&F instead);
* ``auto`` (default): ``id`` when both sides have exactly the same ids, else ``hungarian``.

Every ground-truth object gets a score on every scored frame (J = F = 1 where it and its match are both
absent; 0 where only one is present), as in DAVIS. Files are read twice (IoU counts for the matching, then
boundaries of the matched pairs), never all held in memory.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import ConfigError
from .davis import BOUND_TH, crop_box, f_measure, statistics

MATCH_MODES = ("auto", "id", "hungarian")


@dataclass
class ObjectScore:
    """One ground-truth object: its id, the predicted id matched to it (None: nothing), and per-frame J, F."""

    sequence: str
    gt_id: int
    pred_id: int | None
    j: np.ndarray
    f: np.ndarray

    def summary(self) -> dict[str, float | int | str | None]:
        jm, jr, jd = statistics(self.j)
        fm, fr, fd = statistics(self.f)
        return {"sequence": self.sequence, "gt_id": self.gt_id, "pred_id": self.pred_id, "frames": len(self.j),
                "J": jm, "J_recall": jr, "J_decay": jd, "F": fm, "F_recall": fr, "F_decay": fd,
                "J&F": (jm + fm) / 2}


@dataclass
class MaskReport:
    """Per-object scores and the DAVIS means over all objects of all sequences (each object counts once)."""

    objects: list[ObjectScore] = field(default_factory=list)
    matching: dict[str, str] = field(default_factory=dict)  # sequence -> "id" | "hungarian"
    unmatched_predictions: dict[str, list[int]] = field(default_factory=dict)

    def means(self) -> dict[str, float]:
        rows = [o.summary() for o in self.objects]
        out = {}
        for key in ("J", "J_recall", "J_decay", "F", "F_recall", "F_decay"):
            out[key] = float(np.mean([r[key] for r in rows])) if rows else float("nan")
        out["J&F"] = (out["J"] + out["F"]) / 2
        return out


def _pngs(folder: Path) -> dict[str, Path]:
    return {p.stem: p for p in folder.iterdir() if p.suffix.lower() == ".png" and not p.name.startswith(".")}


def find_sequences(root: Path, what: str) -> dict[str, Path]:
    """Sequence name -> folder of PNGs (see the module docstring); ConfigError when there is none."""
    if not root.is_dir():
        raise ConfigError(f"{what} {root}: not a folder of PNG masks")
    if _pngs(root):
        return {root.name: root}
    seqs = {p.name: p for p in sorted(root.iterdir()) if p.is_dir() and not p.name.startswith(".") and _pngs(p)}
    if not seqs:
        raise ConfigError(f"{what} {root}: no PNG masks in it or in its sub-folders")
    return seqs


def read_ids(path: Path) -> np.ndarray:
    """A label PNG as an H x W int64 array of ids; ConfigError for unreadable or colour (RGB) files."""
    try:
        with Image.open(path) as img:
            if img.mode not in ("P", "L", "I;16", "I;16B", "I;16L", "I", "1"):
                raise ConfigError(f"{path}: a {img.mode} image, not an indexed, grayscale or 16-bit label PNG")
            return np.asarray(img, dtype=np.int64)
    except OSError as err:
        raise ConfigError(f"{path}: cannot read ({err})") from None


def pair_sequences(pred_root: Path, gt_root: Path) -> list[tuple[str, Path, Path]]:
    pred, gt = find_sequences(pred_root, "PRED"), find_sequences(gt_root, "GT")
    if len(pred) == 1 and len(gt) == 1:
        (_, p), (name, g) = next(iter(pred.items())), next(iter(gt.items()))
        return [(name, p, g)]
    missing = sorted(set(gt) - set(pred))
    if missing:
        raise ConfigError(f"PRED {pred_root} lacks {len(missing)} of the {len(gt)} ground-truth sequences "
                          f"(first: {missing[0]})")
    return [(name, pred[name], gt[name]) for name in sorted(gt)]


def _frames(name: str, pred_dir: Path, gt_dir: Path) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    pred_files, gt_files = _pngs(pred_dir), _pngs(gt_dir)
    missing = sorted(set(gt_files) - set(pred_files))
    if missing:
        raise ConfigError(f"PRED sequence {name} lacks {len(missing)} of the {len(gt_files)} ground-truth frames "
                          f"(first: {missing[0]}.png in {pred_dir})")
    for stem in sorted(gt_files):
        gt, pred = read_ids(gt_files[stem]), read_ids(pred_files[stem])
        if gt.shape != pred.shape:
            raise ConfigError(f"sequence {name}, frame {stem}: PRED is {pred.shape[1]}x{pred.shape[0]}, GT is "
                              f"{gt.shape[1]}x{gt.shape[0]}")
        yield stem, pred, gt


#: joint (pred id, gt id) histograms up to this many bins are counted with bincount (no sort)
_BINCOUNT_LIMIT = 1 << 22


def _overlaps(pred: np.ndarray, gt: np.ndarray, keep: np.ndarray | None
              ) -> tuple[dict[int, int], dict[int, int], dict[tuple[int, int], int]]:
    """Areas of every predicted and ground-truth id and the pairwise intersections, over ``keep`` pixels
    (all when None), from one joint histogram of (pred id, gt id) per pixel."""
    p, g = (pred, gt) if keep is None else (pred[keep], gt[keep])
    p, g = p.reshape(-1), g.reshape(-1)
    n_g = int(g.max(initial=0)) + 1
    n_p = int(p.max(initial=0)) + 1
    joint = p * n_g + g
    if n_p * n_g <= _BINCOUNT_LIMIT:
        counts = np.bincount(joint, minlength=n_p * n_g)
        codes = np.flatnonzero(counts)
        counts = counts[codes]
    else:
        codes, counts = np.unique(joint, return_counts=True)
    area_p: dict[int, int] = {}
    area_g: dict[int, int] = {}
    inter: dict[tuple[int, int], int] = {}
    for code, n in zip(codes.tolist(), counts.tolist()):
        a, b = divmod(code, n_g)
        if a:
            area_p[a] = area_p.get(a, 0) + n
        if b:
            area_g[b] = area_g.get(b, 0) + n
        if a and b:
            inter[(a, b)] = n
    return area_p, area_g, inter


def _keep(gt: np.ndarray, void_id: int | None) -> np.ndarray | None:
    return None if void_id is None else gt != void_id


def _boundary_scores(pred: np.ndarray, gt: np.ndarray, pred_ids: list[int | None], gt_ids: list[int],
                     void_id: int | None, bound_th: float) -> np.ndarray:
    """F of each (pred id, gt id) pair on one frame, computed on the crop holding both masks (exact, see
    ``f_measure``), so a small object costs little on a large frame."""
    from scipy.ndimage import find_objects

    boxes_p = find_objects(np.where(pred > 0, pred, 0))
    boxes_g = find_objects(np.where((gt > 0) & (gt != (void_id if void_id is not None else -1)), gt, 0))

    def box(boxes: list, i: int | None) -> tuple[slice, slice] | None:
        return boxes[i - 1] if i is not None and 0 < i <= len(boxes) else None

    out = np.zeros(len(gt_ids))
    for k, (pid, gid) in enumerate(zip(pred_ids, gt_ids)):
        crop = crop_box([box(boxes_p, pid), box(boxes_g, gid)], gt.shape)
        if crop is None:
            out[k] = 1.0  # both absent
            continue
        g = gt[crop]
        p = pred[crop] == pid if pid is not None else np.zeros(g.shape, bool)
        void = None if void_id is None else g == void_id
        out[k] = f_measure(g == gid, p, void, bound_th, image_shape=gt.shape)
    return out


def score_sequence(name: str, pred_dir: Path, gt_dir: Path, *, match: str = "auto", void_id: int | None = None,
                   bound_th: float = BOUND_TH) -> tuple[list[ObjectScore], str, list[int]]:
    """Scores of one sequence's ground-truth objects, the matching used and the unmatched predicted ids."""
    frames: list[tuple[dict[int, int], dict[int, int], dict[tuple[int, int], int]]] = []
    for _, pred, gt in _frames(name, pred_dir, gt_dir):
        frames.append(_overlaps(pred, gt, _keep(gt, void_id)))
    gt_ids = sorted({i for _, ag, _ in frames for i in ag})
    pred_ids = sorted({i for ap, _, _ in frames for i in ap})
    mode = match if match != "auto" else ("id" if pred_ids == gt_ids else "hungarian")
    candidates: list[int | None] = list(gt_ids) if mode == "id" else [*pred_ids]
    candidates += [None] * max(0, len(gt_ids) - len(candidates))  # empty stand-ins (DAVIS / TrackEval padding)
    t_count = len(frames)
    j = np.zeros((len(candidates), len(gt_ids), t_count))
    for t, (ap, ag, inter) in enumerate(frames):
        for a, pid in enumerate(candidates):
            area_p = ap.get(pid, 0) if pid is not None else 0
            for b, gid in enumerate(gt_ids):
                n = inter.get((pid, gid), 0) if pid is not None else 0
                union = area_p + ag.get(gid, 0) - n
                j[a, b, t] = 1.0 if union == 0 else n / union
    if mode == "id":
        rows = cols = np.arange(len(gt_ids))
    else:
        from scipy.optimize import linear_sum_assignment  # here: scipy.optimize is slow to import (CLI start)

        rows, cols = linear_sum_assignment(-j.mean(axis=2)) if gt_ids else (np.zeros(0, int), np.zeros(0, int))
    assigned = {int(c): int(r) for r, c in zip(rows, cols)}
    f = np.zeros((len(gt_ids), t_count))
    if gt_ids:
        for t, (_, pred, gt) in enumerate(_frames(name, pred_dir, gt_dir)):
            f[:, t] = _boundary_scores(pred, gt, [candidates[assigned[b]] for b in range(len(gt_ids))], gt_ids,
                                       void_id, bound_th)
    scores = []
    for b, gid in enumerate(gt_ids):
        a = assigned[b]
        pid = candidates[a]
        if pid is not None and pid not in pred_ids:
            pid = None  # matched by id, but the prediction never has that id
        scores.append(ObjectScore(name, gid, pid, j[a, b].copy(), f[b]))
    used = {s.pred_id for s in scores}
    return scores, mode, [p for p in pred_ids if p not in used]


def evaluate_masks(pred: str | Path, gt: str | Path, *, match: str = "auto", void_id: int | None = None,
                   bound_th: float = BOUND_TH) -> MaskReport:
    """Score every ground-truth sequence under ``gt`` against ``pred`` (see the module docstring)."""
    if match not in MATCH_MODES:
        raise ConfigError(f"--match must be one of {', '.join(MATCH_MODES)}, got {match!r}")
    report = MaskReport()
    for name, pred_dir, gt_dir in pair_sequences(Path(pred), Path(gt)):
        scores, mode, unmatched = score_sequence(name, pred_dir, gt_dir, match=match, void_id=void_id,
                                                 bound_th=bound_th)
        report.objects += scores
        report.matching[name] = mode
        if unmatched:
            report.unmatched_predictions[name] = unmatched
    if not report.objects:
        raise ConfigError(f"GT {gt}: no objects (every ground-truth mask is background)")
    return report
