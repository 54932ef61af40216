"""``Sam2Propagator``: one SAM 2 model plus one current session, for single-video scripts and tests.

The Tracker does not use this class's session: it shares the stateless :class:`~.sam2_model.Sam2Model`
between runs and gives every run its own :class:`~.sam2_session.Sam2Session`. This facade exists for code
that processes one video at a time and wants a single object (``reset`` starts the next video), and it is
what the parity tests drive against Meta's ``SAM2VideoPredictor``::

    prop = Sam2Propagator.from_pretrained("facebook/sam2.1-hiera-tiny", PropagatorConfig())
    prop.reset(height, width, num_frames=None)
    feats = prop.encode(rgb_uint8_hxwx3, frame_idx)
    tracked = prop.propagate(feats)
    prop.add_object(1, feats, box=(x1, y1, x2, y2))     # or mask=H x W
    out = prop.commit(feats)                            # out.low_res / out.logits / out.object_scores

Mask prompts are H x W at video resolution, numpy or torch; bool as is, anything else thresholded at > 0.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from transformers import Sam2VideoModel

from ..config import PropagatorConfig
from .sam2_model import BOXES_PER_DECODE, Sam2Model
from .sam2_session import Sam2Session
from .sam2_types import BoxMasks, FrameFeatures, FrameOutput, to_video_resolution

__all__ = ["BOXES_PER_DECODE", "BoxMasks", "FrameFeatures", "FrameOutput", "Sam2Propagator",
           "to_video_resolution"]


class Sam2Propagator:
    """A :class:`Sam2Model` and its current :class:`Sam2Session` behind one object."""

    def __init__(self, model: Sam2VideoModel | Sam2Model, config: PropagatorConfig | None = None, *,
                 device: str | torch.device = "auto", dtype: str = "auto", prune: bool = True) -> None:
        self.sam2 = model if isinstance(model, Sam2Model) else Sam2Model(model, config, device=device, dtype=dtype)
        self.prune = prune
        self.session: Sam2Session = self.sam2.new_session(0, 0, prune=prune)

    @classmethod
    def from_pretrained(cls, name_or_path: str, config: PropagatorConfig | None = None, device: str = "auto",
                        dtype: str = "auto", prune: bool = True) -> Sam2Propagator:
        """Load as :meth:`Sam2Model.from_pretrained` does (hub id, directory, HF cache or Meta ``.pt``)."""
        return cls(Sam2Model.from_pretrained(name_or_path, config, device=device, dtype=dtype), prune=prune)

    # the shared model's settings
    @property
    def model(self) -> Sam2VideoModel:
        return self.sam2.model

    @property
    def config(self) -> PropagatorConfig:
        return self.sam2.config

    @property
    def device(self) -> torch.device:
        return self.sam2.device

    @property
    def amp_dtype(self) -> torch.dtype | None:
        return self.sam2.amp_dtype

    @property
    def image_size(self) -> int:
        return self.sam2.image_size

    @property
    def mask_threshold(self) -> float:
        return self.sam2.mask_threshold

    def new_session(self, height: int, width: int, num_frames: int | None = None) -> Sam2Session:
        """A session independent of this object's current one (what a Tracker run asks for)."""
        return self.sam2.new_session(height, width, num_frames, prune=self.prune)

    # the current session
    def reset(self, height: int, width: int, num_frames: int | None = None) -> None:
        """Start a new video of ``height`` x ``width``; all objects and memories are dropped."""
        self.session = self.sam2.new_session(height, width, num_frames, prune=self.prune)

    @property
    def obj_ids(self) -> list[int]:
        return self.session.obj_ids

    def held_bytes(self) -> int:
        return self.session.held_bytes()

    def encode(self, image: np.ndarray, frame_idx: int) -> FrameFeatures:
        return self.session.encode(image, frame_idx)

    def propagate(self, feats: FrameFeatures) -> FrameOutput:
        return self.session.propagate(feats)

    def segment_boxes(self, feats: FrameFeatures, boxes: np.ndarray) -> BoxMasks:
        return self.session.segment_boxes(feats, boxes)

    def add_object(self, obj_id: int, feats: FrameFeatures, *, mask: np.ndarray | torch.Tensor | None = None,
                   box: Sequence[float] | np.ndarray | None = None) -> None:
        self.session.add_object(obj_id, feats, mask=mask, box=box)

    def refresh(self, obj_id: int, feats: FrameFeatures, mask: np.ndarray | torch.Tensor) -> None:
        self.session.refresh(obj_id, feats, mask)

    def remove(self, obj_id: int) -> None:
        self.session.remove(obj_id)

    def object_pointers(self, obj_ids: Sequence[int]) -> torch.Tensor:
        return self.session.object_pointers(obj_ids)

    def commit(self, feats: FrameFeatures) -> FrameOutput:
        return self.session.commit(feats)

    def backfill(self, obj_id: int, feats_at_birth: FrameFeatures, mask: np.ndarray | torch.Tensor,
                 past: Sequence[FrameFeatures]) -> list[torch.Tensor]:
        """The object's H x W logits on each past frame, newest first (see :meth:`Sam2Session.backfill`)."""
        return [out.logits[0] for out in self.session.backfill(obj_id, feats_at_birth, mask, past)]
