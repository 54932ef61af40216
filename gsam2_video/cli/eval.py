"""``gsam2-video eval PRED GT``: score a run against ground truth; a table on the terminal and a JSON file.

Two folders of label PNGs are scored as masks (J, F, J&F per object, see :mod:`gsam2_video.evaluation.masks`);
two MOTS or MOTChallenge text files as tracks (HOTA, IDF1, MOTA, ID switches through TrackEval, see
:mod:`gsam2_video.evaluation.tracks`). Inputs that do not fit (a folder against a file, missing frames,
different sizes) stop with one line before anything is written.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ..errors import ConfigError

DESCRIPTION = """\
Score a run against ground truth.
  masks:  PRED and GT are folders of label PNGs (pixel = object id), one folder per sequence or a folder of
          sequence folders (DAVIS / YouTube-VOS layout, e.g. a run's masks/ or a dataset's Annotations/).
          J (region IoU), F (boundary F, tolerance 0.008 of the image diagonal) and J&F per object, as the
          DAVIS 2017 evaluation defines them. Objects are matched by id when both sides have the same ids,
          else by the Hungarian method on mean IoU (--match).
  tracks: PRED and GT are MOTS (mots.txt) or MOTChallenge (mot.txt, gt.txt) files: HOTA, IDF1, MOTA and
          ID switches computed by TrackEval (pip install --no-deps trackeval), class-agnostic.
"""


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0.0 < value:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
    return value


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``eval`` on the main CLI's subparsers."""
    from ..evaluation.masks import MATCH_MODES

    p = subparsers.add_parser("eval", help="score a run's masks or tracks against ground truth (J&F, HOTA)",
                              description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("pred", type=Path, metavar="PRED", help="predicted masks folder or track file")
    p.add_argument("gt", type=Path, metavar="GT", help="ground-truth masks folder or track file")
    p.add_argument("--json", type=Path, default=None, metavar="FILE",
                   help="where to write the scores (default: eval.json beside PRED)")
    p.add_argument("--match", default="auto", choices=MATCH_MODES,
                   help="masks: pair objects by id, by the Hungarian method on mean IoU, or auto (default: by "
                        "id when both sides have the same ids)")
    p.add_argument("--void-id", type=int, default=None, metavar="N",
                   help="masks: ground-truth value N marks void pixels, left out of J and F (DAVIS uses 255)")
    p.add_argument("--bound-th", type=_positive_float, default=0.008, metavar="F",
                   help="masks: boundary tolerance, a fraction of the image diagonal (<1) or pixels (>=1); "
                        "default 0.008 as DAVIS")
    return p


def run(args: argparse.Namespace) -> int:
    """Score, print the table, write the JSON; returns 0 (errors raise ConfigError, printed as one line)."""
    from ..evaluation import report as rep

    pred, gt = args.pred, args.gt
    for what, path in (("PRED", pred), ("GT", gt)):
        if not path.exists():
            raise ConfigError(f"{what} {path}: no such file or folder")
    if pred.is_dir() != gt.is_dir():
        kinds = ("a folder" if pred.is_dir() else "a file", "a folder" if gt.is_dir() else "a file")
        raise ConfigError(f"PRED is {kinds[0]} but GT is {kinds[1]}: give two mask folders or two track files")
    out = args.json if args.json is not None else pred.parent / "eval.json"
    if pred.is_dir():
        from ..evaluation.masks import evaluate_masks

        report = evaluate_masks(pred, gt, match=args.match, void_id=args.void_id, bound_th=args.bound_th)
        text, doc = rep.mask_table(report), rep.mask_json(report, pred, gt)
        for name, ids in report.unmatched_predictions.items():
            text += f"\n{name}: predicted ids matched to no ground-truth object: {', '.join(map(str, ids))}"
    else:
        from ..evaluation.tracks import evaluate_tracks

        scores = evaluate_tracks(pred, gt)
        text, doc = rep.track_table(scores), {"kind": "tracks", "pred": str(pred), "gt": str(gt), **scores}
    print(text)
    rep.write_json(out, doc)
    print(f"gsam2-video eval: scores written to {out}", file=sys.stderr)
    return 0
