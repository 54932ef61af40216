"""Benchmark each CUDA kernel against its torch reference at realistic shapes; prints JSON.

(Not named ``kernels.py``: transformers probes for a top-level package called ``kernels`` (the Hugging
Face hub-kernels library) and would import a benchmark of that name from this folder.)

Shapes: Grounding DINO-T at 800x1333 (4 levels, ~22k tokens, 8 heads x 32 channels, 4 points; encoder
self-attention over all tokens and 900 decoder queries), 40 object masks at 1080p for connected
components and IoU (40 x 40), their label map (ids 1..40) for RLE, and one 1080p frame preprocessed to
SAM 2's 1024x1024 (reference: Meta's PIL path; kernel: the PIL-exact CUDA resize + normalise).
Without CUDA (or with GSAM2_FORCE_TORCH=1) only the reference timings are reported; with CUDA each entry
also has the kernel time and the largest difference to the reference.

    python benchmarks/kernel_ops.py [--repeat 3] [--quick] [--only msda_encoder,iou]
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pycocotools.mask as mask_utils
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gsam2_video.models.sam2_preprocess import preprocess_frame, preprocess_frame_tensor
from gsam2_video.ops import _dispatch
from gsam2_video.ops.connected_components import connected_components, connected_components_reference
from gsam2_video.ops.deformable_attention import (
    multi_scale_deformable_attention,
    multi_scale_deformable_attention_reference,
)
from gsam2_video.ops.mask_iou import mask_iou_matrix, overlap_counts_reference
from gsam2_video.ops.rle import rle_from_label_map

GDINO_LEVELS = [(100, 167), (50, 84), (25, 42), (13, 21)]  # 800x1333 at strides 8, 16, 32, 64


def _time(fn: Callable[[], Any], repeat: int, cuda: bool) -> float:
    """Median wall time in ms over ``repeat`` runs after one warm-up."""
    fn()
    times = []
    for _ in range(repeat):
        if cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if cuda:
            torch.cuda.synchronize()
        times.append((time.perf_counter() - t0) * 1e3)
    return round(statistics.median(times), 3)


def _msda_inputs(queries: int, levels: list[tuple[int, int]], dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(0)
    ss = torch.tensor(levels, dtype=torch.int64)
    areas = ss[:, 0] * ss[:, 1]
    starts = torch.cat([torch.zeros(1, dtype=torch.int64), areas.cumsum(0)[:-1]])
    value = torch.randn(1, int(areas.sum()), 8, 32, generator=g).to(dtype)
    loc = torch.rand(1, queries, 8, len(levels), 4, 2, generator=g)
    w = torch.rand(1, queries, 8, len(levels), 4, generator=g).softmax(-1)
    return value, ss, starts, loc, w


def _blob_masks(n: int, h: int, w: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    masks = torch.zeros(n, h, w, dtype=torch.bool)
    for i in range(n):
        for _ in range(3):
            cy, cx = int(torch.randint(0, h, (1,), generator=g)), int(torch.randint(0, w, (1,), generator=g))
            ry, rx = int(torch.randint(h // 20, h // 4, (1,), generator=g)), int(torch.randint(w // 20, w // 4, (1,), generator=g))
            yy = torch.arange(h).view(-1, 1)
            xx = torch.arange(w).view(1, -1)
            masks[i] |= ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
        masks[i] &= torch.rand(h, w, generator=g) > 0.001  # sprinkle of holes, as real masks have
    return masks


def _diff(a: Any, b: Any) -> float:
    if isinstance(a, tuple):
        return max(_diff(x, y) for x, y in zip(a, b))
    if isinstance(a, list):
        return 0.0 if a == b else float("inf")
    return float((a.detach().float().cpu() - b.detach().float().cpu()).abs().max())


def run(args: argparse.Namespace) -> dict[str, Any]:
    cuda = torch.cuda.is_available() and _dispatch.cupy_available() and not _dispatch.force_torch()
    scale = 4 if args.quick else 1
    levels = [(max(1, h // scale), max(1, w // scale)) for h, w in GDINO_LEVELS]
    tokens = sum(h * w for h, w in levels)
    mh, mw, n_masks = 1080 // scale, 1920 // scale, 40 // (2 if args.quick else 1)
    masks = _blob_masks(n_masks, mh, mw)
    frame = torch.randint(0, 256, (1, 1080 // scale, 1920 // scale, 3), dtype=torch.uint8,
                          generator=torch.Generator().manual_seed(2))
    side = 1024 // scale

    cases: dict[str, dict[str, Any]] = {}

    def add(name: str, shape: dict[str, Any], ref: Callable[[], Any], ker: Callable[[], Any] | None,
            extra: dict[str, Any] | None = None) -> None:
        if args.only and name not in args.only:
            return
        entry: dict[str, Any] = {"shape": shape, "reference_cpu_ms": _time(ref, args.repeat, False)}
        if cuda and ker is not None:
            entry["kernel_cuda_ms"] = _time(ker, args.repeat, True)
            entry["max_abs_diff_vs_reference"] = _diff(ker(), ref())
        entry.update(extra or {})
        cases[name] = entry

    for name, queries in (("msda_encoder", tokens), ("msda_decoder", 900)):
        for dtype in (torch.float32,) + ((torch.float16,) if cuda else ()):
            inputs = _msda_inputs(queries, levels, dtype)
            cuda_inputs = [t.cuda() for t in inputs] if cuda else []
            sampled_bytes = 8 * 32 * queries * len(levels) * 4 * 4  # grid_sample path's stacked samples (fp32)
            add(f"{name}_{str(dtype).split('.')[-1]}",
                {"tokens": tokens, "queries": queries, "heads": 8, "channels": 32, "levels": len(levels),
                 "points": 4},
                lambda i=inputs: multi_scale_deformable_attention_reference(*i),
                (lambda c=cuda_inputs: multi_scale_deformable_attention(*c)) if cuda else None,
                {"reference_intermediate_bytes": sampled_bytes, "kernel_intermediate_bytes": 0})

    cmask = masks.cuda() if cuda else None
    add("connected_components", {"masks": n_masks, "height": mh, "width": mw},
        lambda: connected_components_reference(masks), (lambda: connected_components(cmask)) if cuda else None)
    add("mask_iou", {"a": n_masks, "b": n_masks, "height": mh, "width": mw},
        lambda: overlap_counts_reference(masks, masks), (lambda: mask_iou_matrix(cmask, cmask)) if cuda else None)
    labels = torch.zeros(mh, mw, dtype=torch.uint8)
    for k, m in enumerate(masks):  # later masks win where they overlap: a frame's label map
        labels[m] = k + 1
    ids = list(range(1, n_masks + 1))
    clabels = labels.cuda() if cuda else None
    add("rle_label_map", {"ids": n_masks, "height": mh, "width": mw},
        lambda: rle_from_label_map(labels, ids), (lambda: rle_from_label_map(clabels, ids)) if cuda else None,
        {"pycocotools_encode_per_mask_cpu_ms": _time(lambda: [mask_utils.encode(np.asfortranarray(
            (labels == i).numpy().astype(np.uint8))) for i in ids], args.repeat, False)}
        if not args.only or "rle_label_map" in args.only else None)
    host_frame = frame[0].numpy()
    add("preprocess_sam2", {"in": list(frame.shape[1:3]), "out": [side, side]},
        lambda: preprocess_frame(host_frame, side),
        (lambda: preprocess_frame_tensor(host_frame, side, "cuda")[0]) if cuda else None)
    return {
        "command": " ".join(shlex.quote(a) for a in [sys.executable, *sys.argv]),
        "cuda_kernels": cuda,
        "device": torch.cuda.get_device_name() if cuda else platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "repeat": args.repeat,
        "quick": args.quick,
        "results": cases,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per case (median reported)")
    parser.add_argument("--quick", action="store_true", help="quarter-resolution shapes (smoke run)")
    parser.add_argument("--only", type=lambda s: set(s.split(",")), default=None,
                        help="comma-separated case names, e.g. msda_encoder_float32,mask_iou")
    print(json.dumps(run(parser.parse_args()), indent=2))


if __name__ == "__main__":
    main()
