"""Keyframe association + track lifecycle vs the Grounded-SAM-2 continuous-ID rule, on simulated streams.

Why: identity quality is decided by what happens on keyframes, and that can be measured without models.
Each stream is a small synthetic world (ellipses moving with noisy velocity, entering late, leaving,
occluded for a while) with ground truth. A simulated detector runs on keyframes (misses, false positives,
partial duplicate detections, mask jitter); a simulated propagator stands in for SAM 2 (each track follows
the object it was conditioned on, with a mean-reverting random-walk offset that starts at the conditioning
mask's error; empty while the object is occluded, re-acquired afterwards unless the occlusion was a "hard"
one; now and then it loses a visible object for good; a track started on a false positive shows that blob for
a while, then loses it). A re-conditioned track starts afresh. Detector outputs depend only on
(stream, frame) and occlusion hardness only on the world, so every method sees the same detections on the
frames where it detects.

Methods:
  ours          associate() + TrackRegistry + KeyframePolicy (interval K plus object-score trigger), as the
                pipeline drives them: visible boxes observed every frame (lost-frame count, last box, motion
                prediction; 30 fps assumed), only confirmed tracks trigger keyframes and are emitted
  ours_fixed_k  the same with the score trigger off: keyframes exactly every K frames, like the baseline
  gsam2         Grounded-SAM-2's continuous-ID procedure (grounded_sam2_tracking_demo_with_continuous_id.py
                and utils/mask_dictionary_model.py, re-implemented from their description): every K frames
                detect; for each detection in detector order, scan the previous chunk's tracked objects (their
                masks at this frame, in insertion order) and take the id of the first with mask IoU > 0.8,
                else a new id; a later detection taking the same id overwrites the earlier; then reset the
                video state and condition only the detected objects (unmatched tracks are dropped); a keyframe
                without detections tracks nothing until the next keyframe and leaves the reference masks as
                they were.

Metrics: motmetrics (MOTA / IDF1 / ID switches) with mask IoU >= 0.5 as the match gate, over visible ground
truth per frame. No back-fill is simulated (both methods are scored as in live mode).

Timing: associate() at 100 tracks x 100 detections of a 1080p frame, median of --timing-runs runs, for
masks given at SAM 2's low-res 256 x 256, at 144 x 256, and at full 1080 x 1920 (downsampled inside).

Run: /work/venv/bin/python benchmarks/association.py [--streams 12 --frames 300 ...]; prints JSON.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shlex
import sys
import time
from dataclasses import dataclass, field

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from gsam2_video.config import AssociationConfig, KeyframeConfig
from gsam2_video.ops.mask_iou import mask_coverage_matrix, mask_iou_matrix
from gsam2_video.tracking import KeyframePolicy, TrackRegistry, associate


# ----------------------------------------------------------------------------------------------- world
@dataclass
class Noise:
    """Simulation parameters (pixels are canvas pixels)."""

    p_miss: float = 0.15  # a visible object is not detected on a keyframe
    p_fp: float = 0.3  # a keyframe has a false positive (Poisson mean)
    p_dup: float = 0.1  # a detected object also yields a partial duplicate detection
    jitter: float = 1.0  # detection mask centre noise (std, px)
    drift: float = 0.5  # propagated mask offset noise (std per frame, px) of a mean-reverting walk
    drift_pull: float = 0.05  # fraction of the offset SAM 2 corrects per frame (0 = pure random walk)
    p_lose: float = 0.003  # per track and frame, SAM 2 loses a visible object for good (until re-conditioned)
    p_hard_occlusion: float = 0.3  # SAM 2 does not re-acquire the object after this occlusion
    fp_persist: float = 15.0  # mean frames SAM 2 keeps showing a false-positive blob


@dataclass
class Obj:
    oid: int
    birth: int
    death: int
    cx: np.ndarray  # per frame
    cy: np.ndarray
    rx: float
    ry: float
    occl: list[tuple[int, int, bool]]  # [start, end) and whether it is hard (not re-acquired)

    def alive(self, t: int) -> bool:
        return self.birth <= t < self.death

    def occlusion(self, t: int) -> tuple[int, int, bool] | None:
        for ep in self.occl:
            if ep[0] <= t < ep[1]:
                return ep
        return None

    def visible(self, t: int) -> bool:
        return self.alive(t) and self.occlusion(t) is None


def ellipse(cx: float, cy: float, rx: float, ry: float, h: int, w: int) -> np.ndarray:
    m = np.zeros((h, w), bool)
    x0, x1 = max(0, int(cx - rx) - 1), min(w, int(cx + rx) + 2)
    y0, y1 = max(0, int(cy - ry) - 1), min(h, int(cy + ry) + 2)
    if x1 <= x0 or y1 <= y0:
        return m
    yy = np.arange(y0, y1)[:, None]
    xx = np.arange(x0, x1)[None, :]
    m[y0:y1, x0:x1] = ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1.0
    return m


def make_world(rng: np.random.Generator, n_obj: int, frames: int, h: int, w: int) -> list[Obj]:
    objs = []
    for oid in range(1, n_obj + 1):
        birth = 0 if rng.random() < 0.5 else int(rng.integers(1, int(0.7 * frames)))
        death = min(frames, birth + int(rng.integers(int(0.3 * frames), frames + 1)))
        rx = float(rng.uniform(7, 20))
        ry = float(rx * rng.uniform(0.6, 1.6))
        x, y = rng.uniform(rx, w - rx), rng.uniform(ry, h - ry)
        vx, vy = rng.normal(0, 1.2, 2)
        cx, cy = np.zeros(frames), np.zeros(frames)
        for t in range(frames):
            vx += rng.normal(0, 0.15)
            vy += rng.normal(0, 0.15)
            x += vx
            y += vy
            if not rx <= x <= w - rx:
                vx, x = -vx, float(np.clip(x, rx, w - rx))
            if not ry <= y <= h - ry:
                vy, y = -vy, float(np.clip(y, ry, h - ry))
            cx[t], cy[t] = x, y
        occl = []
        for _ in range(rng.poisson(1.0)):
            s = int(rng.integers(birth, max(birth + 1, death)))
            occl.append((s, s + int(rng.integers(3, 31)), bool(rng.random() < Noise.p_hard_occlusion)))
        objs.append(Obj(oid, birth, death, cx, cy, rx, ry, occl))
    return objs


# -------------------------------------------------------------------------------------------- detector
@dataclass
class SimDet:
    mask: np.ndarray
    score: float
    obj: int | None  # ground-truth source; None for a false positive
    dx: float = 0.0
    dy: float = 0.0
    persist: int = 0  # frames SAM 2 keeps a false positive
    part: bool = False  # a part of the object (its left half); SAM 2 prompted with it tracks that part


def detect(world: list[Obj], t: int, seed: int, noise: Noise, h: int, w: int) -> list[SimDet]:
    rng = np.random.default_rng([seed, t, 7])
    dets: list[SimDet] = []
    for o in world:
        if not o.visible(t) or rng.random() < noise.p_miss:
            continue
        dx, dy = rng.normal(0, noise.jitter, 2)
        m = ellipse(o.cx[t] + dx, o.cy[t] + dy, o.rx * (1 + rng.normal(0, 0.05)), o.ry * (1 + rng.normal(0, 0.05)),
                    h, w)
        dets.append(SimDet(m, float(rng.uniform(0.4, 0.95)), o.oid, dx, dy))
        if rng.random() < noise.p_dup:  # a part of the object detected as well
            part = m.copy()
            part[:, int(o.cx[t]):] = False
            if part.any():
                dets.append(SimDet(part, float(rng.uniform(0.3, 0.6)), o.oid, dx, dy, part=True))
    for _ in range(rng.poisson(noise.p_fp)):
        r = float(rng.uniform(5, 15))
        m = ellipse(rng.uniform(r, w - r), rng.uniform(r, h - r), r, r * rng.uniform(0.7, 1.4), h, w)
        dets.append(SimDet(m, float(rng.uniform(0.3, 0.5)), None,
                           persist=int(rng.geometric(1.0 / noise.fp_persist))))
    order = rng.permutation(len(dets))
    return [dets[i] for i in order if dets[i].mask.any()]


# ------------------------------------------------------------------------------------------ propagator
@dataclass
class SimTrack:
    target: int | None
    dx: float
    dy: float
    start: int
    fp_mask: np.ndarray | None = None
    fp_until: int = 0
    lost: bool = False
    part: bool = False


@dataclass
class SimPropagator:
    """Stand-in for SAM 2: masks of live tracks per frame (call masks_at once per frame, in order)."""

    world: dict[int, Obj]
    noise: Noise
    rng: np.random.Generator
    h: int
    w: int
    tracks: dict[int, SimTrack] = field(default_factory=dict)

    def condition(self, tid: int, det: SimDet, t: int) -> None:
        self.tracks[tid] = SimTrack(det.obj, det.dx, det.dy, t,
                                    det.mask if det.obj is None else None, t + det.persist, part=det.part)

    def remove(self, tid: int) -> None:
        self.tracks.pop(tid, None)

    def step(self) -> None:
        keep = 1.0 - self.noise.drift_pull
        for tr in self.tracks.values():
            tr.dx = keep * tr.dx + self.rng.normal(0, self.noise.drift)
            tr.dy = keep * tr.dy + self.rng.normal(0, self.noise.drift)
            if self.rng.random() < self.noise.p_lose:
                tr.lost = True

    def mask(self, tid: int, t: int) -> np.ndarray:
        tr = self.tracks[tid]
        if tr.target is None:
            return tr.fp_mask if (t < tr.fp_until and tr.fp_mask is not None) else np.zeros((self.h, self.w), bool)
        o = self.world[tr.target]
        ep = o.occlusion(t)
        if ep is not None and ep[2] and ep[0] >= tr.start:
            tr.lost = True
        if tr.lost or not o.visible(t):
            return np.zeros((self.h, self.w), bool)
        m = ellipse(o.cx[t] + tr.dx, o.cy[t] + tr.dy, o.rx, o.ry, self.h, self.w)
        if tr.part:
            m[:, max(0, int(o.cx[t] + tr.dx)):] = False
        return m

    def masks_at(self, t: int) -> dict[int, np.ndarray]:
        return {tid: self.mask(tid, t) for tid in self.tracks}


# --------------------------------------------------------------------------------------------- methods
def tight_boxes(masks: np.ndarray) -> np.ndarray:
    out = np.zeros((len(masks), 4), np.float32)
    for i, m in enumerate(masks):
        rows, cols = np.flatnonzero(m.any(1)), np.flatnonzero(m.any(0))
        if len(rows):
            out[i] = (cols[0], rows[0], cols[-1] + 1, rows[-1] + 1)
    return out


def run_ours(world: list[Obj], seed: int, frames: int, k: int, adaptive: bool, noise: Noise, h: int, w: int,
             config: AssociationConfig) -> tuple[list[dict[int, np.ndarray]], int]:
    prop = SimPropagator({o.oid: o for o in world}, noise, np.random.default_rng([seed, 1]), h, w)
    registry = TrackRegistry(config, fps=30.0)
    policy = KeyframePolicy(KeyframeConfig(detect_every=k, score_trigger=adaptive, scene_cut_threshold=None))
    out, n_kf = [], 0
    for t in range(frames):
        prop.step()
        masks = prop.masks_at(t)
        is_kf, _ = policy.is_keyframe(None, registry.trigger_scores(
            {tid: (1.0 if m.any() else -1.0) for tid, m in masks.items()}))
        if is_kf:
            n_kf += 1
            dets = detect(world, t, seed, noise, h, w)
            ids = list(registry.tracks)
            tm = np.stack([masks[i] for i in ids]) if ids else np.zeros((0, h, w), bool)
            dm = np.stack([d.mask for d in dets]) if dets else np.zeros((0, h, w), bool)
            scores = [d.score for d in dets]
            res = associate(ids, torch.from_numpy(tm), tight_boxes(tm), None, torch.from_numpy(dm),
                            tight_boxes(dm), None, config, det_scores=scores, lost_boxes=registry.lost_boxes(ids),
                            predicted_boxes=registry.predicted_boxes(ids, t))
            upd = registry.on_keyframe(res, scores, [0] * len(dets), None,
                                       {i: bool(masks[i].any()) for i in ids}, t)
            for tid in upd.removed:
                prop.remove(tid)
            for tid, j in upd.created + upd.refresh:
                prop.condition(tid, dets[j], t)
            masks = prop.masks_at(t)
        visible = {tid: m for tid, m in masks.items() if m.any()}
        registry.observe(t, dict(zip(visible, tight_boxes(np.stack(list(visible.values())) if visible
                                                          else np.zeros((0, h, w))))))
        out.append({tid: m for tid, m in visible.items() if registry.emittable(tid)})  # as the pipeline emits
    return out, n_kf


def iou_pair(a: np.ndarray, b: np.ndarray) -> float:
    inter = np.count_nonzero(a & b)
    union = np.count_nonzero(a | b)
    return inter / union if union else 0.0


def run_gsam2(world: list[Obj], seed: int, frames: int, k: int, noise: Noise, h: int,
              w: int) -> tuple[list[dict[int, np.ndarray]], int]:
    rng = np.random.default_rng([seed, 2])
    prop: SimPropagator | None = None
    reference: dict[int, np.ndarray] = {}  # tracked masks at the end of the last propagated chunk
    count = 0
    out, n_kf = [], 0
    for t in range(frames):
        if prop is not None:
            prop.step()
        if t % k == 0:
            n_kf += 1
            if prop is not None:  # the previous chunk propagated up to and including this frame
                reference = prop.masks_at(t)
            dets = detect(world, t, seed, noise, h, w)
            if not dets:
                prop = None  # "no object detected": nothing tracked in this chunk
            else:
                updated: dict[int, SimDet] = {}
                for d in dets:
                    flag = 0
                    for oid, m in reference.items():
                        if iou_pair(d.mask, m) > 0.8:
                            flag = oid
                            break
                    if not flag:
                        count += 1
                        flag = count
                    updated[flag] = d
                prop = SimPropagator({o.oid: o for o in world}, noise, rng, h, w)
                for oid, d in updated.items():
                    prop.condition(oid, d, t)
        if prop is None:
            out.append({})
        else:
            out.append({tid: m for tid, m in prop.masks_at(t).items() if m.any()})
    return out, n_kf


# --------------------------------------------------------------------------------------------- scoring
def accumulate(world: list[Obj], hyps: list[dict[int, np.ndarray]], h: int, w: int):
    import motmetrics as mm

    acc = mm.MOTAccumulator(auto_id=True)
    for t, hyp in enumerate(hyps):
        gt = [o for o in world if o.visible(t)]
        gt_ids = [o.oid for o in gt]
        hyp_ids = list(hyp)
        if gt and hyp_ids:
            gm = torch.from_numpy(np.stack([ellipse(o.cx[t], o.cy[t], o.rx, o.ry, h, w) for o in gt]))
            hm = torch.from_numpy(np.stack([hyp[i] for i in hyp_ids]))
            iou = mask_iou_matrix(gm, hm).numpy().astype(np.float64)
            dist = np.where(iou >= 0.5, 1.0 - iou, np.nan)
        else:
            dist = np.full((len(gt_ids), len(hyp_ids)), np.nan)
        acc.update(gt_ids, hyp_ids, dist)
    return acc


def evaluate(args: argparse.Namespace, noise: Noise) -> dict:
    import motmetrics as mm

    config = AssociationConfig()
    accs: dict[str, list] = {"ours": [], "ours_fixed_k": [], "gsam2": []}
    keyframes = {name: 0 for name in accs}
    for s in range(args.streams):
        seed = args.seed * 1000 + s
        world = make_world(np.random.default_rng([seed, 0]), args.objects, args.frames, args.height, args.width)
        for name, acc_list in accs.items():
            if name == "gsam2":
                hyps, n_kf = run_gsam2(world, seed, args.frames, args.detect_every, noise, args.height, args.width)
            else:
                hyps, n_kf = run_ours(world, seed, args.frames, args.detect_every, name == "ours", noise,
                                      args.height, args.width, config)
            acc_list.append(accumulate(world, hyps, args.height, args.width))
            keyframes[name] += n_kf
    mh = mm.metrics.create()
    metrics = ["idf1", "idp", "idr", "num_switches", "mota", "num_false_positives", "num_misses",
               "num_unique_objects", "num_fragmentations"]
    out = {}
    for name, acc_list in accs.items():
        summary = mh.compute_many(acc_list, metrics=metrics, names=[f"s{i}" for i in range(len(acc_list))],
                                  generate_overall=True)
        row = summary.loc["OVERALL"]
        out[name] = {
            "idf1": round(float(row["idf1"]), 4),
            "id_switches": int(row["num_switches"]),
            "mota": round(float(row["mota"]), 4),
            "idp": round(float(row["idp"]), 4),
            "idr": round(float(row["idr"]), 4),
            "false_positives": int(row["num_false_positives"]),
            "misses": int(row["num_misses"]),
            "fragmentations": int(row["num_fragmentations"]),
            "gt_objects": int(row["num_unique_objects"]),
            "detector_runs": keyframes[name],
        }
    return out


# ---------------------------------------------------------------------------------------------- timing
def timing(runs: int, seed: int) -> dict:
    """associate() at 100 tracks x 100 detections of a 1080p frame."""
    rng = np.random.default_rng(seed)
    n, H, W = 100, 1080, 1920
    cx, cy = rng.uniform(0, W, n), rng.uniform(0, H, n)
    rx = rng.uniform(20, 90, n)
    ry = rx * rng.uniform(0.6, 1.6, n)
    keep = rng.random(n) < 0.9  # 90 objects detected, 10 new ones
    dcx = np.where(keep, cx + rng.normal(0, 6, n), rng.uniform(0, W, n))
    dcy = np.where(keep, cy + rng.normal(0, 6, n), rng.uniform(0, H, n))

    def render(xs, ys, h, w):
        sx, sy = w / W, h / H
        masks = np.stack([ellipse(x * sx, y * sy, a * sx, b * sy, h, w) for x, y, a, b in zip(xs, ys, rx, ry)])
        boxes = np.stack([np.clip([x - a, y - b, x + a + 1, y + b + 1], 0, [W, H, W, H])
                          for x, y, a, b in zip(xs, ys, rx, ry)]).astype(np.float32)
        return torch.from_numpy(masks), boxes

    config = AssociationConfig()
    ids = list(range(1, n + 1))
    cls = np.zeros(n, np.int64)
    scores = rng.uniform(0.3, 0.9, n)
    out = {}
    for name, (h, w) in {"sam2_lowres_256x256": (256, 256), "downsampled_144x256": (144, 256),
                         "full_1080x1920": (1080, 1920)}.items():
        tm, tb = render(cx, cy, h, w)
        dm, db = render(dcx, dcy, h, w)

        def call(tm=tm, tb=tb, dm=dm, db=db):
            return associate(ids, tm, tb, cls, dm, db, cls, config, det_scores=scores, image_size=(H, W))

        res = call()
        times, cpu = [], []
        for _ in range(runs):
            t0, c0 = time.perf_counter(), time.thread_time()
            call()
            times.append(time.perf_counter() - t0)
            cpu.append(time.thread_time() - c0)
        stride = max(1, math.ceil(max(h, w) / config.iou_max_side))
        tw, dw = tm[:, ::stride, ::stride].contiguous(), dm[:, ::stride, ::stride].contiguous()
        dense = []
        for _ in range(max(5, runs // 4)):
            t0 = time.perf_counter()
            mask_iou_matrix(tw, dw)
            mask_coverage_matrix(dw, tw)
            dense.append(time.perf_counter() - t0)
        exact = bool(np.array_equal(res.iou, mask_iou_matrix(tw, dw).numpy()))
        out[name] = {
            "mask_size": [h, w],
            "working_size": [int(tw.shape[1]), int(tw.shape[2])],
            "median_ms": round(1e3 * float(np.median(times)), 3),
            "p90_ms": round(1e3 * float(np.percentile(times, 90)), 3),
            "median_thread_cpu_ms": round(1e3 * float(np.median(cpu)), 3),
            "min_ms": round(1e3 * float(np.min(times)), 3),
            "runs": runs,
            "under_5ms": bool(np.median(times) < 5e-3),
            "dense_ops_iou_plus_coverage_median_ms": round(1e3 * float(np.median(dense)), 3),
            "iou_equals_dense_op": exact,
            "matches": len(res.matches), "new": len(res.new), "duplicates": len(res.duplicates),
        }
    out["note"] = ("every entry is the whole associate() call (validation, box prefilter, bit-packing of the "
                   "rows inside boxes, sparse pair counts, three matching passes, duplicate checks); masks larger "
                   "than iou_max_side=256 are subsampled inside the call (the full-res entry includes that); "
                   "dense_ops_* is the dense mask_iou_matrix + mask_coverage_matrix on the same working-size "
                   "masks, for comparison")
    return out


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--streams", type=int, default=12)
    p.add_argument("--frames", type=int, default=300)
    p.add_argument("--objects", type=int, default=7)
    p.add_argument("--detect-every", type=int, default=10)
    p.add_argument("--height", type=int, default=180)
    p.add_argument("--width", type=int, default=320)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--timing-runs", type=int, default=50)
    p.add_argument("--skip-quality", action="store_true")
    p.add_argument("--skip-timing", action="store_true")
    p.add_argument("--out", help="also write the JSON here")
    args = p.parse_args(argv)
    if args.timing_runs < 20:
        p.error("--timing-runs must be >= 20")
    t0 = time.perf_counter()
    report: dict = {
        "command": " ".join(shlex.quote(a) for a in [sys.executable, *sys.argv]),
        "machine": {"cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                    "platform": platform.platform(), "python": platform.python_version(),
                    "load_average_1m": round(os.getloadavg()[0], 2)},
        "settings": {k: v for k, v in vars(args).items() if k not in ("out",)},
    }
    if not args.skip_quality:
        report["quality"] = {}
        for label, noise in {"default_noise": Noise(), "low_noise": Noise(p_miss=0.05, p_fp=0.1, p_dup=0.05,
                                                                          jitter=0.5, drift=0.2)}.items():
            report["quality"][label] = {"noise": vars(noise), "results": evaluate(args, noise)}
    if not args.skip_timing:
        report["timing_100x100_1080p"] = timing(args.timing_runs, args.seed)
    report["wall_s"] = round(time.perf_counter() - t0, 1)
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    return report


if __name__ == "__main__":
    main()
