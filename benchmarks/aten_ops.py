"""aten ops and memory-attention calls per frame with 10 objects each born on a different keyframe.

Why: on a GPU the per-frame cost of a small model is set by how many kernels the host launches, not by
FLOPs. Before issue 12 item 5 the session grouped objects by the temporal positions of their memories;
objects born on different frames never share a group (their conditioning pointers sit at different
offsets), so 10 such objects made 10 memory-attention calls per frame. Now all tracked objects share one
call, padded memories masked (``gsam2_video/models/sam2_memory.py``).

What runs: a random SAM 2 (``tiny`` test config at 128 px; ``reduced`` = hiera-tiny at 256 px), real
frames (vtest.avi), object k born by a box prompt on frame 2k (k = 0..9), then tracking only. Counted with
a ``TorchDispatchMode`` over ``encode + propagate + commit`` of each frame (every aten op that reaches the
dispatcher, views included), in two windows: ``transition`` (frames 20-27: all objects live, their memory
and pointer counts still differ, so the batched call pads) and ``steady`` (frames 36-43: every object has
a full memory window). Two counts: ``all`` (every op, views included) and ``compute`` (ops that are not
views or metadata-only, i.e. the ones that launch a kernel on a GPU), per frame and per step (encode =
image encoder; propagate = memory attention + SAM heads for the tracked objects; commit = memory
encoder + bookkeeping). Memory-attention calls are counted on the first layer norm of the first
memory-attention layer (it runs once per call on either path).

Variants, each in a fresh interpreter:
* ``before``: the package as of ``--baseline-rev`` (default 9e44c51, the grouped path), extracted with
  ``git archive`` into a temporary folder and imported from there;
* ``batched``: this tree (``batch_objects=True``, the default);
* ``per_object``: this tree with ``batch_objects=False`` (transformers' memory attention once per object).

Run: python benchmarks/aten_ops.py [--sizes tiny reduced] [--out benchmarks/results/aten_ops.json]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C

#: ops that only change tensor metadata (no kernel on a GPU) besides the view ops torch marks as views
METADATA_OPS = {"aten.t", "aten.detach", "aten.lift_fresh", "aten._unsafe_view", "aten.reshape", "aten.unbind",
                "aten.split", "aten.split_with_sizes", "aten.chunk", "aten.lift_fresh_copy"}
BIRTH_EVERY = 2
OBJECTS = 10
WINDOWS = {"transition": range(20, 28), "steady": range(36, 44)}


def _box(k: int, w: int, h: int) -> tuple[float, float, float, float]:
    """Object k's box: a grid of person-sized boxes over the frame."""
    col, row = k % 5, k // 5
    x0, y0 = (0.04 + 0.19 * col) * w, (0.08 + 0.45 * row) * h
    return (x0, y0, x0 + 0.15 * w, y0 + 0.4 * h)


def child(args: argparse.Namespace) -> dict[str, Any]:
    if args.src:
        sys.path.insert(0, args.src)  # the baseline tree shadows this one
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode

    import gsam2_video
    from gsam2_video.config import PropagatorConfig
    from gsam2_video.models.propagator import Sam2Propagator

    torch.set_num_threads(1)

    class CountOps(TorchDispatchMode):
        def __init__(self) -> None:
            super().__init__()
            self.ops: Counter[str] = Counter()
            self.phase: Counter[str] = Counter()  # (phase, "all" | "compute")
            self.current = ""

        def __torch_dispatch__(self, func, types, a=(), kw=None):
            name = str(func.overloadpacket)
            self.ops[name] += 1
            self.phase[self.current, "all"] += 1
            self.phase[self.current, "compute"] += not (func.is_view or name in METADATA_OPS)
            return func(*a, **(kw or {}))

    sam = Path(args.model)  # built by the parent: the model builders import this tree's package
    prop = Sam2Propagator.from_pretrained(str(sam), PropagatorConfig(model=str(sam), batch_objects=not args.per_object),
                                          device="cpu", dtype="fp32")
    calls = [0]
    prop.model.memory_attention.layers[0].layer_norm1.register_forward_hook(
        lambda *_: calls.__setitem__(0, calls[0] + 1))
    last = max(max(r) for r in WINDOWS.values())
    frames = C.read_frames(C.VIDEOS / "vtest.avi", last + 1)
    h, w = frames[0].shape[:2]
    prop.reset(h, w)
    per_frame: dict[int, dict[str, Any]] = {}
    top: Counter[str] = Counter()
    for t, frame in enumerate(frames):
        measured = any(t in r for r in WINDOWS.values())
        mode = CountOps()
        before_calls = calls[0]
        t0 = time.perf_counter()
        if measured:
            with mode:
                mode.current = "encode"
                feats = prop.encode(frame, t)
                mode.current = "propagate"
                prop.propagate(feats)
                mode.current = "commit"
                prop.commit(feats)
        else:
            feats = prop.encode(frame, t)
            prop.propagate(feats)
            if t % BIRTH_EVERY == 0 and t // BIRTH_EVERY < OBJECTS:
                prop.add_object(t // BIRTH_EVERY + 1, feats, box=_box(t // BIRTH_EVERY, w, h))
            prop.commit(feats)
        if measured:
            per_frame[t] = {"memory_attention_calls": calls[0] - before_calls,
                            "wall_ms": round(1000 * (time.perf_counter() - t0), 1)}
            for kind in ("all", "compute"):
                per_frame[t][f"frame_{kind}"] = sum(v for (_, k), v in mode.phase.items() if k == kind)
                for ph in ("encode", "propagate", "commit"):
                    per_frame[t][f"{ph}_{kind}"] = mode.phase[ph, kind]
            top.update(mode.ops)
    assert len(prop.obj_ids) == OBJECTS
    src = Path(gsam2_video.__file__).parent
    out: dict[str, Any] = {"size": args.size,
                           "source": "this tree" if src.parent == C.REPO else "git archive of the baseline",
                           "batch_objects": not args.per_object, "objects": OBJECTS, "windows": {}}
    for name, frames_ in WINDOWS.items():
        rows = [per_frame[t] for t in frames_]
        win: dict[str, Any] = {"frames": [frames_.start, frames_.stop - 1]}
        for kind in ("all", "compute"):
            win[f"aten_ops_{kind}"] = {part: C.median([r[f"{part}_{kind}"] for r in rows])
                                       for part in ("frame", "encode", "propagate", "commit")}
            win[f"aten_ops_{kind}"]["frame_max"] = max(r[f"frame_{kind}"] for r in rows)
        win["memory_attention_calls_per_frame"] = C.median([r["memory_attention_calls"] for r in rows])
        win["wall_ms_median_under_counting"] = C.median([r["wall_ms"] for r in rows])
        out["windows"][name] = win
    n_measured = sum(len(r) for r in WINDOWS.values())
    out["top_ops_per_frame"] = {k: round(v / n_measured, 1) for k, v in top.most_common(12)}
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", nargs="+", default=["tiny", "reduced"], choices=["tiny", "reduced"])
    p.add_argument("--baseline-rev", default="9e44c51", help="git revision of the grouped 'before' code")
    p.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--size", default="tiny", help=argparse.SUPPRESS)
    p.add_argument("--src", default="", help=argparse.SUPPRESS)
    p.add_argument("--per-object", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--model", default="", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps(child(args)))
        return
    script = Path(__file__).resolve()
    rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=C.REPO, capture_output=True, text=True).stdout
    dirty = subprocess.run(["git", "status", "--porcelain", "gsam2_video"], cwd=C.REPO, capture_output=True,
                           text=True).stdout.strip()
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        archive = subprocess.run(["git", "archive", args.baseline_rev, "gsam2_video"], cwd=C.REPO, check=True,
                                 capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
        for size in args.sizes:
            child_args = ["--child", "--size", size, "--model", str(C.sam2_dir(size))]
            results[size] = {
                "before": C.run_child(script, [*child_args, "--src", tmp]),
                "batched": C.run_child(script, child_args),
                "per_object": C.run_child(script, [*child_args, "--per-object"]),
            }
            results[size]["before"]["source"] = f"git {args.baseline_rev} (grouped memory attention)"
    result = {"benchmark": "aten_ops", "tree": rev.strip() + (" (uncommitted changes)" if dirty else ""),
              "objects": OBJECTS,
              "births": f"object k (0..{OBJECTS - 1}) on frame {BIRTH_EVERY}k by a box", "target": "<= 700 per frame",
              "results": results}
    C.emit(result)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"command": C.command_line(), "machine": C.machine(), **result}, indent=2))


if __name__ == "__main__":
    main()
