"""Score MOTS or MOTChallenge track files against ground truth with TrackEval: HOTA, IDF1, MOTA, ID switches.

Why TrackEval's code and not ours: HOTA, CLEAR (MOTA) and Identity (IDF1) are defined by their reference
implementation; we call TrackEval's metric classes (``trackeval.metrics.HOTA``, ``CLEAR``, ``Identity``) and
its similarity functions (mask IoU through pycocotools, box IoU) on the two files. TrackEval is the PyPI
package ``trackeval``; its wheel asks for the GUI build of OpenCV beside the project's headless one, so it is
installed without its dependencies (``pip install --no-deps trackeval``; it needs only numpy, scipy and
pycocotools, which the project has).

Formats (detected from the first line; both files must have the same):

* MOTS (``mots.txt``; TrackEval ``docs/MOTS-format.txt``): ``frame id class height width rle`` per line,
  space separated, COCO compressed RLE;
* MOTChallenge (``mot.txt``, ``gt.txt``): ``frame,id,x,y,w,h,conf,...`` comma separated. In ground truth a 7th
  column of 0 marks a box that is not considered (MOTChallenge's flag; TrackEval drops these rows).

What TrackEval's benchmark readers add and this scorer does not: class filtering (it is class-agnostic: every
object of every class is one track), the removal of predictions on MOTChallenge distractor boxes, and MOTS
ignore regions (ground-truth lines with class 10 are dropped, predictions are not cut by them). On files
without those (one class, no distractors, no ignore regions) the numbers equal TrackEval's own run on the same
files (tested).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError

MOTS_IGNORE_CLASS = 10


@dataclass
class TrackFile:
    """One file's detections per frame: ids and either RLE dicts (MOTS) or xywh boxes (MOT)."""

    kind: str  # "mots" | "mot"
    frames: dict[int, list[tuple[int, Any]]] = field(default_factory=dict)

    @property
    def ids(self) -> list[int]:
        return sorted({i for dets in self.frames.values() for i, _ in dets})


def _import_trackeval() -> Any:
    try:
        import trackeval
    except ImportError:
        raise ConfigError("scoring tracks needs TrackEval: pip install --no-deps trackeval") from None
    return trackeval


def detect_kind(path: Path) -> str:
    try:
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                if line.strip():
                    return "mot" if "," in line else "mots"
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: cannot read ({err})") from None
    raise ConfigError(f"{path}: empty file (no tracks to score)")


def read_track_file(path: Path, kind: str, *, ground_truth: bool) -> TrackFile:
    """Parse a MOTS or MOT file (see the module docstring); ConfigError naming the line on bad input."""
    out = TrackFile(kind)
    size: tuple[int, int] | None = None
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: cannot read ({err})") from None
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            if kind == "mots":
                t, i, cls, h, w, rle = line.split()
                if int(cls) == MOTS_IGNORE_CLASS and ground_truth:
                    continue
                if size is None:
                    size = (int(h), int(w))
                elif size != (int(h), int(w)):
                    raise ValueError(f"image size {w}x{h} differs from the first line's {size[1]}x{size[0]}")
                det: Any = {"size": [int(h), int(w)], "counts": rle.encode("ascii")}
            else:
                cols = line.split(",")
                t, i = cols[0], cols[1]
                box = [float(v) for v in cols[2:6]]
                if len(box) != 4:
                    raise ValueError("fewer than 6 columns")
                if ground_truth and len(cols) > 6 and float(cols[6]) == 0:
                    continue
                det = box
            frame, track = int(float(t)), int(float(i))
        except ValueError as err:
            raise ConfigError(f"{path}, line {n}: not a {kind.upper()} line ({err})") from None
        dets = out.frames.setdefault(frame, [])
        if any(track == j for j, _ in dets):
            raise ConfigError(f"{path}, line {n}: id {track} appears twice in frame {frame}")
        dets.append((track, det))
    return out


def sequence_data(gt: TrackFile, pred: TrackFile) -> dict[str, Any]:
    """The per-sequence dict TrackEval's metrics take: ids per timestep relabelled 0..n-1 and similarities
    computed by TrackEval's own IoU functions (mask IoU for MOTS, box IoU for MOT)."""
    from trackeval.datasets._base_dataset import _BaseDataset

    times = sorted(set(gt.frames) | set(pred.frames))
    gt_map = {i: k for k, i in enumerate(gt.ids)}
    pr_map = {i: k for k, i in enumerate(pred.ids)}
    data: dict[str, Any] = {"num_timesteps": len(times), "gt_ids": [], "tracker_ids": [], "similarity_scores": [],
                            "num_gt_ids": len(gt_map), "num_tracker_ids": len(pr_map), "num_gt_dets": 0,
                            "num_tracker_dets": 0}
    for t in times:
        g, p = gt.frames.get(t, []), pred.frames.get(t, [])
        data["gt_ids"].append(np.array([gt_map[i] for i, _ in g], dtype=int))
        data["tracker_ids"].append(np.array([pr_map[i] for i, _ in p], dtype=int))
        data["num_gt_dets"] += len(g)
        data["num_tracker_dets"] += len(p)
        if gt.kind == "mots":
            sim = _BaseDataset._calculate_mask_ious([d for _, d in g], [d for _, d in p], is_encoded=True)
        else:
            sim = _BaseDataset._calculate_box_ious(np.array([d for _, d in g], float).reshape(-1, 4),
                                                   np.array([d for _, d in p], float).reshape(-1, 4))
        data["similarity_scores"].append(np.asarray(sim, float).reshape(len(g), len(p)))
    return data


def evaluate_tracks(pred: str | Path, gt: str | Path) -> dict[str, float]:
    """HOTA (mean over TrackEval's IoU thresholds), DetA, AssA, IDF1, MOTA, ID switches and counts."""
    trackeval = _import_trackeval()
    pred, gt = Path(pred), Path(gt)
    for what, path in (("PRED", pred), ("GT", gt)):
        if not path.is_file():
            raise ConfigError(f"{what} {path}: no such file")
    kind_p, kind_g = detect_kind(pred), detect_kind(gt)
    if kind_p != kind_g:
        raise ConfigError(f"PRED {pred} is {kind_p.upper()} but GT {gt} is {kind_g.upper()}; score like with like")
    g, p = read_track_file(gt, kind_g, ground_truth=True), read_track_file(pred, kind_p, ground_truth=False)
    if not g.frames:
        raise ConfigError(f"GT {gt}: no ground-truth tracks")
    if kind_g == "mots":
        sizes = {tuple(d["size"]) for f in (g, p) for dets in f.frames.values() for _, d in dets}
        if len(sizes) > 1:
            raise ConfigError(f"PRED and GT masks have different image sizes: {sorted(sizes)}")
    data = sequence_data(g, p)
    quiet = {"PRINT_CONFIG": False}
    hota = trackeval.metrics.HOTA(quiet).eval_sequence(data)
    clear = trackeval.metrics.CLEAR(quiet).eval_sequence(data)
    ident = trackeval.metrics.Identity(quiet).eval_sequence(data)
    return {"HOTA": float(np.mean(hota["HOTA"])), "DetA": float(np.mean(hota["DetA"])),
            "AssA": float(np.mean(hota["AssA"])), "IDF1": float(ident["IDF1"]), "MOTA": float(clear["MOTA"]),
            "IDSW": int(clear["IDSW"]), "GT_tracks": data["num_gt_ids"], "PRED_tracks": data["num_tracker_ids"],
            "GT_dets": data["num_gt_dets"], "PRED_dets": data["num_tracker_dets"], "format": kind_g}
