"""Text-prompted box detection on one RGB frame, on transformers' zero-shot object detectors.

Why a wrapper: the pipeline needs boxes in frame pixels with a class id that indexes the user's prompt.
transformers' post-processing returns decoded token strings for Grounding DINO ("person car [SEP]" when a
box lights up several words), so class ids are recovered from token *positions* here (see
:mod:`gsam2_video.prompts`). Scores, box thresholding and box conversion follow
``post_process_grounded_object_detection`` operation for operation, so results equal the reference (tested).

Two model families share the interface:

* Grounding DINO / MM Grounding DINO (``grounding-dino``, ``mm-grounding-dino``): one dotted sentence,
  per-token logits; vocabularies over the text limit (256 tokens) are split into chunks, one forward each,
  merged afterwards.
* OWLv2 / OWL-ViT (``owlv2``, ``owlvit``): one text query per class, per-query logits; the input size is
  the checkpoint's fixed square, so ``shortest_edge``/``longest_edge`` do not apply.

Images go through the checkpoint's own image processor (transformers uses its PIL backend when torchvision
is absent, which is how this project runs), resized to the configured shortest/longest edge.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..config import DetectorConfig
from ..errors import ConfigError, ModelError
from ..prompts import Prompt, chunk_prompt, class_token_positions, parse_prompt, sentence
from ..types import Detections
from . import loading

GROUNDING_FAMILY = ("grounding-dino", "mm-grounding-dino")
OWL_FAMILY = ("owlv2", "owlvit")


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pairwise IoU of xyxy boxes, ``len(a) x len(b)``; empty boxes have IoU 0 with everything."""
    area_a = (a[:, 2] - a[:, 0]).clamp(min=0) * (a[:, 3] - a[:, 1]).clamp(min=0)
    area_b = (b[:, 2] - b[:, 0]).clamp(min=0) * (b[:, 3] - b[:, 1]).clamp(min=0)
    lt = torch.maximum(a[:, None, :2], b[None, :, :2])
    rb = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    union = area_a[:, None] + area_b[None, :] - inter
    return torch.where(union > 0, inter / union.clamp(min=torch.finfo(union.dtype).tiny), torch.zeros_like(inter))


def batched_nms(boxes: torch.Tensor, scores: torch.Tensor, class_ids: torch.Tensor, iou: float) -> torch.Tensor:
    """Greedy per-class NMS: indices kept, highest score first (ties keep the earlier box).

    Boxes of different classes never suppress each other. A box is suppressed when its IoU with a kept box
    of the same class is strictly greater than ``iou``.
    """
    n = int(boxes.shape[0])
    if n == 0:
        return torch.zeros(0, dtype=torch.long, device=boxes.device)
    order = torch.sort(scores, descending=True, stable=True).indices
    b, c = boxes[order].float(), class_ids[order]
    overlap = (box_iou(b, b) > iou) & (c[:, None] == c[None, :])
    overlap = overlap.cpu().numpy()
    suppressed = np.zeros(n, dtype=bool)
    keep: list[int] = []
    for i in range(n):
        if suppressed[i]:
            continue
        keep.append(i)
        suppressed |= overlap[i]
    return order[torch.as_tensor(keep, dtype=torch.long, device=order.device)]


@dataclass(frozen=True)
class _Chunk:
    """One forward's worth of prompt: the class indices it carries and their token positions."""

    class_indices: tuple[int, ...]
    text: str
    input_ids: tuple[int, ...]
    positions: tuple[tuple[int, ...], ...]


def _check_image(image: Any) -> np.ndarray:
    if not isinstance(image, np.ndarray):
        raise ModelError(f"detector image must be a numpy array, got {type(image).__name__}")
    if image.ndim != 3 or image.shape[2] != 3 or image.shape[0] < 1 or image.shape[1] < 1:
        raise ModelError(f"detector image must be H x W x 3 RGB, got shape {tuple(image.shape)}")
    if image.dtype != np.uint8:
        raise ModelError(f"detector image must be uint8 RGB, got dtype {image.dtype}")
    return np.ascontiguousarray(image)


def model_type_of(model: Any) -> str:
    return str(getattr(model.config, "model_type", ""))


class Detector:
    """A zero-shot detector: ``detect(frame, prompt)`` -> boxes, scores and class ids of the prompt."""

    def __init__(self, model: Any, processor: Any, config: DetectorConfig, device: torch.device,
                 autocast_dtype: torch.dtype | None) -> None:
        config.validate()
        self.model = model.to(device).eval()
        # On CUDA, Grounding DINO's deformable attention runs as our NVRTC kernel instead of transformers'
        # grid_sample path (15-20x the memory traffic); on CPU the torch path stays.
        self.kernel_modules = 0
        if device.type == "cuda" and model_type_of(model) in GROUNDING_FAMILY:
            from ..kernels import patch_grounding_dino

            self.kernel_modules = patch_grounding_dino(self.model)
        self.processor = processor
        self.config = config
        self.device = device
        self.autocast_dtype = autocast_dtype
        model_type = model_type_of(model)
        self.model_type = model_type
        if model_type in GROUNDING_FAMILY:
            self.family = "grounding"
        elif model_type in OWL_FAMILY:
            self.family = "owl"
        else:
            raise ModelError(f"detector {config.model!r} has model type {model_type!r}; supported: "
                             f"{', '.join(GROUNDING_FAMILY + OWL_FAMILY)}")
        limit = int(getattr(model.config, "max_text_len", config.max_text_tokens))
        self.max_text_tokens = min(limit, config.max_text_tokens)
        self._plan: tuple[Prompt, tuple[_Chunk, ...]] | None = None  # last prompt's chunks (prompts repeat)

    @classmethod
    def from_pretrained(cls, name_or_path: str, config: DetectorConfig | None = None, device: str = "auto",
                        dtype: str = "auto") -> Detector:
        """Load a hub id, a save_pretrained folder or an offline-cached hub id through one path."""
        from transformers import AutoModelForZeroShotObjectDetection, AutoProcessor

        cfg = dataclasses.replace(config if config is not None else DetectorConfig(), model=str(name_or_path))
        cfg.validate()
        dev = loading.resolve_device(device)
        autocast_dtype = loading.resolve_dtype(dtype, dev)
        model = loading.from_pretrained(AutoModelForZeroShotObjectDetection, name_or_path, kind="detector")
        processor = loading.from_pretrained(AutoProcessor, name_or_path, kind="detector processor")
        return cls(model, processor, cfg, dev, autocast_dtype)

    # ------------------------------------------------------------------ prompt plans
    def plan(self, prompt: Prompt) -> tuple[_Chunk, ...]:
        """The chunks ``prompt`` is run in (Grounding DINO); cached for the last prompt seen."""
        if self._plan is not None and self._plan[0] == prompt:
            return self._plan[1]
        tokenizer = self.processor.tokenizer
        chunks = []
        for idx in chunk_prompt(prompt, tokenizer, self.max_text_tokens):
            names = [prompt.classes[k] for k in idx]
            ids, positions = class_token_positions(names, tokenizer)
            chunks.append(_Chunk(tuple(idx), sentence(names)[0], tuple(ids), tuple(tuple(p) for p in positions)))
        plan = tuple(chunks)
        self._plan = (prompt, plan)
        return plan

    # ------------------------------------------------------------------ inference
    def _forward(self, inputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        inputs = {k: v.to(self.device) for k, v in inputs.items()}
        with torch.inference_mode(), loading.autocast(self.device, self.autocast_dtype):
            out = self.model(**inputs)
        return out.logits[0].float(), out.pred_boxes[0].float()

    def image_inputs(self, image: np.ndarray) -> dict[str, torch.Tensor]:
        """The image processor's tensors for ``image`` at the configured input resolution."""
        size = {"shortest_edge": self.config.shortest_edge, "longest_edge": self.config.longest_edge}
        # frames are always H x W x 3; without saying so, transformers guesses the channel axis from the shape
        # and misreads tiny frames (1 x 1 x 3, 4 x 4 x 3) as channels-first
        enc = self.processor.image_processor(images=image, size=size, return_tensors="pt",
                                             input_data_format="channels_last")
        return {k: v for k, v in enc.items() if k in ("pixel_values", "pixel_mask")}

    def _check_input_size(self, pixels: dict[str, torch.Tensor]) -> None:
        """Grounding DINO needs >= num_queries image tokens and more than 1x1 at its coarsest level."""
        h, w = (int(v) for v in pixels["pixel_values"].shape[-2:])
        levels = int(getattr(self.model.config, "num_feature_levels", 4))
        queries = int(getattr(self.model.config, "num_queries", 0))
        fh, fw = -(-h // 4), -(-w // 4)  # Swin patch embedding (stride 4), then one halving per level
        tokens = 0
        for _ in range(levels):
            fh, fw = -(-fh // 2), -(-fw // 2)
            tokens += fh * fw
        if tokens < queries or fh * fw < 2:
            raise ModelError(f"detector input {h}x{w} is too small for this model ({tokens} image tokens, "
                             f"{queries} queries, coarsest level {fh}x{fw}); raise the detector's "
                             f"shortest/longest edge")

    def with_thresholds(self, config: DetectorConfig) -> Detector:
        """A detector sharing this one's model but with other thresholds / limits (per-run overrides).

        The model and its text limit are fixed when it loads; thresholds, limits, NMS and input size are
        read per call, so they may differ.
        """
        fixed = ("model", "max_text_tokens")
        changed = [f for f in fixed if getattr(config, f) != getattr(self.config, f)]
        if changed:
            raise ConfigError(f"detector setting(s) {', '.join(changed)} cannot change per run; load another "
                              f"Detector")
        config.validate()
        view = copy.copy(self)
        view.config = config
        return view

    def detect(self, image: np.ndarray, prompt: Prompt | str, frame_index: int | None = None) -> Detections:
        """Detections of ``prompt``'s classes in ``image`` (RGB uint8 H x W x 3), highest score first.

        ``frame_index`` is part of the pipeline's detector protocol; Grounding DINO does not need it.

        Boxes are xyxy pixels clipped to the frame; zero-area boxes are dropped; ``class_ids`` index
        ``prompt.classes``. Thresholds, per-class NMS and the detection cap come from the config.
        ``frame_index`` (the source's frame number, passed by the pipeline) is unused here: Grounding DINO
        looks at pixels only; it is part of the detector protocol for detectors that need it.
        """
        image = _check_image(image)
        prompt = parse_prompt(prompt)
        h, w = image.shape[:2]
        if self.family == "owl":
            boxes, scores, class_ids = self._detect_owl(image, prompt)
        else:
            boxes, scores, class_ids = self._detect_grounding(image, prompt)
        boxes[:, 0::2] = boxes[:, 0::2].clamp(0, w)
        boxes[:, 1::2] = boxes[:, 1::2].clamp(0, h)
        valid = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        boxes, scores, class_ids = boxes[valid], scores[valid], class_ids[valid]
        if self.config.nms_iou is not None:
            order = batched_nms(boxes, scores, class_ids, self.config.nms_iou)
        else:
            order = torch.sort(scores, descending=True, stable=True).indices
        order = order[: self.config.max_detections]
        ids = class_ids[order].cpu().numpy()
        return Detections(boxes[order].cpu().numpy(), scores[order].cpu().numpy(), ids,
                          [prompt.classes[i] for i in ids])

    def _detect_grounding(self, image: np.ndarray, prompt: Prompt
                          ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        from transformers.image_transforms import center_to_corners_format

        h, w = image.shape[:2]
        pixels = self.image_inputs(image)
        self._check_input_size(pixels)
        scale = torch.tensor([[w, h, w, h]], dtype=torch.float32)
        all_boxes, all_scores, all_ids = [], [], []
        for chunk in self.plan(prompt):
            text = self.processor.tokenizer(chunk.text, return_tensors="pt", return_token_type_ids=True)
            if tuple(text["input_ids"][0].tolist()) != chunk.input_ids:
                raise ModelError(f"detector tokenizer gave different ids for {chunk.text!r} on a second call")
            logits, pred_boxes = self._forward({**pixels, **dict(text)})
            logits, pred_boxes = logits.cpu(), pred_boxes.cpu()
            probs = torch.sigmoid(logits)  # queries x max_text_len (padding is -inf -> 0)
            scores = probs.max(dim=-1).values
            keep = scores > self.config.box_threshold
            probs, scores = probs[keep], scores[keep]
            boxes = center_to_corners_format(pred_boxes[keep]) * scale
            per_class = torch.stack([probs[:, list(pos)].max(dim=-1).values for pos in chunk.positions], dim=1)
            best, local = per_class.max(dim=1)
            named = best > self.config.text_threshold  # a box whose words are all below it names no class
            global_ids = torch.as_tensor(chunk.class_indices, dtype=torch.long)[local]
            all_boxes.append(boxes[named])
            all_scores.append(scores[named])
            all_ids.append(global_ids[named])
        return torch.cat(all_boxes), torch.cat(all_scores), torch.cat(all_ids)

    def _detect_owl(self, image: np.ndarray, prompt: Prompt) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        from transformers.image_transforms import center_to_corners_format

        h, w = image.shape[:2]
        enc = self.processor(text=[list(prompt.classes)], images=image, return_tensors="pt")
        logits, pred_boxes = self._forward(dict(enc))
        logits, pred_boxes = logits.cpu(), pred_boxes.cpu()
        best = logits.max(dim=-1)
        scores, class_ids = torch.sigmoid(best.values), best.indices
        keep = scores > self.config.box_threshold
        if self.model_type == "owlv2":  # OWLv2 pads to a square before resizing: boxes are relative to it
            sx = sy = float(max(h, w))
        else:
            sx, sy = float(w), float(h)
        boxes = center_to_corners_format(pred_boxes[keep]) * torch.tensor([[sx, sy, sx, sy]])
        return boxes, scores[keep], class_ids[keep]
