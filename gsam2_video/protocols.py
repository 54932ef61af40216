"""The seams between the pipeline and its models, as typed Protocols.

Why: the pipeline must not care which detector finds the boxes (Grounding DINO, OWLv2, a YOLO model,
ground-truth boxes for re-labelling) or how the mask propagator keeps its memory; it calls exactly these
methods and nothing else (no attribute probing). Any object with these methods plugs in; see
``examples/custom_detector.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

from .config import DetectorConfig, PropagatorConfig
from .prompts import Prompt
from .types import Detections


@runtime_checkable
class Detector(Protocol):
    """Finds the prompt's objects in one frame. Called by the pipeline on keyframes only.

    Contract:

    * ``image`` is the frame, RGB uint8, H x W x 3, C-contiguous; do not keep a reference to it.
    * ``prompt.classes`` are the class names in prompt order; ``Detections.class_ids`` index them and
      ``Detections.labels`` (optional) name them.
    * ``frame_index`` is the source's frame number (after ``start``, before ``stride``), so a detector that
      replays stored boxes (ground truth, a cache, an external service keyed by frame) knows which to return.
    * boxes are xyxy pixels of this frame; scores are in [0, 1]. Detections scoring above the run's box
      threshold (``--box-threshold``) may start tracks; those between the low threshold
      (``low_score_threshold``) and the box threshold only keep visible tracks alive; lower ones are
      ignored. A detector with no notion of confidence should return 1.0.
    * optional (:class:`TunableDetector`): a ``config`` (:class:`~gsam2_video.config.DetectorConfig`) and
      ``with_thresholds(config)``; with them the pipeline runs the detector at the low threshold and applies
      per-run threshold overrides. Without them the detector's own threshold decides what it returns.
    """

    def detect(self, image: np.ndarray, prompt: Prompt, frame_index: int) -> Detections: ...


@runtime_checkable
class TunableDetector(Detector, Protocol):
    """A detector whose thresholds a single run may override without reloading the model."""

    config: DetectorConfig

    def with_thresholds(self, config: DetectorConfig) -> TunableDetector:
        """A view sharing the model, with these post-processing settings."""
        ...


class FeaturesLike(Protocol):
    """A session's per-frame image features (opaque to the pipeline; passed back to the session)."""

    frame_idx: int


class FrameOutputLike(Protocol):
    """Every live object's output on one frame, on the model's device."""

    frame_idx: int
    obj_ids: list[int]
    low_res: torch.Tensor  # N x 1 x h x w logits
    object_scores: torch.Tensor  # N


class BoxMasksLike(Protocol):
    """Masks for detector boxes; rows follow ``keep`` (indices of the boxes used)."""

    low_res: torch.Tensor
    keep: np.ndarray

    def __len__(self) -> int: ...

    def masks(self, threshold: float = 0.0, boxes_per_step: int = 8) -> torch.Tensor: ...


class SegmentationSession(Protocol):
    """One video's mask propagation state (SAM 2's memory bank), owned by one run."""

    def encode(self, image: np.ndarray, frame_idx: int) -> Any: ...

    def propagate(self, feats: Any) -> FrameOutputLike: ...

    def segment_boxes(self, feats: Any, boxes: np.ndarray) -> BoxMasksLike: ...

    def add_object(self, obj_id: int, feats: Any, *, mask: np.ndarray | torch.Tensor | None = None,
                   box: Sequence[float] | np.ndarray | None = None) -> None: ...

    def refresh(self, obj_id: int, feats: Any, mask: np.ndarray | torch.Tensor) -> None: ...

    def remove(self, obj_id: int) -> None: ...

    def commit(self, feats: Any) -> FrameOutputLike: ...

    def backfill(self, obj_id: int, feats_at_birth: Any, mask: np.ndarray | torch.Tensor,
                 past: Sequence[Any]) -> Sequence[FrameOutputLike]: ...


class PointerBoxMasksLike(BoxMasksLike, Protocol):
    """Box masks that also carry SAM 2's object pointer of each decoded box (rows follow ``keep``)."""

    pointers: torch.Tensor  # K x C, on the model's device


@runtime_checkable
class PointerSession(SegmentationSession, Protocol):
    """A session that exposes SAM 2's object pointers, so lost tracks can be re-identified by appearance.

    Optional, as :class:`TunableDetector` is for detectors: the pipeline checks ``isinstance(session,
    PointerSession)`` and, without it, re-identifies lost tracks by position and motion only (a custom
    propagator need not have pointers). Contract:

    * ``object_pointers(obj_ids)``: N x C tensor, each live object's pointer from the latest committed frame
      on which it was visible (object score > 0); a NaN row where no such frame exists (that track is then
      re-identified by position only). Stays on the device; the pipeline reads only the small lost-track x
      detection similarity matrix it computes from these, once per keyframe.
    * ``segment_boxes`` returns :class:`PointerBoxMasksLike`: the pointer of each decoded box, comparable
      with ``object_pointers`` (cosine similarity).
    """

    def segment_boxes(self, feats: Any, boxes: np.ndarray) -> PointerBoxMasksLike: ...

    def object_pointers(self, obj_ids: Sequence[int]) -> torch.Tensor: ...


@runtime_checkable
class SegmentationModel(Protocol):
    """A loaded, stateless mask propagator shared by runs; each run asks it for a session."""

    device: torch.device
    mask_threshold: float
    config: PropagatorConfig  # recorded in run.json
    amp_dtype: torch.dtype | None  # the precision 'auto' resolved to (None = fp32)

    def new_session(self, height: int, width: int, num_frames: int | None = None) -> SegmentationSession: ...
