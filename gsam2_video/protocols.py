"""The seams between the pipeline and its models, as typed Protocols (structural: no base class to inherit).

Why: the tracker needs very little from a detector (boxes, scores and class ids for one frame), so any
detector can replace Grounding DINO: OWLv2, a YOLO model, a detector served elsewhere, or ground-truth boxes
when re-labelling a dataset. Writing the seam down keeps the pipeline honest about what it relies on and
lets user code be type-checked against it. See examples/custom_detector.py.

This module holds the detector part only (issue 14); the SAM 2 session's protocol is added beside it by the
device-path work.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    import numpy as np

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
      threshold (``--box-threshold``, default 0.35) may start tracks; those between the low threshold
      (``low_score_threshold``, default 0.2) and the box threshold only keep visible tracks alive; lower ones
      are ignored. A detector with no notion of confidence should return 1.0.
    * optional: a ``config`` attribute holding a :class:`~gsam2_video.config.DetectorConfig` and a
      ``with_thresholds(config)`` method returning a view with other thresholds; with them, the pipeline
      runs the detector at the low threshold and applies per-run threshold overrides. Without them the
      detector's own threshold decides what it returns.
    """

    def detect(self, image: np.ndarray, prompt: Prompt, frame_index: int | None = None) -> Detections:
        ...
