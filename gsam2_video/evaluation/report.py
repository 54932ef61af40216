"""The scorer's two outputs: a plain-text table for the terminal and a JSON document for scripts."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..sinks.atomic import write_text_atomic
from .masks import MaskReport


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4f}"
    return str(value)


def table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Columns padded to their widest cell, first column left-aligned, the others right-aligned."""
    cells = [[str(h) for h in header]] + [[_cell(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = []
    for k, row in enumerate(cells):
        lines.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))))
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def mask_table(report: MaskReport) -> str:
    rows = []
    for o in report.objects:
        s = o.summary()
        rows.append([s["sequence"], s["gt_id"], s["pred_id"], s["frames"], s["J"], s["F"], s["J&F"]])
    m = report.means()
    rows.append(["mean", "", "", "", m["J"], m["F"], m["J&F"]])
    return table(["sequence", "gt id", "pred id", "frames", "J", "F", "J&F"], rows)


def mask_json(report: MaskReport, pred: Path, gt: Path) -> dict[str, Any]:
    return {"kind": "masks", "pred": str(pred), "gt": str(gt), "means": report.means(),
            "matching": report.matching, "unmatched_predictions": report.unmatched_predictions,
            "objects": [o.summary() for o in report.objects]}


def track_table(scores: dict[str, Any]) -> str:
    keys = ("HOTA", "DetA", "AssA", "IDF1", "MOTA", "IDSW", "GT_tracks", "PRED_tracks", "GT_dets", "PRED_dets")
    return table(["metric", "value"], [[k, scores[k]] for k in keys])


def write_json(path: Path, doc: dict[str, Any]) -> Path:
    return write_text_atomic(path, json.dumps(doc, indent=2, allow_nan=True) + "\n")
