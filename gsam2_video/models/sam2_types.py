"""What the SAM 2 model wrapper and its sessions hand each other and the pipeline.

Every tensor here stays on the model's device: the pipeline composes the frame's label map from
``FrameOutput.low_res`` on the device and copies only that label map (and small per-track arrays) to the
host. Video-resolution float logits are never materialised unless a caller asks for them
(``FrameOutput.logits`` / ``BoxMasks.logits``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..compose import video_masks


@dataclass(frozen=True, eq=False)
class FrameFeatures:
    """Image-encoder output for one frame, shared by propagation, box->mask and backfill.

    ``feats``: the three FPN levels flattened to HW x 1 x C (levels 0 and 1 already projected by the mask
    decoder's conv_s0/conv_s1, as both implementations precompute); ``pos``: the top level's positional
    encoding; ``step``: the frame's position in the session's dense frame sequence; ``session``: a token
    tying the features to the session that encoded them.
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


def to_video_resolution(low: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """K x 1 x h x w low-resolution logits -> K x H x W at the video's size (bilinear, as Meta's predictor)."""
    return F.interpolate(low, size=(height, width), mode="bilinear", align_corners=False)[:, 0]


@dataclass
class BoxMasks:
    """Masks for detector boxes on one frame; rows follow ``keep`` (indices of the input boxes used).

    Only the low-resolution logits are stored: at video resolution a keyframe's boxes would be K x H x W
    floats at once, so ``masks`` upsamples and thresholds a few boxes at a time and ``logits`` builds the
    full float tensor only when asked.
    """

    low_res: torch.Tensor  # K x 1 x h x w, post-processed
    iou_scores: torch.Tensor  # K
    object_scores: torch.Tensor  # K
    pointers: torch.Tensor  # K x C object pointers (SAM 2's obj_ptr of each box decode; for re-identification)
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
        return video_masks(self.low_res, self.height, self.width, threshold, boxes_per_step)


@dataclass
class FrameOutput:
    """Every live object's output on one frame; rows follow ``obj_ids``; tensors on the model's device."""

    frame_idx: int
    obj_ids: list[int]
    low_res: torch.Tensor  # N x 1 x h x w float32, post-processed (Meta's stored pred_masks)
    object_scores: torch.Tensor  # N float32 object-score logits (> 0: visible)
    height: int
    width: int

    @property
    def logits(self) -> torch.Tensor:
        """N x H x W float32 logits at video resolution (allocated on each access; the pipeline never asks)."""
        if not self.obj_ids:
            return torch.zeros(0, self.height, self.width, device=self.low_res.device)
        return to_video_resolution(self.low_res, self.height, self.width)


@dataclass
class Memory:
    """What SAM 2 reads from a past frame of one object."""

    maskmem: torch.Tensor | None  # HW x 1 x C_mem; None once outside the memory window
    pointer: torch.Tensor  # 1 x C
    score: torch.Tensor  # 1 x 1 x 1


#: (temporal position, memory) entries and (temporal offset, memory) pointer entries one object attends
MemoryPlan = tuple[list[tuple[int, Memory]], list[tuple[int, Memory]]]
