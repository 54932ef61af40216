"""Our tracker against the Grounded-SAM-2 continuous-ID procedure, same random weights, video and K.

Why: Grounded-SAM-2's ``grounded_sam2_tracking_demo_with_continuous_id.py`` is the procedure users compare
us with. It is re-implemented here from its published description (no code copied):

1. the video is dumped to a folder of JPEG frames (Meta's predictor reads only such folders) and Meta's
   ``SAM2VideoPredictor.init_state`` loads every frame (offloaded to CPU, loaded asynchronously);
2. every K frames: Grounding DINO (transformers' processor + model + ``post_process_grounded_object_detection``)
   finds boxes on the frame; a *second* SAM 2 model, used as an image predictor, turns the boxes into masks
   (image encoder run again on that frame; box prompt, single-mask output, masks upsampled to the frame);
3. IDs: each detection takes the ID of the first object of the previous chunk's last frame whose mask IoU
   with it exceeds 0.8, otherwise a new ID;
4. the video state is reset, every detected object is added as a mask prompt on the keyframe, and the
   predictor propagates K frames forward from there (so the next keyframe is tracked, then re-prompted);
5. per frame, a uint16 ID map (.npy) and a JSON of the objects are written.

The demo's final drawing / video step is left out on both sides. SAM2ImagePredictor itself cannot be
imported here (it needs torchvision, which this environment must not have), so step 2 calls Meta's
SAM2Base pieces directly with the image predictor's transforms (resize to the input size, ImageNet
normalisation, no-memory embedding added, box as two corner points).

Ours: the Tracker on the same Grounding DINO folder and the same SAM 2 weights (Meta .pt converted),
decoding the video file directly, offline mode, ``--detect-every K``, outputs ``masks,json``.

Precision: the demo turns on bf16 autocast for CUDA only, so on a CPU the published procedure runs fp32.
``--variants`` picks which of ours:fp32, ours:auto (our default: bf16 on CPUs with bf16 hardware),
baseline:fp32 (as published, on CPU) and baseline:bf16 (the demo with CPU bf16 autocast added) to run; the
JSON reports the equal-precision ratios (fp32/fp32, auto/bf16 when auto resolves to bf16) separately from
defaults-vs-published (auto/fp32).

Wall time excludes model loading on both sides (reported separately); it includes the baseline's JPEG
dump. Peak RSS is per fresh process (models included: the baseline holds two SAM 2 copies). Each round
runs every variant once, interleaved; medians of ``--runs`` rounds.

Run: /work/venv/bin/python benchmarks/grounded_sam2_baseline.py [--sam2-input 256 --frames 30 --k 10]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class MetaImagePredictor:
    """Box -> mask on one image with a Meta SAM 2 model (what SAM2ImagePredictor does for a box prompt)."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.size = int(model.image_size)

    @torch.inference_mode()
    def set_image(self, image: np.ndarray) -> None:
        m = self.model
        self.hw = image.shape[:2]
        x = torch.from_numpy(image).permute(2, 0, 1).float().div(255.0)[None]
        x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False, antialias=True)
        x = (x - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
        backbone = m.forward_image(x)
        _, feats, _, sizes = m._prepare_backbone_features(backbone)
        if m.directly_add_no_mem_embed:
            feats[-1] = feats[-1] + m.no_mem_embed
        maps = [f.permute(1, 2, 0).reshape(1, -1, *s) for f, s in zip(feats, sizes)]
        self.embed, self.high_res = maps[-1], maps[:-1]

    @torch.inference_mode()
    def predict_boxes(self, boxes: np.ndarray) -> np.ndarray:
        """N x H x W bool masks for N xyxy pixel boxes (single-mask output, threshold 0)."""
        m = self.model
        h, w = self.hw
        pts = torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, 2, 2)
        pts = pts / torch.tensor([w, h], dtype=torch.float32) * self.size
        labels = torch.tensor([[2, 3]], dtype=torch.int32).expand(len(pts), 2)
        sparse, dense = m.sam_prompt_encoder(points=(pts, labels), boxes=None, masks=None)
        low, _iou, _tok, _obj = m.sam_mask_decoder(
            image_embeddings=self.embed, image_pe=m.sam_prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense, multimask_output=False,
            repeat_image=True, high_res_features=self.high_res)
        return (F.interpolate(low, size=(h, w), mode="bilinear", align_corners=False)[:, 0] > 0).numpy()


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return 0.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def _box_of(mask: np.ndarray) -> list[int]:
    ys, xs = np.nonzero(mask)
    return [0, 0, 0, 0] if len(xs) == 0 else [int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())]


def run_baseline(video: Path, frames: int, k: int, sam2_input: int, detector_dir: Path, prompt: str,
                 box_threshold: float, text_threshold: float, max_detections: int, out_dir: Path,
                 dtype: str = "fp32") -> dict[str, Any]:
    from PIL import Image
    from transformers import AutoModelForZeroShotObjectDetection, AutoProcessor

    t_load = time.perf_counter()
    video_predictor = C.meta_video_predictor(sam2_input, fill_hole_area=8)
    image_predictor = MetaImagePredictor(C.meta_video_predictor(sam2_input))  # the second SAM 2 copy
    processor = AutoProcessor.from_pretrained(str(detector_dir))
    grounding = AutoModelForZeroShotObjectDetection.from_pretrained(str(detector_dir)).eval()
    load_s = time.perf_counter() - t_load

    t0 = time.perf_counter()
    jpeg_dir, mask_dir, json_dir = out_dir / "frames", out_dir / "mask_data", out_dir / "json_data"
    for d in (jpeg_dir, mask_dir, json_dir):
        d.mkdir(parents=True)
    for i, rgb in enumerate(C.read_frames(video, frames)):  # step 1: the video as a JPEG folder
        Image.fromarray(rgb).save(jpeg_dir / f"{i}.jpg", quality=95)
    names = sorted((p.name for p in jpeg_dir.iterdir()), key=lambda s: int(s.split(".")[0]))
    dump_s = time.perf_counter() - t0

    counts = {"keyframes": 0, "detections": 0, "frames_tracked": 0}
    ids_seen: set[int] = set()
    amp = torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == "bf16")
    with torch.inference_mode(), amp:
        state = video_predictor.init_state(video_path=str(jpeg_dir), offload_video_to_cpu=True,
                                           async_loading_frames=True)
        previous: dict[int, np.ndarray] = {}  # id -> mask on the last tracked frame
        next_id = 0
        for start in range(0, len(names), k):
            counts["keyframes"] += 1
            image = Image.open(jpeg_dir / names[start]).convert("RGB")
            inputs = processor(images=image, text=prompt, return_tensors="pt")
            outputs = grounding(**inputs)
            res = processor.post_process_grounded_object_detection(
                outputs, inputs.input_ids, threshold=box_threshold, text_threshold=text_threshold,
                target_sizes=[image.size[::-1]])[0]
            top = torch.argsort(res["scores"], descending=True, stable=True)[:max_detections]
            boxes = res["boxes"][top].numpy()
            counts["detections"] += len(boxes)
            new: dict[int, np.ndarray] = {}
            if len(boxes):
                image_predictor.set_image(np.asarray(image))
                masks = image_predictor.predict_boxes(boxes)
                for mask in masks:  # step 3: first previous object with IoU > 0.8, else a new id
                    oid = next((pid for pid, pm in previous.items() if _iou(mask, pm) > 0.8), None)
                    if oid is None:
                        next_id += 1
                        oid = next_id
                    new[oid] = mask
            video_predictor.reset_state(state)
            if not new:
                continue
            for oid, mask in new.items():
                video_predictor.add_new_mask(state, start, oid, torch.from_numpy(mask))
            segments: dict[int, dict[int, np.ndarray]] = {}
            for fidx, obj_ids, logits in video_predictor.propagate_in_video(
                    state, max_frame_num_to_track=k, start_frame_idx=start):
                segments[fidx] = {int(o): (logits[i, 0] > 0).numpy() for i, o in enumerate(obj_ids)}
                counts["frames_tracked"] += 1
            previous = segments[max(segments)]
            for fidx, objs in segments.items():  # step 5: per-frame ID map + JSON
                label = np.zeros(next(iter(objs.values())).shape, np.uint16)
                for oid, m in objs.items():
                    label[m] = oid
                    ids_seen.add(oid)
                stem = names[fidx].split(".")[0]
                np.save(mask_dir / f"mask_{stem}.npy", label)
                (json_dir / f"mask_{stem}.json").write_text(json.dumps(
                    {"mask_name": f"mask_{stem}.npy", "labels": {str(o): {"instance_id": o, "x1y1x2y2": _box_of(m)}
                                                               for o, m in objs.items()}}))
    wall = time.perf_counter() - t0
    return {"precision": dtype, "frames": len(names), "tracks": len(ids_seen), **counts, "wall_s": round(wall, 3),
            "jpeg_dump_s": round(dump_s, 3), "model_load_s": round(load_s, 3),
            "peak_rss_mib": round(C.peak_rss_mib(), 1)}


def run_ours(video: Path, frames: int, k: int, sam2_input: int, detector_dir: Path, prompt: str,
             box_threshold: float, text_threshold: float, max_detections: int, dtype: str = "fp32") -> dict[str, Any]:
    from pipeline import run_tracker

    t_load = time.perf_counter()
    prop = C.our_propagator_from_meta(sam2_input, dtype=dtype)
    load_s = time.perf_counter() - t_load
    res = run_tracker(detector_dir, prop, video, frames, detect_every=k, box_threshold=box_threshold,
                      text_threshold=text_threshold, save="masks,json", prompt=prompt,
                      max_detections=max_detections, dtype=dtype)
    res["model_load_s"] = round(res["model_load_s"] + load_s, 3)
    return res


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--video", default=str(C.VIDEOS / "vtest.avi"))
    p.add_argument("--frames", type=int, default=30)
    p.add_argument("--k", type=int, default=10, help="keyframe interval for both (Grounded-SAM-2's step)")
    p.add_argument("--sam2-input", type=int, default=256, help="SAM 2 input size (1024 = real size)")
    p.add_argument("--detector-kind", choices=["tiny", "real"], default="tiny")
    p.add_argument("--prompt", default="person. car.")
    p.add_argument("--box-threshold", type=float, default=0.25)
    p.add_argument("--text-threshold", type=float, default=0.25)
    p.add_argument("--max-detections", type=int, default=3,
                   help="both sides keep the top-N boxes per keyframe (random weights fire everywhere)")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--threads", type=int, default=0, help="torch threads on both sides (0 = torch's default)")
    p.add_argument("--variants", default="ours:fp32,baseline:fp32,ours:auto,baseline:bf16",
                   help="comma-separated side:precision pairs, run interleaved in this order every round")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args()
    det = C.detector_dir(args.detector_kind)
    common = (Path(args.video), args.frames, args.k, args.sam2_input, det, args.prompt, args.box_threshold,
              args.text_threshold, args.max_detections)
    if args.child:
        who, dtype = args.child.split(":")
        torch.manual_seed(0)
        if args.threads:
            torch.set_num_threads(args.threads)
        if who == "ours":
            res = run_ours(*common, dtype=dtype)
        else:
            with tempfile.TemporaryDirectory() as tmp:
                res = run_baseline(*common, out_dir=Path(tmp), dtype=dtype)
        res["load_average_after"] = C.load_average()
        print(json.dumps(res))
        return
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    for v in variants:
        who, _, dtype = v.partition(":")
        if (who, dtype) not in {("ours", "fp32"), ("ours", "auto"), ("ours", "bf16"), ("baseline", "fp32"),
                                ("baseline", "bf16")}:
            p.error(f"unknown variant {v!r}")
    C.meta_checkpoint(args.sam2_input)
    passthrough = [a for a in sys.argv[1:]]
    script = Path(__file__).resolve()
    runs: dict[str, list[dict[str, Any]]] = {v: [] for v in variants}
    for _ in range(args.runs):
        for v in variants:
            runs[v].append(C.run_child(script, [*passthrough, "--child", v]))
    med = {v: {"wall_s": C.median([r["wall_s"] for r in rs]), "peak_rss_mib": C.median([r["peak_rss_mib"] for r in rs]),
               "precision": rs[0]["precision"]} for v, rs in runs.items()}
    ratios: dict[str, Any] = {}
    auto = med.get("ours:auto", {}).get("precision")
    pairs = {"equal_precision_fp32": ("ours:fp32", "baseline:fp32"),
             "equal_precision_bf16": ("ours:auto" if auto == "bf16" else "ours:bf16", "baseline:bf16"),
             "defaults_vs_published_cpu": ("ours:auto", "baseline:fp32")}
    for name, (o, b) in pairs.items():
        if o in runs and b in runs:
            ratios[name] = {
                "ours": f"{o} ({med[o]['precision']})", "baseline": b,
                "wall_median": round(med[o]["wall_s"] / med[b]["wall_s"], 3),
                "wall_per_round": [round(x["wall_s"] / y["wall_s"], 3) for x, y in zip(runs[o], runs[b])],
                "peak_rss_median": round(med[o]["peak_rss_mib"] / med[b]["peak_rss_mib"], 3)}
    C.emit({
        "setup": {"sam2": f"Meta sam2.1 hiera-tiny random weights at {args.sam2_input} px (ours: converted)",
                  "detector": f"{args.detector_kind} random Grounding DINO, 800/1333 input",
                  "frames": args.frames, "k": args.k, "prompt": args.prompt,
                  "thresholds": [args.box_threshold, args.text_threshold],
                  "max_detections_per_keyframe": args.max_detections,
                  "torch_threads": args.threads or torch.get_num_threads(), "variants": variants},
        "runs": runs, "median": med, "ratios_ours_over_baseline": ratios,
        "target": "wall ratio <= 0.6",
    })


if __name__ == "__main__":
    main()
