"""Meta's SAM 2 (PyPI sam2==1.1.0) as a test oracle: random-weight models, a predictor run per call pattern.

Why here and not in the package: the reference implementation is only ever a yardstick for tests. Building
it from Meta's own hydra configs (with the input size reduced for speed) means the oracle is exactly what
users of facebookresearch/sam2 run; our converter then maps the same random weights into transformers.

Prompts are described once (``Prompt``) and replayed on both sides. Meta's predictor is driven the way a
streaming caller would drive it: each object's prompt is registered at its frame and propagation resumes
from there, so no object exists (and leaves memories) before its first prompt. Registering every prompt up
front instead would make Meta track each object *backwards in time* from frame 0 to its first prompt (as
memories from the future), which no streaming tracker can reproduce.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

HYDRA_CONFIGS = {
    "tiny": "configs/sam2.1/sam2.1_hiera_t.yaml",
    "small": "configs/sam2.1/sam2.1_hiera_s.yaml",
    "base-plus": "configs/sam2.1/sam2.1_hiera_b+.yaml",
    "large": "configs/sam2.1/sam2.1_hiera_l.yaml",
    "sam2.0-tiny": "sam2_hiera_t.yaml",
    "sam2.0-large": "sam2_hiera_l.yaml",
}


def meta_overrides(image_size: int, fill_hole_area: int = 0) -> list[str]:
    """Hydra overrides: Meta's video-predictor post-processing flags, at a reduced input size."""
    feat = image_size // 16
    return [
        "++model._target_=sam2.sam2_video_predictor.SAM2VideoPredictor",
        f"++model.image_size={image_size}",
        f"++model.memory_attention.layer.self_attention.feat_sizes=[{feat},{feat}]",
        f"++model.memory_attention.layer.cross_attention.feat_sizes=[{feat},{feat}]",
        # what build_sam2_video_predictor(apply_postprocessing=True) adds
        "++model.sam_mask_decoder_extra_args.dynamic_multimask_via_stability=true",
        "++model.sam_mask_decoder_extra_args.dynamic_multimask_stability_delta=0.05",
        "++model.sam_mask_decoder_extra_args.dynamic_multimask_stability_thresh=0.98",
        "++model.binarize_mask_from_pts_for_mem_enc=true",
        f"++model.fill_hole_area={fill_hole_area}",
    ]


def build_meta_predictor(size: str = "tiny", image_size: int = 256, seed: int = 0,
                         fill_hole_area: int = 0, weight_noise: float = 0.0):
    """Meta's SAM2VideoPredictor with random weights (Meta's own init, seeded), eval mode, CPU.

    ``weight_noise`` > 0 adds seeded Gaussian noise, relative to each tensor's spread (or to its magnitude
    for constant tensors: LayerNorm ones and zeros, 1e-6 layer scales). Without it those parameters have
    identical values, so a converter that swapped two of them would go unnoticed.
    """
    import sam2  # noqa: F401  (initialises hydra's config module)
    from hydra import compose
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    cfg = compose(config_name=HYDRA_CONFIGS[size], overrides=meta_overrides(image_size, fill_hole_area))
    OmegaConf.resolve(cfg)
    torch.manual_seed(seed)
    model = instantiate(cfg.model, _recursive_=True)
    if weight_noise > 0:
        gen = torch.Generator().manual_seed(seed + 1)
        with torch.no_grad():
            for p in model.parameters():
                std = float(p.std()) if p.numel() > 1 else 0.0
                scale = weight_noise * (std if std > 1e-3 else max(float(p.abs().mean()), 0.05))
                p.add_(torch.randn(p.shape, generator=gen) * scale)
    return model.eval()


def read_frames(video: Path, count: int, stride: int = 1) -> list[np.ndarray]:
    """``count`` RGB uint8 frames (every ``stride``-th) decoded with PyAV."""
    import av

    frames: list[np.ndarray] = []
    with av.open(str(video)) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i % stride == 0:
                frames.append(frame.to_ndarray(format="rgb24"))
            if len(frames) == count:
                break
    if len(frames) < count:
        raise ValueError(f"{video} has only {len(frames)} frames at stride {stride}, wanted {count}")
    return frames


def write_jpeg_folder(frames: Sequence[np.ndarray], folder: Path) -> list[np.ndarray]:
    """Write frames as Meta's ``<index>.jpg`` folder; return the frames as decoded back from those JPEGs.

    Both sides must see identical pixels, so the caller feeds the decoded JPEGs (not the originals) to ours.
    """
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    decoded = []
    for i, frame in enumerate(frames):
        path = folder / f"{i:05d}.jpg"
        Image.fromarray(frame).save(path, quality=95)
        decoded.append(np.array(Image.open(path).convert("RGB")))
    return decoded


@dataclass(frozen=True)
class Prompt:
    """A box (x0, y0, x1, y1 in video pixels) or a boolean H x W mask for ``obj_id`` at ``frame``."""

    frame: int
    obj_id: int
    box: tuple[float, float, float, float] | None = None
    mask: np.ndarray | None = field(default=None, compare=False)


@dataclass
class MetaRun:
    """Per-frame outputs: low-res logits (N x 1 x h x w), video-res logits (N x 1 x H x W), object scores."""

    obj_ids: dict[int, list[int]]
    low_res: dict[int, torch.Tensor]
    video_res: dict[int, torch.Tensor]
    object_scores: dict[int, torch.Tensor]


@torch.inference_mode()
def run_meta(predictor, frames_dir: Path, prompts: Sequence[Prompt], num_frames: int) -> MetaRun:
    """Run Meta's predictor on a JPEG folder, prompting each frame's objects when the stream reaches it."""
    state = predictor.init_state(video_path=str(frames_dir))
    by_frame: dict[int, list[Prompt]] = {}
    for p in prompts:
        by_frame.setdefault(p.frame, []).append(p)
    starts = sorted(by_frame)
    run = MetaRun({}, {}, {}, {})
    for i, start in enumerate(starts):
        for p in by_frame[start]:
            if p.box is not None:
                predictor.add_new_points_or_box(state, frame_idx=start, obj_id=p.obj_id,
                                                box=np.asarray(p.box, dtype=np.float32))
            else:
                predictor.add_new_mask(state, frame_idx=start, obj_id=p.obj_id, mask=torch.from_numpy(p.mask))
        stop = starts[i + 1] - 1 if i + 1 < len(starts) else num_frames - 1
        for frame_idx, obj_ids, video_res in predictor.propagate_in_video(
                state, start_frame_idx=start, max_frame_num_to_track=stop - start):
            run.obj_ids[frame_idx] = list(obj_ids)
            run.video_res[frame_idx] = video_res.clone()
    # low-res logits and object scores as stored in Meta's per-object output dicts
    for frame_idx, ids in run.obj_ids.items():
        lows, scores = [], []
        for obj_id in ids:
            out_dict = state["output_dict_per_obj"][state["obj_id_to_idx"][obj_id]]
            out = (out_dict["cond_frame_outputs"].get(frame_idx)
                   or out_dict["non_cond_frame_outputs"][frame_idx])
            lows.append(out["pred_masks"])
            scores.append(out["object_score_logits"].reshape(-1))
        run.low_res[frame_idx] = torch.cat(lows, 0).clone()
        run.object_scores[frame_idx] = torch.cat(scores, 0).clone()
    return run


def meta_preprocessed(frames_dir: Path, image_size: int) -> tuple[torch.Tensor, int, int]:
    """Meta's own preprocessing of a JPEG folder (PIL bicubic resize, ImageNet normalisation)."""
    from sam2.utils.misc import load_video_frames

    images, h, w = load_video_frames(str(frames_dir), image_size, offload_video_to_cpu=True,
                                     compute_device=torch.device("cpu"))
    return images, h, w


@torch.inference_mode()
def run_transformers_video(model, images: torch.Tensor, video_h: int, video_w: int,
                           prompts: Sequence[Prompt], num_frames: int) -> MetaRun:
    """transformers' own Sam2VideoModel video API on pre-processed frames, prompted like ``run_meta``.

    Used to separate converter/model questions from propagator questions: same weights, same pixels, same
    call pattern, but transformers' inference session instead of ours.
    """
    import torch.nn.functional as F
    from transformers.models.sam2_video.modeling_sam2_video import Sam2VideoInferenceSession

    size = model.config.image_size
    session = Sam2VideoInferenceSession(video=images[:num_frames], video_height=video_h, video_width=video_w,
                                        dtype=torch.float32)
    by_frame: dict[int, list[Prompt]] = {}
    for p in prompts:
        by_frame.setdefault(p.frame, []).append(p)
    starts = sorted(by_frame)
    run = MetaRun({}, {}, {}, {})
    for i, start in enumerate(starts):
        new_ids = []
        for p in by_frame[start]:
            obj_idx = session.obj_id_to_idx(p.obj_id)
            if p.box is not None:
                coords = torch.tensor(p.box, dtype=torch.float32).reshape(1, 2, 2)
                coords = coords / torch.tensor([video_w, video_h]) * size
                session.add_point_inputs(obj_idx, start, {
                    "point_coords": coords.reshape(1, 1, 2, 2),
                    "point_labels": torch.tensor([[[2, 3]]], dtype=torch.int32)})
                session.remove_mask_inputs(obj_idx, start)
            else:
                mask = torch.from_numpy(p.mask)[None, None].float()
                if mask.shape[-2:] != (size, size):
                    mask = F.interpolate(mask, size=(size, size), mode="bilinear", align_corners=False,
                                         antialias=True)
                    mask = (mask >= 0.5).float()
                session.add_mask_inputs(obj_idx, start, mask)
                session.remove_point_inputs(obj_idx, start)
            new_ids.append(p.obj_id)
        session.obj_with_new_inputs = new_ids
        stop = starts[i + 1] - 1 if i + 1 < len(starts) else num_frames - 1
        for out in model.propagate_in_video_iterator(session, start_frame_idx=start,
                                                     max_frame_num_to_track=stop - start):
            low = out.pred_masks
            run.obj_ids[out.frame_idx] = list(out.object_ids)
            run.low_res[out.frame_idx] = low.clone()
            run.video_res[out.frame_idx] = F.interpolate(low, size=(video_h, video_w), mode="bilinear",
                                                         align_corners=False)
            run.object_scores[out.frame_idx] = out.object_score_logits.reshape(-1).clone()
    return run


def compare_runs(ref: MetaRun, ours: MetaRun, threshold: float = 0.0) -> dict[int, dict[str, float]]:
    """Per object: min IoU at video resolution and max |low-res logit difference| over all frames."""
    if sorted(ref.obj_ids) != sorted(ours.obj_ids):
        raise AssertionError(f"frames differ: {sorted(ref.obj_ids)} vs {sorted(ours.obj_ids)}")
    stats: dict[int, dict[str, float]] = {}
    for t in sorted(ref.obj_ids):
        if ref.obj_ids[t] != ours.obj_ids[t]:
            raise AssertionError(f"frame {t}: object ids {ref.obj_ids[t]} vs {ours.obj_ids[t]}")
        for i, obj_id in enumerate(ref.obj_ids[t]):
            s = stats.setdefault(obj_id, {"min_iou": 1.0, "max_logit_diff": 0.0, "worst_frame": -1,
                                          "first_diff_frame": -1})
            iou = mask_iou(ref.video_res[t][i] > threshold, ours.video_res[t][i] > threshold)
            diff = (ref.low_res[t][i].float() - ours.low_res[t][i].float()).abs().max().item()
            if iou < s["min_iou"]:
                s["min_iou"], s["worst_frame"] = iou, t
            if diff > 1e-4 and s["first_diff_frame"] < 0:
                s["first_diff_frame"] = t
            s["max_logit_diff"] = max(s["max_logit_diff"], diff)
    return stats


def assert_informative(run: MetaRun, low: float = 0.005, high: float = 0.995) -> None:
    """Every object's mask on every frame covers between ``low`` and ``high`` of the frame.

    With random weights SAM 2's object-score head can call an object absent, and then both sides output
    the constant -1024 everywhere: equal, and meaningless. Parity figures count only on informative runs.
    """
    for t, logits in sorted(run.video_res.items()):
        frac = (logits > 0).float().mean(dim=(1, 2, 3))
        if not bool(((frac > low) & (frac < high)).all()):
            raise AssertionError(f"frame {t}: degenerate reference masks, foreground fractions {frac.tolist()}")


def mask_iou(a: torch.Tensor, b: torch.Tensor) -> float:
    """IoU of two boolean masks; two empty masks agree perfectly (1.0)."""
    inter = (a & b).sum().item()
    union = (a | b).sum().item()
    return 1.0 if union == 0 else inter / union


__all__ = [
    "HYDRA_CONFIGS",
    "MetaRun",
    "Prompt",
    "build_meta_predictor",
    "compare_runs",
    "mask_iou",
    "meta_overrides",
    "meta_preprocessed",
    "read_frames",
    "run_meta",
    "run_transformers_video",
    "write_jpeg_folder",
]
