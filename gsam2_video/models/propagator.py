"""Streaming SAM 2 session on transformers' ``Sam2VideoModel``, with memory bounded to what SAM 2 attends.

Why a session of our own: transformers' ``Sam2VideoInferenceSession`` keeps every frame's outputs and
attends to every prompted frame, so memory grows with the video, and its ``forward`` differs from Meta's
``SAM2VideoPredictor`` in ways that change masks (listed below). This module keeps the model code from
transformers (image encoder, memory attention, mask decoder, memory encoder are called as they are) and
owns the bookkeeping around it: which memories and object pointers each object attends, what is kept,
and how prompts become memories, following Meta's semantics.

API (stable; the pipeline and the parity test code against it)
----------------------------------------------------------------
::

    prop = Sam2Propagator.from_pretrained("facebook/sam2.1-hiera-tiny", PropagatorConfig(), device="auto",
                                          dtype="auto")   # hub id, save_pretrained dir, HF cache, or a Meta
                                                          # .pt; or Sam2Propagator(model, config) when built
    prop.reset(height, width, num_frames=None)   # new video; frees everything. num_frames: total frame count
                                                 # when known (offline) - Meta normalises object-pointer
                                                 # positions by min(num_frames, 16); None = streaming (16)
    for each frame (per-frame call order: encode -> propagate -> [segment_boxes, add_object, refresh,
                    remove]* -> commit):
        feats = prop.encode(rgb_uint8_hxwx3, frame_idx)   # image encoder runs exactly once per frame
        tracked = prop.propagate(feats)           # track every live object on this frame (batched); returns
                                                  # their FrameOutput on this frame (before any prompt)
        bm = prop.segment_boxes(feats, boxes_xyxy) # BoxMasks(logits KxHxW, low_res Kx1xhxw, iou_scores K,
                                                   #          object_scores K, keep K input-row indices)
        prop.add_object(obj_id, feats, mask=HxW bool)   # or box=(x1, y1, x2, y2) in pixels
        prop.refresh(obj_id, feats, mask)          # new conditioning mask for a live object
        prop.remove(obj_id)
        out = prop.commit(feats)                   # FrameOutput(frame_idx, obj_ids, logits NxHxW float32,
                                                   #             low_res Nx1xhxw, object_scores N)
    prop.backfill(obj_id, feats_at_birth, mask, past_newest_first) -> list of HxW logits, newest first
    prop.held_bytes(); prop.obj_ids; prop.prune (False = unbounded reference session, nothing dropped)

Mask prompts are H x W at video resolution, numpy or torch; bool as is, anything else thresholded at > 0
(so a row of ``BoxMasks.logits`` can be passed directly). ``FrameFeatures`` hold the frame's image
features (about 17 MB at 1024 px in fp32; the positional encoding is one tensor shared between frames);
the session keeps none of them after ``commit``, so an offline caller that wants ``backfill`` buffers them.

``frame_idx`` is the source's index (strictly increasing, gaps allowed with a stride). SAM 2 itself sees
the dense sequence of encoded frames (``FrameFeatures.step``), exactly as Meta's predictor sees a video
whose frames were subsampled on disk. Every output logit is at video resolution, after post-processing
(``fill_hole_area`` / ``max_sprinkle_area``); ``low_res`` are the post-processed image_size/4 logits that
Meta's predictor stores as ``pred_masks``. ``object_scores`` are SAM 2's object-score logits (> 0 means
the object is visible).

Semantics matched to Meta's SAM2VideoPredictor (sam2 1.1.0)
-----------------------------------------------------------
* Preprocessing: PIL bicubic resize of the uint8 frame, /255, ImageNet mean/std (``sam2_preprocess``).
* Prompts: a box is the two corner points with labels 2 and 3 (as ``add_new_points_or_box``); a mask is
  resized to image_size with bilinear+antialias and thresholded at 0.5 (as ``add_new_mask``) and used as
  the output directly; its object pointer comes from the mask decoder with ``multimask_output=False``
  (transformers' ``_use_mask_as_output`` uses True, which picks a different output token).
* A prompted object's memory is encoded from its post-processed low-res mask upsampled to image_size and
  binarised (Meta's ``propagate_in_video_preflight``, ``is_mask_from_pts=True``); a tracked object's from
  its raw high-res logits through a sigmoid. The flag is per object: transformers' ``_batch_encode_memories``
  uses one flag for all objects of a frame, which binarises tracked objects' memories on any prompted frame.
* Object-pointer temporal positions are normalised by ``min(num_frames, 16) - 1`` as Meta does (transformers'
  streaming path always uses 15); with ``num_frames=None`` this is 15, i.e. a video of >= 16 frames.
* Hole filling runs on the low-res logits before upsampling and before prompted memories are encoded
  (Meta applies it inside ``_run_single_frame_inference``); tracked memories use the unfilled logits.
* The model config's image-size fields must all agree (checked on load; see ``random_sam2``).
* A refresh is a new conditioning frame, i.e. Meta's ``add_new_mask`` on a frame the object has not been
  tracked on yet (prompts registered when the stream reaches them, propagation resumed from there).

Also worked around here (transformers 5.x): ``_single_frame_forward`` selects the best multimask output
with indices that only broadcast for a batch of one, so the SAM heads call the prompt encoder and mask
decoder directly; its own streaming loop stores 1 x 1 x C object pointers for box prompts and then cannot
stack them (we keep our own state).

What is held (``prune=True``)
-----------------------------
Per object: its conditioning frames (memory features, object pointer, score), capped at
``config.max_conditioning_frames`` = the first prompt plus the most recent ones; an evicted conditioning
frame is downgraded to an ordinary memory frame (as Meta does when it clears a frame's prompts) so the
window below still sees it. Non-conditioning frames: memory features for the last ``num_maskmem - 1``
frames, object pointers for the last ``min(num_frames, 16) - 1`` frames - exactly what SAM 2 reads on the
next frame - plus one copy of the memory positional encoding. Nothing else survives ``commit``, so held
memory is O(objects x window) and results equal the unbounded session's as long as no object has more
conditioning frames than the cap (beyond it the cap is a deliberate approximation).

Outputs are ordinary tensors (the session runs under ``torch.no_grad``, not inference mode), so callers
may modify them in place.

Batching: memory attention runs once per frame for all tracked objects, each object's memories padded to
common slots and the padding masked out (``sam2_memory``; objects born on different frames attend different
numbers of memories at different positions); the SAM heads (prompt encoder + mask decoder) run once for all
tracked objects, and the memory encoder once per kind (prompted / tracked). ``config.batch_objects=False``
runs transformers' memory attention and the SAM heads per object; results agree to float rounding (4.7e-7
on the reduced hiera-tiny with staggered births, tests/test_batched_memory.py). ``config.compile``
compiles the image encoder and the batched memory attention (``sam2_compile``), with memory slots fixed
at the most the caps allow so shapes repeat.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from transformers import Sam2VideoModel

from ..config import PropagatorConfig
from ..errors import ModelError
from ..ops.cpu_attention import use_blocked_memory_attention
from ..ops.postprocess import postprocess_mask_scores
from .loading import autocast, from_pretrained, resolve_device, resolve_dtype
from .random_sam2 import sam2_size_problems
from .sam2_compile import compile_sam2
from .sam2_memory import Buckets, ObjectMemories, attend_objects, masked_memory_attention
from .sam2_preprocess import check_frame, preprocess_frame

_MASK_OUT_SCALE, _MASK_OUT_BIAS = 20.0, -10.0  # SAM 2's logits for a mask used as output
_NO_OBJ_SCORE = -1024.0  # SAM 2's mask logit where the object is predicted absent


@dataclass(frozen=True, eq=False)
class FrameFeatures:
    """Image-encoder output for one frame, shared by propagation, box->mask and backfill.

    ``feats``: the three FPN levels flattened to HW x 1 x C (levels 0 and 1 already projected by the mask
    decoder's conv_s0/conv_s1, as both implementations precompute); ``pos``: the top level's positional
    encoding; ``step``: the frame's position in the session's dense frame sequence.
    """

    frame_idx: int
    step: int
    session: int
    height: int
    width: int
    feats: tuple[torch.Tensor, ...]
    pos: torch.Tensor

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (*self.feats, self.pos))


#: boxes decoded together by segment_boxes: 100 boxes at once peaked 4.4 GiB above the model at 1024 px
BOXES_PER_DECODE = 16


def to_video_resolution(low: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """K x 1 x h x w low-resolution logits -> K x H x W at the video's size (bilinear, as Meta's predictor)."""
    return F.interpolate(low, size=(height, width), mode="bilinear", align_corners=False)[:, 0]


@dataclass
class BoxMasks:
    """Masks for detector boxes on one frame; rows follow ``keep`` (indices of the input boxes used).

    Only the low-resolution logits are stored: at video resolution a keyframe's boxes would be K x H x W
    floats at once (100 boxes at 1080p: 830 MB), so ``masks`` upsamples and thresholds a few boxes at a time
    and ``logits`` builds the full float tensor only when asked.
    """

    low_res: torch.Tensor  # K x 1 x h x w, post-processed
    iou_scores: torch.Tensor  # K
    object_scores: torch.Tensor  # K
    keep: np.ndarray  # K int64
    height: int
    width: int

    def __len__(self) -> int:
        return int(self.keep.shape[0])

    @property
    def logits(self) -> torch.Tensor:
        """K x H x W float32 logits at video resolution (allocated on each access)."""
        if not len(self):
            return torch.zeros(0, self.height, self.width, device=self.low_res.device)
        return to_video_resolution(self.low_res, self.height, self.width)

    def masks(self, threshold: float = 0.0, boxes_per_step: int = 8) -> torch.Tensor:
        """K x H x W bool masks at video resolution, equal to ``logits > threshold`` without its peak memory."""
        out = torch.empty((len(self), self.height, self.width), dtype=torch.bool, device=self.low_res.device)
        for i in range(0, len(self), boxes_per_step):
            logits = to_video_resolution(self.low_res[i:i + boxes_per_step], self.height, self.width)
            torch.gt(logits, threshold, out=out[i:i + boxes_per_step])
        return out


@dataclass
class FrameOutput:
    """Result of :meth:`Sam2Propagator.commit` for one frame; rows follow ``obj_ids``."""

    frame_idx: int
    obj_ids: list[int]
    logits: torch.Tensor  # N x H x W float32
    low_res: torch.Tensor  # N x 1 x h x w float32
    object_scores: torch.Tensor  # N float32


@dataclass
class _Memory:
    """What SAM 2 reads from a past frame of one object."""

    maskmem: torch.Tensor | None  # HW x 1 x C_mem (bfloat16); None once outside the memory window
    pointer: torch.Tensor  # 1 x C
    score: torch.Tensor  # 1 x 1 x 1


@dataclass
class _Pending:
    """One object's output on the frame being processed, until commit."""

    low_res: torch.Tensor  # 1 x 1 x h x w raw logits
    high_res: torch.Tensor | None  # 1 x 1 x S x S raw logits (tracked objects; memory input)
    pointer: torch.Tensor
    score: torch.Tensor
    prompted: bool
    post: torch.Tensor | None = None  # low_res after hole filling / sprinkle removal, computed once


@dataclass
class _Object:
    cond: dict[int, _Memory] = field(default_factory=dict)  # step -> memory, insertion (= prompt) order
    noncond: dict[int, _Memory] = field(default_factory=dict)


def _mask_tensor(mask: np.ndarray | torch.Tensor, height: int, width: int) -> torch.Tensor:
    m = torch.as_tensor(np.asarray(mask) if not isinstance(mask, torch.Tensor) else mask)
    if m.ndim == 3 and m.shape[0] == 1:
        m = m[0]
    if tuple(m.shape) != (height, width):
        raise ModelError(f"mask prompt must be {height}x{width} (H x W at video resolution), got "
                         f"{tuple(m.shape)}")
    return m.detach() if m.dtype == torch.bool else m.detach() > 0  # scores/logits: foreground is > 0


class Sam2Propagator:
    """A streaming SAM 2 video session; see the module docstring for the API and its guarantees."""

    def __init__(self, model: Sam2VideoModel, config: PropagatorConfig | None = None, *,
                 device: str | torch.device = "auto", dtype: str = "auto", prune: bool = True) -> None:
        self.config = config if config is not None else PropagatorConfig()
        self.config.validate()
        problems = sam2_size_problems(model.config)
        if problems:
            raise ModelError("SAM 2 config has inconsistent image sizes: " + "; ".join(problems))
        self.device = resolve_device(device)
        self.amp_dtype = resolve_dtype(dtype, self.device)
        self.model = model.to(self.device).eval()
        if self.device.type == "cpu" and self.amp_dtype == torch.bfloat16:
            use_blocked_memory_attention(self.model)  # bf16 matmuls instead of CPU SDPA (ops.cpu_attention)
        mc = model.config
        self.image_size = int(mc.image_size[0] if isinstance(mc.image_size, (list, tuple)) else mc.image_size)
        self.low_res_size = tuple(model.prompt_encoder.mask_input_size)
        self.num_maskmem = int(mc.num_maskmem)
        self.prune = prune
        self._reverse = False
        # the batched memory-attention core (sam2_memory); compiled with the image encoder under config.compile
        self._attention_core = compile_sam2(self.model) if self.config.compile else masked_memory_attention
        self.reset(0, 0)

    @classmethod
    def from_pretrained(cls, name_or_path: str, config: PropagatorConfig | None = None, device: str = "auto",
                        dtype: str = "auto", prune: bool = True) -> Sam2Propagator:
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
        return cls(model, config, device=device, dtype=dtype, prune=prune)

    # ------------------------------------------------------------------ session
    def reset(self, height: int, width: int, num_frames: int | None = None) -> None:
        """Start a new video of ``height`` x ``width``; all objects and memories are dropped."""
        if num_frames is not None and num_frames < 2:
            raise ModelError(f"num_frames must be >= 2 or None, got {num_frames}")
        self.height, self.width = int(height), int(width)
        self.num_frames = num_frames
        self._session = uuid.uuid4().int  # token tying FrameFeatures to this video
        self._objects: dict[int, _Object] = {}
        self._pending: dict[int, _Pending] = {}
        self._pos_mem: torch.Tensor | None = None  # memory positional encoding (same for every frame/object)
        self._pos_frame: torch.Tensor | None = None  # image positional encoding (same for every frame)
        self._step = -1
        self._last_frame_idx: int | None = None
        self._committed = True

    @property
    def obj_ids(self) -> list[int]:
        """Live object ids in the order they were added (the row order of every output)."""
        return list(self._objects)

    @property
    def max_pointers(self) -> int:
        cap = int(self.model.config.max_object_pointers_in_encoder)
        return cap if self.num_frames is None else min(self.num_frames, cap)

    @property
    def _buckets(self) -> Buckets | None:
        """Fixed memory-attention slots when compiled (shapes repeat); None: pad to the live maximum."""
        if not self.config.compile:
            return None
        cap = self.config.max_conditioning_frames
        return Buckets(mask_slots=cap + self.num_maskmem - 1, pointer_slots=cap + self.max_pointers - 1)

    def held_bytes(self) -> int:
        """Bytes of all tensors held by the session between frames (unique storages)."""
        seen: dict[int, int] = {}

        def add(t: torch.Tensor | None) -> None:
            if t is not None:
                st = t.untyped_storage()
                seen[st.data_ptr()] = st.nbytes()

        for obj in self._objects.values():
            for mem in itertools.chain(obj.cond.values(), obj.noncond.values()):
                add(mem.maskmem), add(mem.pointer), add(mem.score)
        for p in self._pending.values():
            add(p.low_res), add(p.high_res), add(p.pointer), add(p.score), add(p.post)
        add(self._pos_mem)
        return sum(seen.values())

    # ------------------------------------------------------------------ frames
    @torch.no_grad()
    def encode(self, image: np.ndarray, frame_idx: int) -> FrameFeatures:
        """Run the image encoder once on an RGB uint8 frame of the session's size."""
        if self.height <= 0 or self.width <= 0:
            raise ModelError("SAM 2 session has no video size; call reset(height, width) first")
        check_frame(image, self.height, self.width)
        if self._last_frame_idx is not None and frame_idx <= self._last_frame_idx:
            raise ModelError(f"frame index {frame_idx} is not after the previous frame {self._last_frame_idx}")
        if not self._committed and (self._objects or self._pending):
            raise ModelError(f"frame {self._last_frame_idx} was not committed before encoding frame {frame_idx}")
        pixels = preprocess_frame(image, self.image_size).unsqueeze(0).to(self.device)
        with autocast(self.device, self.amp_dtype):
            out = self.model.get_image_features(pixels, return_dict=True)
        feats = tuple(f.float() for f in out.fpn_hidden_states)
        pos = out.fpn_position_encoding[-1].float()
        if self._pos_frame is not None and torch.equal(self._pos_frame, pos):
            pos = self._pos_frame  # a sine encoding of the grid: one copy serves every buffered frame
        self._pos_frame = pos
        self._step += 1
        self._last_frame_idx = int(frame_idx)
        self._committed = False
        self._pending = {}
        return FrameFeatures(int(frame_idx), self._step, self._session, self.height, self.width, feats, pos)

    def _check_current(self, feats: FrameFeatures) -> None:
        if not isinstance(feats, FrameFeatures):
            raise ModelError(f"expected FrameFeatures from encode(), got {type(feats).__name__}")
        if feats.session != self._session or feats.step != self._step or self._committed:
            raise ModelError(f"features of frame {feats.frame_idx} are not the current frame of this session")

    @torch.no_grad()
    def propagate(self, feats: FrameFeatures) -> FrameOutput:
        """Track every live object that has no output on this frame yet (batched where memories align).

        Returns the live objects' current outputs on this frame (what association matches detections
        against); ``commit`` returns the final ones, which differ only for objects prompted after this call.
        """
        self._check_current(feats)
        todo = [oid for oid in self._objects if oid not in self._pending]
        self._track(feats, todo)
        return self._current_output(feats)

    @torch.no_grad()
    def segment_boxes(self, feats: FrameFeatures, boxes: np.ndarray) -> BoxMasks:
        """Masks for xyxy pixel boxes from the prompt encoder + mask decoder on this frame's features."""
        self._check_current_or_past(feats)
        arr = np.asarray(boxes, dtype=np.float64)
        if arr.size == 0:
            arr = arr.reshape(0, 4)
        if arr.ndim != 2 or arr.shape[1] != 4:
            raise ModelError(f"boxes must be N x 4 (x1, y1, x2, y2), got shape {tuple(arr.shape)}")
        clipped, keep = self._clip_boxes(arr)
        k = len(keep)
        h, w = self.low_res_size
        if k == 0:
            z = torch.zeros(0, device=self.device)
            return BoxMasks(torch.zeros(0, 1, h, w, device=self.device), z, z.clone(), keep, self.height, self.width)
        # the mask decoder's temporaries grow with the batch (~44 MB per box at 1024 px): decode in steps
        steps = [self._box_outputs(feats, clipped[keep[i:i + BOXES_PER_DECODE]])
                 for i in range(0, k, BOXES_PER_DECODE)]
        low, score, iou = (torch.cat([o[j] for o in steps]) for j in (0, 3, 4))
        low = self._postprocess(low)
        return BoxMasks(low, iou, score.reshape(-1), keep, self.height, self.width)

    @torch.no_grad()
    def add_object(self, obj_id: int, feats: FrameFeatures, *, mask: np.ndarray | torch.Tensor | None = None,
                   box: Sequence[float] | np.ndarray | None = None) -> None:
        """Add a new object prompted on this frame (a conditioning frame) by a mask or a box."""
        self._check_current(feats)
        obj_id = int(obj_id)
        if obj_id in self._objects:
            raise ModelError(f"object {obj_id} is already tracked; use refresh() to re-prompt it")
        self._pending[obj_id] = self._prompt_output(feats, mask, box)
        self._objects[obj_id] = _Object()

    @torch.no_grad()
    def refresh(self, obj_id: int, feats: FrameFeatures, mask: np.ndarray | torch.Tensor) -> None:
        """Give a live object a new conditioning mask on this frame (replaces its tracked output here)."""
        self._check_current(feats)
        if int(obj_id) not in self._objects:
            raise ModelError(f"cannot refresh object {obj_id}: it is not tracked")
        self._pending[int(obj_id)] = self._prompt_output(feats, mask, None)

    def remove(self, obj_id: int) -> None:
        """Forget an object and everything held for it."""
        if int(obj_id) not in self._objects:
            raise ModelError(f"cannot remove object {obj_id}: it is not tracked")
        del self._objects[int(obj_id)]
        self._pending.pop(int(obj_id), None)

    @torch.no_grad()
    def commit(self, feats: FrameFeatures) -> FrameOutput:
        """Finalise the frame: post-process, encode memories, prune, and return every live object's mask."""
        self._check_current(feats)
        todo = [oid for oid in self._objects if oid not in self._pending]
        if todo:
            self._track(feats, todo)
        out = self._finalise(feats, feats.step)
        self._committed = True
        return out

    # ------------------------------------------------------------------ backfill
    @torch.no_grad()
    def backfill(self, obj_id: int, feats_at_birth: FrameFeatures, mask: np.ndarray | torch.Tensor,
                 past: Sequence[FrameFeatures]) -> list[torch.Tensor]:
        """Propagate a new object backwards from its birth frame through earlier frames (newest first).

        Runs in a temporary session sharing the model (live state untouched): the birth frame is a
        conditioning frame prompted by ``mask``, then each past frame is tracked in reverse time exactly
        as Meta's ``propagate_in_video(reverse=True)`` does. Returns video-res logits per past frame,
        newest first. Equal to a forward session fed the same frames in reverse order.
        """
        for f in (feats_at_birth, *past):
            if not isinstance(f, FrameFeatures) or (f.height, f.width) != (self.height, self.width):
                raise ModelError("backfill needs FrameFeatures of this video from encode()")
        tmp = object.__new__(Sam2Propagator)
        tmp.__dict__.update({k: v for k, v in self.__dict__.items()
                             if k in ("config", "device", "amp_dtype", "model", "image_size", "low_res_size",
                                      "num_maskmem", "prune", "_attention_core")})
        tmp._reverse = True
        tmp.reset(self.height, self.width, self.num_frames)
        n = len(past)
        results: list[torch.Tensor] = []
        for i, f in enumerate([feats_at_birth, *past]):
            step = n - i
            tf = replace(f, step=step, session=tmp._session)
            tmp._step, tmp._committed, tmp._pending = step, False, {}
            if i == 0:
                tmp.add_object(obj_id, tf, mask=mask)
                tmp.commit(tf)
            else:
                results.append(tmp.commit(tf).logits[0])
        return results

    # ------------------------------------------------------------------ internals
    def _check_current_or_past(self, feats: FrameFeatures) -> None:
        if not isinstance(feats, FrameFeatures) or feats.session != self._session:
            raise ModelError("features do not come from this session's encode()")

    def _clip_boxes(self, arr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        finite = np.isfinite(arr).all(axis=1)
        c = np.nan_to_num(arr).copy()
        c[:, [0, 2]] = c[:, [0, 2]].clip(0, self.width)
        c[:, [1, 3]] = c[:, [1, 3]].clip(0, self.height)
        keep = np.flatnonzero(finite & (c[:, 2] > c[:, 0]) & (c[:, 3] > c[:, 1])).astype(np.int64)
        return c, keep

    def _hr_features(self, feats: FrameFeatures, batch: int) -> list[torch.Tensor]:
        sizes = self.model.backbone_feature_sizes
        return [f.permute(1, 2, 0).reshape(1, f.shape[2], *s).expand(batch, -1, -1, -1)
                for f, s in zip(feats.feats[:-1], sizes[:-1])]

    def _top_feature(self, feats: FrameFeatures, extra: torch.Tensor | None = None) -> torch.Tensor:
        top = feats.feats[-1] if extra is None else feats.feats[-1] + extra
        h, w = self.model.backbone_feature_sizes[-1]
        return top.permute(1, 2, 0).reshape(1, self.model.hidden_dim, h, w)

    def _decode(self, feats: FrameFeatures, pix_feat: torch.Tensor, *, points: torch.Tensor | None = None,
                labels: torch.Tensor | None = None, masks: torch.Tensor | None = None,
                multimask: bool, need_high: bool = True) -> tuple[torch.Tensor, ...]:
        """SAM heads on ``pix_feat`` (B x C x h x w), one object per batch row (Meta's _forward_sam_heads).

        Calls transformers' prompt encoder and mask decoder directly: ``_single_frame_forward`` selects
        the best multimask output with indices that only broadcast correctly for a batch of one.
        Returns low-res (B x 1 x h x w), high-res (B x 1 x S x S; None unless ``need_high``), pointer (B x C),
        score (B x 1 x 1), iou (B) - all float32. Only the selected mask is upsampled (bilinear upsampling is
        per channel, so this equals selecting from upsampled multimask outputs): upsampling all of them for
        100 boxes at 1024 px would allocate ~1.2 GiB per keyframe for nothing.
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
                high_resolution_features=self._hr_features(feats, b))
        low_multi, ious, tokens = low_multi[:, 0].float(), ious[:, 0].float(), tokens[:, 0].float()
        score = obj_logits.float().reshape(b, 1, 1)
        appearing = score > 0
        low_multi = torch.where(appearing[..., None], low_multi, torch.full_like(low_multi, _NO_OBJ_SCORE))
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

    def _box_outputs(self, feats: FrameFeatures, boxes: np.ndarray,
                     need_high: bool = False) -> tuple[torch.Tensor, ...]:
        """Initial-conditioning-frame SAM outputs for pixel boxes (Meta: two points labelled 2 and 3)."""
        b = len(boxes)
        scale = torch.tensor([self.width, self.height] * 2, dtype=torch.float32)
        pts = torch.as_tensor(boxes, dtype=torch.float32) / scale * self.image_size
        pts = pts.reshape(b, 1, 2, 2).to(self.device)
        labels = torch.tensor([2, 3], dtype=torch.int32, device=self.device).reshape(1, 1, 2).expand(b, 1, 2)
        cfg = self.model.config
        multimask = bool(cfg.multimask_output_in_sam and cfg.multimask_min_pt_num <= 2 <= cfg.multimask_max_pt_num)
        pix = self._top_feature(feats, self.model.no_memory_embedding).expand(b, -1, -1, -1)
        return self._decode(feats, pix, points=pts, labels=labels, multimask=multimask, need_high=need_high)

    def _prompt_output(self, feats: FrameFeatures, mask: Any, box: Any) -> _Pending:
        if (mask is None) == (box is None):
            raise ModelError("a SAM 2 prompt needs exactly one of mask= or box=")
        if box is not None:
            arr = np.asarray(box, dtype=np.float64).reshape(-1)
            if arr.shape != (4,):
                raise ModelError(f"box prompt must be (x1, y1, x2, y2), got {arr.tolist()}")
            clipped, keep = self._clip_boxes(arr.reshape(1, 4))
            if len(keep) == 0:
                raise ModelError(f"box prompt {arr.tolist()} has zero area inside the {self.width}x{self.height} frame")
            low, _, pointer, score, _ = self._box_outputs(feats, clipped)
            return _Pending(low, None, pointer, score, prompted=True)
        m = _mask_tensor(mask, self.height, self.width)
        return self._mask_output(feats, m)

    def _mask_output(self, feats: FrameFeatures, mask: torch.Tensor) -> _Pending:
        """A mask prompt used as the output (Meta's add_new_mask + _use_mask_as_output)."""
        s = self.image_size
        m = mask.to(self.device, torch.float32)[None, None]
        if m.shape[-2:] != (s, s):
            m = (F.interpolate(m, size=(s, s), mode="bilinear", align_corners=False, antialias=True) >= 0.5).float()
        high = m * _MASK_OUT_SCALE + _MASK_OUT_BIAS
        low = F.interpolate(high, size=self.low_res_size, mode="bilinear", align_corners=False, antialias=True)
        _, _, pointer, _, _ = self._decode(feats, self._top_feature(feats), masks=self.model.mask_downsample(m),
                                           multimask=False, need_high=False)
        appearing = (m.flatten(1) > 0).any(dim=1, keepdim=True).float()  # 1 x 1
        score = (_MASK_OUT_SCALE * appearing + _MASK_OUT_BIAS).reshape(1, 1, 1)
        pointer = appearing * pointer + (1 - appearing) * self.model.no_object_pointer.float()
        return _Pending(low, None, pointer, score, prompted=True)

    def _memory_plan(self, obj: _Object, step: int) -> tuple[list[tuple[int, _Memory]], list[tuple[int, _Memory]]]:
        """(t_pos, memory) entries and (temporal offset, memory) pointer entries SAM 2 attends at ``step``."""
        sign = -1 if self._reverse else 1
        mems: list[tuple[int, _Memory]] = [(0, m) for m in obj.cond.values()]
        for t_rel in range(self.num_maskmem - 1, 0, -1):
            prev = obj.noncond.get(step - sign * t_rel)
            if prev is not None and prev.maskmem is not None:
                mems.append((t_rel, prev))
        ptrs: list[tuple[int, _Memory]] = [((step - c) * sign, m) for c, m in obj.cond.items()
                                           if (c >= step if self._reverse else c <= step)]
        for d in range(1, self.max_pointers):
            ref = step - sign * d
            if ref < 0 or (self.num_frames is not None and ref >= self.num_frames):
                break
            prev = obj.noncond.get(ref)
            if prev is not None:
                ptrs.append((d, prev))
        return mems, ptrs

    def _track(self, feats: FrameFeatures, obj_ids: list[int]) -> None:
        """Memory-conditioned SAM outputs for objects not prompted on this frame, batched over objects."""
        plans = {oid: self._memory_plan(self._objects[oid], feats.step) for oid in obj_ids}
        plans = {oid: p for oid, p in plans.items() if p[0]}  # objects added this frame have no memory yet
        if not plans:
            return
        order = list(plans)
        if self.config.batch_objects:  # one memory-attention call for all (sam2_memory pads and masks)
            pix = self._attend_all(feats, [plans[o] for o in order])
            low, high, pointer, score, _ = self._decode(feats, pix, multimask=self._track_multimask)
        else:  # the reference path: transformers' memory attention and the SAM heads one object at a time
            pix = torch.cat([self._attend(feats, [plans[o]]) for o in order])
            outs = [self._decode(feats, pix[i:i + 1], multimask=self._track_multimask) for i in range(len(order))]
            low, high, pointer, score = (torch.cat([o[k] for o in outs]) for k in range(4))
        for i, oid in enumerate(order):
            self._pending[oid] = _Pending(low[i:i + 1], high[i:i + 1], pointer[i:i + 1], score[i:i + 1], False)

    def _attend_all(self, feats: FrameFeatures, plans: list[Any]) -> torch.Tensor:
        """Memory attention for every object in one call, memories padded to common slots: B x C x h x w."""
        assert self._pos_mem is not None
        objects = [ObjectMemories([(t, m.maskmem) for t, m in mems], [(d, m.pointer) for d, m in ptrs])
                   for mems, ptrs in plans]
        return attend_objects(self.model, feats.feats[-1], feats.pos, self._pos_mem, objects, self.max_pointers,
                              amp=lambda: autocast(self.device, self.amp_dtype), core=self._attention_core,
                              buckets=self._buckets)

    @property
    def _track_multimask(self) -> bool:
        cfg = self.model.config
        return bool(cfg.multimask_output_in_sam and cfg.multimask_output_for_tracking
                    and cfg.multimask_min_pt_num <= 0 <= cfg.multimask_max_pt_num)

    def _attend(self, feats: FrameFeatures, plans: list[Any]) -> torch.Tensor:
        """transformers' own memory attention for objects whose memories sit at the same temporal positions
        (``batch_objects=False`` passes one object at a time: the reference the batched path is tested against)."""
        model = self.model
        b = len(plans)
        mems0, ptrs0 = plans[0]
        memories, mem_pos = [], []
        assert self._pos_mem is not None
        for j, (t_pos, _) in enumerate(mems0):
            memories.append(torch.cat([p[0][j][1].maskmem for p in plans], dim=1))
            tpos = model.memory_temporal_positional_encoding[t_pos - 1]
            mem_pos.append((self._pos_mem + tpos).expand(-1, b, -1))
        n_ptr_tokens = 0
        if ptrs0:
            tokens = [torch.cat([p[1][j][1].pointer for p in plans], dim=0) for j in range(len(ptrs0))]
            ptr, ptr_pos = model._process_object_pointers([d for d, _ in ptrs0], tokens, self.max_pointers, b,
                                                          model.hidden_dim, self.device)
            memories.append(ptr)
            mem_pos.append(ptr_pos)
            n_ptr_tokens = ptr.shape[0]
        memory = torch.cat(memories, dim=0).float()
        memory_pos = torch.cat(mem_pos, dim=0).float()
        h, w = model.backbone_feature_sizes[-1]
        with autocast(self.device, self.amp_dtype):
            fused = model.memory_attention(
                current_vision_features=feats.feats[-1].expand(-1, b, -1),
                current_vision_position_embeddings=feats.pos.expand(-1, b, -1),
                memory=memory, memory_posision_embeddings=memory_pos, num_object_pointer_tokens=n_ptr_tokens)
        return fused.float().reshape(b, h * w, model.hidden_dim).transpose(1, 2).reshape(b, model.hidden_dim, h, w)

    def _postprocess(self, low: torch.Tensor) -> torch.Tensor:
        c = self.config
        return postprocess_mask_scores(low, c.fill_hole_area, c.max_sprinkle_area, c.mask_threshold)

    def _to_video(self, low: torch.Tensor) -> torch.Tensor:
        return to_video_resolution(low, self.height, self.width)

    def _encode_memories(self, feats: FrameFeatures, masks: torch.Tensor, scores: torch.Tensor,
                         from_prompt: bool) -> torch.Tensor:
        b = masks.shape[0]
        with autocast(self.device, self.amp_dtype):
            maskmem, pos = self.model._encode_new_memory(
                current_vision_feats=feats.feats[-1].expand(-1, b, -1), pred_masks_high_res=masks,
                object_score_logits=scores, is_mask_from_pts=from_prompt)
        if self._pos_mem is None:
            self._pos_mem = pos[:, :1].float().clone()
        return maskmem

    def _post_low_res(self, pend: list[_Pending]) -> torch.Tensor:
        """Post-processed low-res logits of these outputs (batched over the ones not yet done)."""
        todo = [p for p in pend if p.post is None]
        if todo:
            done = self._postprocess(torch.cat([p.low_res for p in todo], dim=0))
            for i, p in enumerate(todo):
                p.post = done[i:i + 1]
        return torch.cat([p.post for p in pend], dim=0)

    def _empty_output(self, frame_idx: int) -> FrameOutput:
        h, w = self.low_res_size
        return FrameOutput(frame_idx, [], torch.zeros(0, self.height, self.width, device=self.device),
                           torch.zeros(0, 1, h, w, device=self.device), torch.zeros(0, device=self.device))

    def _current_output(self, feats: FrameFeatures) -> FrameOutput:
        ids = [oid for oid in self._objects if oid in self._pending]
        if not ids:
            return self._empty_output(feats.frame_idx)
        pend = [self._pending[o] for o in ids]
        low = self._post_low_res(pend)
        scores = torch.cat([p.score for p in pend], dim=0).reshape(-1)
        return FrameOutput(feats.frame_idx, ids, self._to_video(low), low, scores)

    def _finalise(self, feats: FrameFeatures, step: int) -> FrameOutput:
        ids = list(self._objects)
        if not ids:
            return self._empty_output(feats.frame_idx)
        pend = [self._pending[o] for o in ids]
        low = self._post_low_res(pend)
        scores = torch.cat([p.score for p in pend], dim=0)
        if self.num_maskmem > 0:
            maskmem: dict[int, torch.Tensor] = {}
            for prompted in (True, False):
                idx = [i for i, p in enumerate(pend) if p.prompted == prompted]
                if not idx:
                    continue
                if prompted:  # Meta's preflight: the stored (post-processed) low-res mask, upsampled
                    hi = F.interpolate(low[idx], size=(self.image_size, self.image_size), mode="bilinear",
                                       align_corners=False)
                else:
                    hi = torch.cat([pend[i].high_res for i in idx], dim=0)
                mm = self._encode_memories(feats, hi, scores[idx], prompted)
                for j, i in enumerate(idx):
                    maskmem[i] = mm[:, j:j + 1].clone()
        for i, (oid, p) in enumerate(zip(ids, pend)):
            obj = self._objects[oid]
            # own copies: a slice of a batched tensor would keep the whole batch's storage alive
            mem = _Memory(maskmem.get(i) if self.num_maskmem > 0 else None, p.pointer.clone(), p.score.clone())
            if p.prompted:
                obj.noncond.pop(step, None)
                obj.cond[step] = mem
            else:
                obj.noncond[step] = mem
            if self.prune:
                self._prune(obj, step)
        self._pending = {}
        return FrameOutput(feats.frame_idx, ids, self._to_video(low), low, scores.reshape(-1))

    def _prune(self, obj: _Object, step: int) -> None:
        """Drop what the next frame cannot attend; cap conditioning frames (first + most recent)."""
        cap = self.config.max_conditioning_frames
        if len(obj.cond) > cap:
            keys = list(obj.cond)
            keep = {keys[0], *keys[len(keys) - (cap - 1):]} if cap > 1 else {keys[0]}
            for k in keys:
                if k not in keep:
                    obj.noncond[k] = obj.cond.pop(k)
        sign = -1 if self._reverse else 1
        nxt = step + sign
        for k in list(obj.noncond):
            dist = (nxt - k) * sign  # how many frames before the next frame
            if dist >= self.max_pointers:
                del obj.noncond[k]
            elif dist >= self.num_maskmem and obj.noncond[k].maskmem is not None:
                obj.noncond[k] = replace(obj.noncond[k], maskmem=None)
