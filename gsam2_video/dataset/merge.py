"""``gsam2-video dataset --merge DIR``: the last step after shard runs, building the set-wide files.

Why a separate step: N shard processes share one folder and each publishes only its own videos; if each
also rebuilt ``meta.json`` / ``instances.json`` they would race on those files and each would describe
whatever happened to be finished at that moment. Instead the merge runs once, after every shard ended, and
builds them from the per-video records exactly as a single run does, so the folder ends up byte-identical
to one run over all inputs (apart from ``run.json`` reports).

It also folds the shards' logs into the folder's own files: ``failures.jsonl`` lists the videos that failed
in their latest attempt (from ``shards/*/failures.jsonl`` and the previous ``failures.jsonl``) and are still
not done, sorted by video name; the shards' reports go into the merge's ``run.json``; then ``shards/`` and
the debris of killed shards (``.partial``, temporary files) are removed. It takes the folder's exclusive
lock, so it refuses to run while any shard still runs. Merging again later (after re-running a shard) is
fine.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..sinks.atomic import remove_quietly
from ..sinks.runinfo import write_run_json
from .layout import RUN_FILE, DatasetLayout
from .work import now


@dataclass
class MergeSummary:
    videos: int = 0
    objects: int = 0
    frames: int = 0
    shard_runs: int = 0
    failures: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0

    def line(self) -> str:
        return (f"merged {self.videos} videos ({self.frames} frames, {self.objects} objects) from "
                f"{self.shard_runs} shard runs; {len(self.failures)} failed; {self.seconds:.1f} s")


def _read_failures(path: Path) -> list[dict[str, Any]]:
    """Entries of a failures file; unreadable lines are skipped (a log, not a record)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return []
    out = []
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and isinstance(entry.get("video"), str):
            out.append(entry)
    return out


def _read_report(path: Path) -> dict[str, Any] | None:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def merge_dataset(layout: DatasetLayout, exports: tuple[str, ...] = ()) -> MergeSummary:
    """Build meta.json, instances.json, failures.jsonl and the ``exports`` (``--save``) of ``layout`` from its
    finished videos and shard logs (see the module docstring)."""
    t0, started = time.perf_counter(), now()
    summary = MergeSummary()
    with layout.locked():
        layout.prepare()
        layout.tidy()
        done = set(layout.finished_names())
        latest: dict[str, dict[str, Any]] = {e["video"]: e for e in _read_failures(layout.failures_path)}
        reports = []
        shard_dirs = sorted(p for p in layout.shards.iterdir() if p.is_dir()) if layout.shards.is_dir() else []
        runs = []
        for folder in shard_dirs:
            report = _read_report(folder / RUN_FILE)
            runs.append((str((report or {}).get("finished", "")), folder, report))
        for _, folder, report in sorted(runs, key=lambda r: (r[0], r[1].name)):  # later runs override
            for entry in _read_failures(folder / "failures.jsonl"):
                latest[entry["video"]] = entry
            if report is not None:
                reports.append(report)
        summary.shard_runs = len(reports)
        summary.failures = [latest[v] for v in sorted(latest) if v not in done]
        layout.write_failures(summary.failures)
        layout.write_set_files(exports)
        for record in layout.finished_records():
            summary.videos += 1
            summary.frames += record.length
            summary.objects += len(record.objects)
        summary.seconds = time.perf_counter() - t0
        write_run_json(layout.run_path, {
            "kind": "dataset-merge", "out": str(layout.root), "started": started, "finished": now(),
            "summary": {"videos": summary.videos, "frames": summary.frames, "objects": summary.objects,
                        "failed": len(summary.failures), "seconds": round(summary.seconds, 3)},
            "shards": reports})
        remove_quietly(layout.shards)
    return summary
