"""The stateless SAM 2 wrapper: weights, config, preprocessing and every call into transformers' internals.

Why model and session apart (the pattern of transformers' inference session and Cutie's InferenceCore):
one loaded model serves any number of runs at once, each with its own :class:`~.sam2_session.Sam2Session`
(objects, prompts, memory bank, pruning). Nothing in this class changes after construction, so two
sessions can interleave frames freely.

The SAM heads and memory encoder of transformers' ``Sam2VideoModel`` are called directly (prompt encoder,
mask decoder, ``_encode_new_memory``, ``_process_object_pointers``, memory attention) because its
``_single_frame_forward`` selects the best multimask output with indices that only broadcast for a batch
of one, and its streaming loop cannot stack the object pointers of box prompts. Those private calls live
here and nowhere else, so an API change in transformers is absorbed in one module. The semantics they
implement are Meta's ``SAM2VideoPredictor``'s; see :mod:`.sam2_session` for the list.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from transformers import Sam2VideoModel

from ..config import PropagatorConfig
from ..errors import ModelError
from ..ops.cpu_attention import use_blocked_memory_attention
from ..ops.postprocess import postprocess_mask_scores
from ..upload import upload_small
from .loading import autocast, from_pretrained, resolve_device, resolve_dtype
from .position_cache import cache_position_encodings
from .sam2_checks import sam2_size_problems
from .sam2_compile import compile_sam2
from .sam2_memory import Buckets, ObjectMemories, attend_objects, masked_memory_attention
from .sam2_preprocess import check_frame, preprocess_frame_tensor
from .sam2_types import MemoryPlan

MASK_OUT_SCALE, MASK_OUT_BIAS = 20.0, -10.0  # SAM 2's logits for a mask used as output
NO_OBJ_SCORE = -1024.0  # SAM 2's mask logit where the object is predicted absent
#: boxes decoded together by segment_boxes: the mask decoder's temporaries grow with the batch
BOXES_PER_DECODE = 16


class Sam2Model:
    """A loaded ``Sam2VideoModel`` on its device and precision, with SAM 2's per-frame building blocks."""

    def __init__(self, model: Sam2VideoModel, config: PropagatorConfig | None = None, *,
                 device: str | torch.device = "auto", dtype: str = "auto") -> None:
        self.config = config if config is not None else PropagatorConfig()
        self.config.validate()
        problems = sam2_size_problems(model.config)
        if problems:
            raise ModelError("SAM 2 config has inconsistent image sizes: " + "; ".join(problems))
        self.device = resolve_device(device)
        self.amp_dtype = resolve_dtype(dtype, self.device)
        self.model = model.to(self.device).eval()
        self.position_cache = cache_position_encodings(self.model)  # constant per shape: built once, not per frame
        if self.device.type == "cpu" and self.amp_dtype == torch.bfloat16:
            use_blocked_memory_attention(self.model)  # bf16 matmuls instead of CPU SDPA (ops.cpu_attention)
        mc = model.config
        self.image_size = int(mc.image_size[0] if isinstance(mc.image_size, (list, tuple)) else mc.image_size)
        self.low_res_size: tuple[int, int] = tuple(model.prompt_encoder.mask_input_size)  # type: ignore[assignment]
        self.num_maskmem = int(mc.num_maskmem)
        self.max_object_pointers = int(mc.max_object_pointers_in_encoder)
        # the batched memory-attention core (sam2_memory); compiled with the image encoder under config.compile
        self._attention_core = compile_sam2(self.model) if self.config.compile else masked_memory_attention

    @classmethod
    def from_pretrained(cls, name_or_path: str, config: PropagatorConfig | None = None, device: str = "auto",
                        dtype: str = "auto") -> Sam2Model:
        """Load a ``Sam2VideoModel`` from a hub id, a save_pretrained directory or the offline HF cache;
        a Meta-format ``.pt`` checkpoint (facebookresearch/sam2) is converted on load (``convert``)."""
        config = config if config is not None else PropagatorConfig(model=str(name_or_path))
        if str(name_or_path).endswith(".pt"):
            from .convert import load_meta_checkpoint

            model = load_meta_checkpoint(name_or_path)
        else:
            model = from_pretrained(Sam2VideoModel, name_or_path, kind="SAM 2 video model")
        if not isinstance(model, Sam2VideoModel):  # pragma: no cover - transformers returns the class asked
            raise ModelError(f"{name_or_path} is not a SAM 2 video model")
        return cls(model, config, device=device, dtype=dtype)

    @property
    def mask_threshold(self) -> float:
        return float(self.config.mask_threshold)

    def new_session(self, height: int, width: int, num_frames: int | None = None, *, prune: bool = True,
                    reverse: bool = False) -> Any:
        """A fresh per-video session on this model (see :class:`~.sam2_session.Sam2Session`)."""
        from .sam2_session import Sam2Session

        return Sam2Session(self, height, width, num_frames, prune=prune, reverse=reverse)

    @property
    def pointer_dim(self) -> int:
        """Length of SAM 2's object pointer (the mask decoder's hidden size: 256 in the released models)."""
        return int(self.model.no_object_pointer.shape[-1])

    def max_pointers(self, num_frames: int | None) -> int:
        """Object pointers SAM 2 attends: the encoder's cap, or the video length when shorter (Meta)."""
        cap = self.max_object_pointers
        return cap if num_frames is None else min(num_frames, cap)

    # ------------------------------------------------------------------ image encoder
    def encode_image(self, image: np.ndarray, height: int, width: int) -> tuple[tuple[torch.Tensor, ...],
                                                                             torch.Tensor]:
        """Image encoder once on an RGB uint8 frame: (FPN levels flattened HW x 1 x C, top positional enc.)."""
        check_frame(image, height, width)
        pixels = preprocess_frame_tensor(image, self.image_size, self.device)  # CUDA: PIL-exact kernels
        with autocast(self.device, self.amp_dtype):
            out = self.model.get_image_features(pixels, return_dict=True)
        feats = tuple(f.float() for f in out.fpn_hidden_states)
        return feats, out.fpn_position_encoding[-1].float()

    def hr_features(self, feats: tuple[torch.Tensor, ...], batch: int) -> list[torch.Tensor]:
        sizes = self.model.backbone_feature_sizes
        return [f.permute(1, 2, 0).reshape(1, f.shape[2], *s).expand(batch, -1, -1, -1)
                for f, s in zip(feats[:-1], sizes[:-1])]

    def top_feature(self, feats: tuple[torch.Tensor, ...], extra: torch.Tensor | None = None) -> torch.Tensor:
        top = feats[-1] if extra is None else feats[-1] + extra
        h, w = self.model.backbone_feature_sizes[-1]
        return top.permute(1, 2, 0).reshape(1, self.model.hidden_dim, h, w)

    # ------------------------------------------------------------------ SAM heads
    def decode(self, feats: tuple[torch.Tensor, ...], pix_feat: torch.Tensor, *,
               points: torch.Tensor | None = None, labels: torch.Tensor | None = None,
               masks: torch.Tensor | None = None, multimask: bool,
               need_high: bool = True) -> tuple[torch.Tensor, ...]:
        """SAM heads on ``pix_feat`` (B x C x h x w), one object per batch row (Meta's _forward_sam_heads).

        Returns low-res (B x 1 x h x w), high-res (B x 1 x S x S; None unless ``need_high``), pointer (B x C),
        score (B x 1 x 1), iou (B) - all float32. Only the selected mask is upsampled (bilinear upsampling is
        per channel, so this equals selecting from upsampled multimask outputs).
        """
        model = self.model
        b = pix_feat.shape[0]
        if points is None:  # no prompt: one padding point labelled -1, as both implementations do
            points = torch.zeros(b, 1, 1, 2, device=self.device)
            labels = -torch.ones(b, 1, 1, dtype=torch.int32, device=self.device)
        with autocast(self.device, self.amp_dtype):
            sparse, dense = model.prompt_encoder(input_points=points, input_labels=labels, input_boxes=None,
                                                 input_masks=masks)
            image_pe = model.get_image_wide_positional_embeddings().repeat(b, 1, 1, 1)
            low_multi, ious, tokens, obj_logits = model.mask_decoder(
                image_embeddings=pix_feat, image_positional_embeddings=image_pe, sparse_prompt_embeddings=sparse,
                dense_prompt_embeddings=dense, multimask_output=multimask,
                high_resolution_features=self.hr_features(feats, b))
        low_multi, ious, tokens = low_multi[:, 0].float(), ious[:, 0].float(), tokens[:, 0].float()
        score = obj_logits.float().reshape(b, 1, 1)
        appearing = score > 0
        low_multi = torch.where(appearing[..., None], low_multi, torch.full_like(low_multi, NO_OBJ_SCORE))
        token = tokens[:, 0]
        if multimask:
            best = torch.argmax(ious, dim=-1)
            rows = torch.arange(b, device=best.device)
            low, iou = low_multi[rows, best][:, None], ious[rows, best]
            if tokens.shape[1] > 1:
                token = tokens[rows, best]
        else:
            low, iou = low_multi[:, :1], ious[:, 0]
        high = (F.interpolate(low, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False)
                if need_high else None)
        with autocast(self.device, self.amp_dtype):
            pointer = model.object_pointer_proj(token).float()
        lam = appearing.reshape(b, 1).float()
        pointer = lam * pointer + (1 - lam) * model.no_object_pointer.float()
        return low, high, pointer, score, iou

    @property
    def track_multimask(self) -> bool:
        cfg = self.model.config
        return bool(cfg.multimask_output_in_sam and cfg.multimask_output_for_tracking
                    and cfg.multimask_min_pt_num <= 0 <= cfg.multimask_max_pt_num)

    @staticmethod
    def clip_boxes(arr: np.ndarray, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
        """Boxes clipped to the frame, and the indices of those with a finite, positive area."""
        finite = np.isfinite(arr).all(axis=1)
        c = np.nan_to_num(arr).copy()
        c[:, [0, 2]] = c[:, [0, 2]].clip(0, width)
        c[:, [1, 3]] = c[:, [1, 3]].clip(0, height)
        keep = np.flatnonzero(finite & (c[:, 2] > c[:, 0]) & (c[:, 3] > c[:, 1])).astype(np.int64)
        return c, keep

    def box_outputs(self, feats: tuple[torch.Tensor, ...], boxes: np.ndarray, height: int, width: int,
                    need_high: bool = False) -> tuple[torch.Tensor, ...]:
        """Initial-conditioning-frame SAM outputs for pixel boxes (Meta: two points labelled 2 and 3)."""
        b = len(boxes)
        scale = torch.tensor([width, height] * 2, dtype=torch.float32)
        pts = torch.as_tensor(boxes, dtype=torch.float32) / scale * self.image_size
        pts = upload_small(pts.reshape(b, 1, 2, 2), self.device)
        labels = upload_small(torch.tensor([2, 3], dtype=torch.int32), self.device).reshape(1, 1, 2).expand(b, 1, 2)
        cfg = self.model.config
        multimask = bool(cfg.multimask_output_in_sam and cfg.multimask_min_pt_num <= 2 <= cfg.multimask_max_pt_num)
        pix = self.top_feature(feats, self.model.no_memory_embedding).expand(b, -1, -1, -1)
        return self.decode(feats, pix, points=pts, labels=labels, multimask=multimask, need_high=need_high)

    def segment_boxes(self, feats: tuple[torch.Tensor, ...], boxes: np.ndarray, height: int, width: int
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, np.ndarray]:
        """Post-processed low-res logits, iou and object scores for the usable boxes, their object pointers
        (K x C: what SAM 2 would store for the box as a prompt; re-identification compares them with lost
        tracks' pointers), and their indices."""
        clipped, keep = self.clip_boxes(boxes, height, width)
        k = len(keep)
        if k == 0:
            h, w = self.low_res_size
            z = torch.zeros(0, device=self.device)
            return (torch.zeros(0, 1, h, w, device=self.device), z, z.clone(),
                    torch.zeros(0, self.pointer_dim, device=self.device), keep)
        steps = [self.box_outputs(feats, clipped[keep[i:i + BOXES_PER_DECODE]], height, width)
                 for i in range(0, k, BOXES_PER_DECODE)]
        low, pointer, score, iou = (torch.cat([o[j] for o in steps]) for j in (0, 2, 3, 4))
        return self.postprocess(low), iou, score.reshape(-1), pointer, keep

    def mask_output(self, feats: tuple[torch.Tensor, ...],
                    mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """A mask prompt used as the output (Meta's add_new_mask + _use_mask_as_output): low, pointer, score."""
        s = self.image_size
        m = mask.to(self.device, torch.float32)[None, None]
        if m.shape[-2:] != (s, s):
            m = (F.interpolate(m, size=(s, s), mode="bilinear", align_corners=False, antialias=True) >= 0.5).float()
        high = m * MASK_OUT_SCALE + MASK_OUT_BIAS
        low = F.interpolate(high, size=self.low_res_size, mode="bilinear", align_corners=False, antialias=True)
        _, _, pointer, _, _ = self.decode(feats, self.top_feature(feats), masks=self.model.mask_downsample(m),
                                          multimask=False, need_high=False)
        appearing = (m.flatten(1) > 0).any(dim=1, keepdim=True).float()  # 1 x 1
        score = (MASK_OUT_SCALE * appearing + MASK_OUT_BIAS).reshape(1, 1, 1)
        pointer = appearing * pointer + (1 - appearing) * self.model.no_object_pointer.float()
        return low, pointer, score

    # ------------------------------------------------------------------ memory
    def attend_all(self, feats: tuple[torch.Tensor, ...], pos: torch.Tensor, plans: list[MemoryPlan],
                   pos_mem: torch.Tensor, max_pointers: int) -> torch.Tensor:
        """Memory attention for every object in one call, memories padded to common slots: B x C x h x w.

        Under ``config.compile`` the slots are fixed at the most the session's caps allow (``Buckets``), so
        the compiled graph is reused from frame to frame.
        """
        objects = [ObjectMemories([(t, m.maskmem) for t, m in mems], [(d, m.pointer) for d, m in ptrs])
                   for mems, ptrs in plans]
        buckets = None
        if self.config.compile:
            cap = self.config.max_conditioning_frames
            buckets = Buckets(mask_slots=cap + self.num_maskmem - 1, pointer_slots=cap + max_pointers - 1)
        return attend_objects(self.model, feats[-1], pos, pos_mem, objects, max_pointers,
                              amp=lambda: autocast(self.device, self.amp_dtype), core=self._attention_core,
                              buckets=buckets)

    def attend(self, feats: tuple[torch.Tensor, ...], pos: torch.Tensor, plans: list[MemoryPlan],
               pos_mem: torch.Tensor, max_pointers: int) -> torch.Tensor:
        """transformers' own memory attention for objects whose memories sit at the same temporal positions
        (``batch_objects=False`` passes one object at a time: the reference ``attend_all`` is tested against)."""
        model = self.model
        b = len(plans)
        mems0, ptrs0 = plans[0]
        memories, mem_pos = [], []
        for j, (t_pos, _) in enumerate(mems0):
            memories.append(torch.cat([p[0][j][1].maskmem for p in plans], dim=1))
            tpos = model.memory_temporal_positional_encoding[t_pos - 1]
            mem_pos.append((pos_mem + tpos).expand(-1, b, -1))
        n_ptr_tokens = 0
        if ptrs0:
            tokens = [torch.cat([p[1][j][1].pointer for p in plans], dim=0) for j in range(len(ptrs0))]
            ptr, ptr_pos = model._process_object_pointers([d for d, _ in ptrs0], tokens, max_pointers, b,
                                                          model.hidden_dim, self.device)
            memories.append(ptr)
            mem_pos.append(ptr_pos)
            n_ptr_tokens = ptr.shape[0]
        memory = torch.cat(memories, dim=0).float()
        memory_pos = torch.cat(mem_pos, dim=0).float()
        h, w = model.backbone_feature_sizes[-1]
        with autocast(self.device, self.amp_dtype):
            fused = model.memory_attention(
                current_vision_features=feats[-1].expand(-1, b, -1),
                current_vision_position_embeddings=pos.expand(-1, b, -1),
                memory=memory, memory_posision_embeddings=memory_pos, num_object_pointer_tokens=n_ptr_tokens)
        return fused.float().reshape(b, h * w, model.hidden_dim).transpose(1, 2).reshape(b, model.hidden_dim, h, w)

    def encode_memories(self, feats: tuple[torch.Tensor, ...], masks: torch.Tensor, scores: torch.Tensor,
                        from_prompt: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """Memory features (HW x B x C_mem) and their positional encoding for B objects' high-res masks."""
        b = masks.shape[0]
        with autocast(self.device, self.amp_dtype):
            maskmem, pos = self.model._encode_new_memory(
                current_vision_feats=feats[-1].expand(-1, b, -1), pred_masks_high_res=masks,
                object_score_logits=scores, is_mask_from_pts=from_prompt)
        return maskmem, pos

    def postprocess(self, low: torch.Tensor) -> torch.Tensor:
        """SAM 2's hole filling / sprinkle removal on low-res logits (ops.postprocess)."""
        c = self.config
        return postprocess_mask_scores(low, c.fill_hole_area, c.max_sprinkle_area, c.mask_threshold)
