"""One video's SAM 2 state: objects, prompts and the memory bank, bounded to what SAM 2 attends.

Why a session of our own: transformers' ``Sam2VideoInferenceSession`` keeps every frame's outputs and
attends to every prompted frame, so memory grows with the video, and its ``forward`` differs from Meta's
``SAM2VideoPredictor`` in ways that change masks (listed below). The model code (image encoder, memory
attention, mask decoder, memory encoder) is transformers', called through the stateless
:class:`~.sam2_model.Sam2Model`; this module owns the bookkeeping: which memories and object pointers each
object attends, what is kept, and how prompts become memories, following Meta's semantics. Each run owns
its session, so one model serves several runs at once; back-fill is a reverse session on the same model.

Per-frame call order::

    session = model.new_session(height, width, num_frames=None)
    feats = session.encode(rgb_uint8_hxwx3, frame_idx)   # image encoder runs exactly once per frame
    tracked = session.propagate(feats)                   # every live object on this frame (batched)
    [session.segment_boxes / add_object / refresh / remove]*
    out = session.commit(feats)                          # FrameOutput: low-res logits + scores, on device

``frame_idx`` is the source's index (strictly increasing, gaps allowed with a stride). SAM 2 itself sees
the dense sequence of encoded frames (``FrameFeatures.step``), exactly as Meta's predictor sees a video
whose frames were subsampled on disk. ``low_res`` are the post-processed image_size/4 logits that Meta's
predictor stores as ``pred_masks``; at video resolution they are the bilinear upsampling of those.
``object_scores`` are SAM 2's object-score logits (> 0 means the object is visible).

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
* A refresh is a new conditioning frame, i.e. Meta's ``add_new_mask`` on a frame the object has not been
  tracked on yet (prompts registered when the stream reaches them, propagation resumed from there).

What is held (``prune=True``)
-----------------------------
Per object: its conditioning frames (memory features, object pointer, score), capped at
``config.max_conditioning_frames`` = the first prompt plus the most recent ones; an evicted conditioning
frame is downgraded to an ordinary memory frame (as Meta does when it clears a frame's prompts) so the
window below still sees it. Non-conditioning frames: memory features for the last ``num_maskmem - 1``
frames, object pointers for the last ``min(num_frames, 16) - 1`` frames - exactly what SAM 2 reads on the
next frame - plus one copy of the memory positional encoding and each object's pointer from its latest
visible frame (``object_pointers``; re-identification of lost tracks compares it with detections'). Nothing
else survives ``commit``, so held memory is O(objects x window) and results equal the unbounded session's as
long as no object has more conditioning frames than the cap (beyond it the cap is a deliberate
approximation).

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

from ..errors import ModelError
from .sam2_model import Sam2Model
from .sam2_types import BoxMasks, FrameFeatures, FrameOutput, Memory, MemoryPlan


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
    cond: dict[int, Memory] = field(default_factory=dict)  # step -> memory, insertion (= prompt) order
    noncond: dict[int, Memory] = field(default_factory=dict)


def _mask_tensor(mask: np.ndarray | torch.Tensor, height: int, width: int) -> torch.Tensor:
    m = torch.as_tensor(np.asarray(mask) if not isinstance(mask, torch.Tensor) else mask)
    if m.ndim == 3 and m.shape[0] == 1:
        m = m[0]
    if tuple(m.shape) != (height, width):
        raise ModelError(f"mask prompt must be {height}x{width} (H x W at video resolution), got "
                         f"{tuple(m.shape)}")
    return m.detach() if m.dtype == torch.bool else m.detach() > 0  # scores/logits: foreground is > 0


class Sam2Session:
    """One video's streaming SAM 2 state on a shared :class:`Sam2Model`; see the module docstring."""

    def __init__(self, model: Sam2Model, height: int, width: int, num_frames: int | None = None, *,
                 prune: bool = True, reverse: bool = False) -> None:
        if num_frames is not None and num_frames < 2:
            raise ModelError(f"num_frames must be >= 2 or None, got {num_frames}")
        self.model = model
        self.height, self.width = int(height), int(width)
        self.num_frames = num_frames
        self.prune = prune
        self.reverse = reverse
        self.max_pointers = model.max_pointers(num_frames)
        self.token = uuid.uuid4().int  # ties FrameFeatures to this session
        self._objects: dict[int, _Object] = {}
        self._pending: dict[int, _Pending] = {}
        self._pos_mem: torch.Tensor | None = None  # memory positional encoding (same for every frame/object)
        self._pos_frame: torch.Tensor | None = None  # image positional encoding (same for every frame)
        # each object's pointer from its latest committed frame with object score > 0 (1 x C rows of one
        # N x C device tensor, replaced at every commit); see object_pointers()
        self._visible_pointers: dict[int, torch.Tensor] = {}
        self._step = -1
        self._last_frame_idx: int | None = None
        self._committed = True

    @property
    def obj_ids(self) -> list[int]:
        """Live object ids in the order they were added (the row order of every output)."""
        return list(self._objects)

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
        for ptr in self._visible_pointers.values():
            add(ptr)
        add(self._pos_mem)
        return sum(seen.values())

    # ------------------------------------------------------------------ frames
    @torch.no_grad()
    def encode(self, image: np.ndarray, frame_idx: int) -> FrameFeatures:
        """Run the image encoder once on an RGB uint8 frame of the session's size."""
        if self.height <= 0 or self.width <= 0:
            raise ModelError("SAM 2 session has no video size; call reset(height, width) first")
        if self._last_frame_idx is not None and frame_idx <= self._last_frame_idx:
            raise ModelError(f"frame index {frame_idx} is not after the previous frame {self._last_frame_idx}")
        if not self._committed and (self._objects or self._pending):
            raise ModelError(f"frame {self._last_frame_idx} was not committed before encoding frame {frame_idx}")
        feats, pos = self.model.encode_image(image, self.height, self.width)
        # the positional encoding is a sine encoding of the feature grid, the same for every frame: one copy
        # serves every buffered frame (comparing them would cost a device sync per frame)
        if self._pos_frame is None:
            self._pos_frame = pos
        pos = self._pos_frame
        self._last_frame_idx = int(frame_idx)
        self._begin(self._step + 1)
        return FrameFeatures(int(frame_idx), self._step, self.token, self.height, self.width, feats, pos)

    def _begin(self, step: int) -> None:
        self._step, self._committed, self._pending = step, False, {}

    def _check_current(self, feats: FrameFeatures) -> None:
        if not isinstance(feats, FrameFeatures):
            raise ModelError(f"expected FrameFeatures from encode(), got {type(feats).__name__}")
        if feats.session != self.token or feats.step != self._step or self._committed:
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
        if not isinstance(feats, FrameFeatures) or feats.session != self.token:
            raise ModelError("features do not come from this session's encode()")
        arr = np.asarray(boxes, dtype=np.float64)
        if arr.size == 0:
            arr = arr.reshape(0, 4)
        if arr.ndim != 2 or arr.shape[1] != 4:
            raise ModelError(f"boxes must be N x 4 (x1, y1, x2, y2), got shape {tuple(arr.shape)}")
        low, iou, score, pointers, keep = self.model.segment_boxes(feats.feats, arr, self.height, self.width)
        return BoxMasks(low, iou, score, pointers, keep, self.height, self.width)

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
        self._visible_pointers.pop(int(obj_id), None)

    def object_pointers(self, obj_ids: Sequence[int]) -> torch.Tensor:
        """N x C float32 on the model's device: each object's SAM 2 object pointer from the latest committed
        frame on which it was visible (object score > 0).

        Why the latest *visible* one: while an object is occluded SAM 2 outputs its learned "no object"
        pointer, the same for every object, so only the pointer from before the occlusion says which object
        it was; re-identification compares it with new detections' pointers (``BoxMasks.pointers``). Rows of
        objects never committed visibly are NaN (no appearance known). Kept on the device and updated
        without a host read; the pipeline reads one similarity matrix per keyframe, not these.
        """
        ids = [int(o) for o in obj_ids]
        for oid in ids:
            if oid not in self._objects:
                raise ModelError(f"object {oid} is not tracked")
        if not ids:
            return torch.zeros(0, self.model.pointer_dim, device=self.model.device)
        return self._kept_pointers(ids)

    def _kept_pointers(self, ids: list[int]) -> torch.Tensor:
        """The kept pointers of ``ids`` as rows, NaN for objects never seen visible (one NaN row is built only
        when some object needs it: a per-object default would launch a fill per object per frame)."""
        rows = [self._visible_pointers.get(oid) for oid in ids]
        if any(r is None for r in rows):
            nan = torch.full((1, self.model.pointer_dim), float("nan"), device=self.model.device)
            rows = [nan if r is None else r for r in rows]
        return torch.cat(rows, dim=0)

    @torch.no_grad()
    def commit(self, feats: FrameFeatures) -> FrameOutput:
        """Finalise the frame: post-process, encode memories, prune, and return every live object's output."""
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
                 past: Sequence[FrameFeatures]) -> list[FrameOutput]:
        """Propagate a new object backwards from its birth frame through earlier frames (newest first).

        Runs in a reverse session on the same model (this session untouched): the birth frame is a
        conditioning frame prompted by ``mask``, then each past frame is tracked in reverse time exactly
        as Meta's ``propagate_in_video(reverse=True)`` does. Returns the object's output on each past frame,
        newest first. Equal to a forward session fed the frames in reverse order.
        """
        for f in (feats_at_birth, *past):
            if not isinstance(f, FrameFeatures) or (f.height, f.width) != (self.height, self.width):
                raise ModelError("backfill needs FrameFeatures of this video from encode()")
        back = Sam2Session(self.model, self.height, self.width, self.num_frames, prune=self.prune, reverse=True)
        n = len(past)
        results: list[FrameOutput] = []
        for i, f in enumerate([feats_at_birth, *past]):
            step = n - i
            tf = replace(f, step=step, session=back.token)
            back._begin(step)
            if i == 0:
                back.add_object(obj_id, tf, mask=mask)
                back.commit(tf)
            else:
                results.append(back.commit(tf))
        return results

    # ------------------------------------------------------------------ internals
    def _prompt_output(self, feats: FrameFeatures, mask: Any, box: Any) -> _Pending:
        if (mask is None) == (box is None):
            raise ModelError("a SAM 2 prompt needs exactly one of mask= or box=")
        if box is not None:
            arr = np.asarray(box, dtype=np.float64).reshape(-1)
            if arr.shape != (4,):
                raise ModelError(f"box prompt must be (x1, y1, x2, y2), got {arr.tolist()}")
            clipped, keep = self.model.clip_boxes(arr.reshape(1, 4), self.height, self.width)
            if len(keep) == 0:
                raise ModelError(f"box prompt {arr.tolist()} has zero area inside the {self.width}x{self.height} frame")
            low, _, pointer, score, _ = self.model.box_outputs(feats.feats, clipped, self.height, self.width)
            return _Pending(low, None, pointer, score, prompted=True)
        m = _mask_tensor(mask, self.height, self.width)
        low, pointer, score = self.model.mask_output(feats.feats, m)
        return _Pending(low, None, pointer, score, prompted=True)

    def _memory_plan(self, obj: _Object, step: int) -> MemoryPlan:
        """(t_pos, memory) entries and (temporal offset, memory) pointer entries SAM 2 attends at ``step``."""
        sign = -1 if self.reverse else 1
        num_maskmem = self.model.num_maskmem
        mems: list[tuple[int, Memory]] = [(0, m) for m in obj.cond.values()]
        for t_rel in range(num_maskmem - 1, 0, -1):
            prev = obj.noncond.get(step - sign * t_rel)
            if prev is not None and prev.maskmem is not None:
                mems.append((t_rel, prev))
        ptrs: list[tuple[int, Memory]] = [((step - c) * sign, m) for c, m in obj.cond.items()
                                          if (c >= step if self.reverse else c <= step)]
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
        model = self.model
        plans = {oid: self._memory_plan(self._objects[oid], feats.step) for oid in obj_ids}
        plans = {oid: p for oid, p in plans.items() if p[0]}  # objects added this frame have no memory yet
        if not plans:
            return
        assert self._pos_mem is not None
        order = list(plans)
        if model.config.batch_objects:  # one memory-attention call for all (sam2_memory pads and masks)
            pix = model.attend_all(feats.feats, feats.pos, [plans[o] for o in order], self._pos_mem,
                                   self.max_pointers)
            low, high, pointer, score, _ = model.decode(feats.feats, pix, multimask=model.track_multimask)
        else:  # the reference path: transformers' memory attention and the SAM heads one object at a time
            pix = torch.cat([model.attend(feats.feats, feats.pos, [plans[o]], self._pos_mem, self.max_pointers)
                             for o in order])
            outs = [model.decode(feats.feats, pix[i:i + 1], multimask=model.track_multimask)
                    for i in range(len(order))]
            low, high, pointer, score = (torch.cat([o[k] for o in outs]) for k in range(4))
        for i, oid in enumerate(order):
            self._pending[oid] = _Pending(low[i:i + 1], high[i:i + 1], pointer[i:i + 1], score[i:i + 1], False)

    def _post_low_res(self, pend: list[_Pending]) -> torch.Tensor:
        """Post-processed low-res logits of these outputs (batched over the ones not yet done)."""
        todo = [p for p in pend if p.post is None]
        if todo:
            done = self.model.postprocess(torch.cat([p.low_res for p in todo], dim=0))
            for i, p in enumerate(todo):
                p.post = done[i:i + 1]
        return torch.cat([p.post for p in pend], dim=0)

    def _output(self, frame_idx: int, ids: list[int], low: torch.Tensor | None,
                scores: torch.Tensor | None) -> FrameOutput:
        if not ids:
            h, w = self.model.low_res_size
            dev = self.model.device
            low, scores = torch.zeros(0, 1, h, w, device=dev), torch.zeros(0, device=dev)
        assert low is not None and scores is not None
        return FrameOutput(frame_idx, ids, low, scores.reshape(-1), self.height, self.width)

    def _current_output(self, feats: FrameFeatures) -> FrameOutput:
        ids = [oid for oid in self._objects if oid in self._pending]
        if not ids:
            return self._output(feats.frame_idx, [], None, None)
        pend = [self._pending[o] for o in ids]
        return self._output(feats.frame_idx, ids, self._post_low_res(pend),
                            torch.cat([p.score for p in pend], dim=0))

    def _finalise(self, feats: FrameFeatures, step: int) -> FrameOutput:
        ids = list(self._objects)
        if not ids:
            self._pending = {}
            return self._output(feats.frame_idx, [], None, None)
        model = self.model
        pend = [self._pending[o] for o in ids]
        low = self._post_low_res(pend)
        scores = torch.cat([p.score for p in pend], dim=0)
        maskmem: dict[int, torch.Tensor] = {}
        if model.num_maskmem > 0:
            for prompted in (True, False):
                idx = [i for i, p in enumerate(pend) if p.prompted == prompted]
                if not idx:
                    continue
                if prompted:  # Meta's preflight: the stored (post-processed) low-res mask, upsampled
                    hi = F.interpolate(low[idx], size=(model.image_size, model.image_size), mode="bilinear",
                                       align_corners=False)
                else:
                    hi = torch.cat([pend[i].high_res for i in idx], dim=0)
                mm, pos = model.encode_memories(feats.feats, hi, scores[idx], prompted)
                if self._pos_mem is None:
                    self._pos_mem = pos[:, :1].float().clone()
                for j, i in enumerate(idx):
                    maskmem[i] = mm[:, j:j + 1].clone()
        pointers = torch.cat([p.pointer for p in pend], dim=0)
        self._keep_visible_pointers(ids, pointers, scores)
        for i, (oid, p) in enumerate(zip(ids, pend)):
            obj = self._objects[oid]
            # the memories are own copies: a slice of the batched encoding would keep the whole batch's
            # storage (1 MB per object) alive; pointers and scores are rows of this frame's small tensors
            # (N x 256 and N values), sliced rather than copied per object
            mem = Memory(maskmem.get(i), pointers[i:i + 1], scores[i:i + 1])
            if p.prompted:
                obj.noncond.pop(step, None)
                obj.cond[step] = mem
            else:
                obj.noncond[step] = mem
            if self.prune:
                self._prune(obj, step)
        self._pending = {}
        return self._output(feats.frame_idx, ids, low, scores)

    def _keep_visible_pointers(self, ids: list[int], pointers: torch.Tensor, scores: torch.Tensor) -> None:
        """Each object's pointer on this frame where it is visible, else the one kept before: three small
        device ops for all objects, no host read (the visibility is decided on the device)."""
        new = pointers.float()
        old = self._kept_pointers(ids)
        kept = torch.where(scores.reshape(-1, 1) > 0, new, old)
        self._visible_pointers = {oid: kept[i:i + 1] for i, oid in enumerate(ids)}

    def _prune(self, obj: _Object, step: int) -> None:
        """Drop what the next frame cannot attend; cap conditioning frames (first + most recent)."""
        cap = self.model.config.max_conditioning_frames
        if len(obj.cond) > cap:
            keys = list(obj.cond)
            keep = {keys[0], *keys[len(keys) - (cap - 1):]} if cap > 1 else {keys[0]}
            for k in keys:
                if k not in keep:
                    obj.noncond[k] = obj.cond.pop(k)
        sign = -1 if self.reverse else 1
        nxt = step + sign
        for k in list(obj.noncond):
            dist = (nxt - k) * sign  # how many frames before the next frame
            if dist >= self.max_pointers:
                del obj.noncond[k]
            elif dist >= self.model.num_maskmem and obj.noncond[k].maskmem is not None:
                obj.noncond[k] = replace(obj.noncond[k], maskmem=None)
