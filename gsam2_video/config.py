"""Typed settings for every stage, passed in explicitly (no globals).

Each stage owns one dataclass; TrackerConfig groups them. Validation lives in ``validate()`` so the CLI
and the Python API reject bad values with the same one-line ConfigError.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from .errors import ConfigError

DEFAULT_DETECTOR = "IDEA-Research/grounding-dino-tiny"
DEFAULT_SAM2 = "facebook/sam2.1-hiera-tiny"

Device = str  # "auto", "cpu", "cuda" or "cuda:N"
DType = Literal["auto", "fp32", "bf16", "fp16"]


def valid_device(device: str) -> bool:
    """auto, cpu, cuda or cuda:N (N a non-negative integer)."""
    if device in ("auto", "cpu", "cuda"):
        return True
    head, _, index = device.partition(":")
    return head == "cuda" and index.isdigit()


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise ConfigError(msg)


@dataclass
class DetectorConfig:
    """Grounding DINO (or any zero-shot detector in transformers) settings."""

    model: str = DEFAULT_DETECTOR
    box_threshold: float = 0.35
    text_threshold: float = 0.25
    max_detections: int = 100
    nms_iou: float | None = None  # per-class NMS IoU; None = off
    shortest_edge: int = 800
    longest_edge: int = 1333
    max_text_tokens: int = 256  # Grounding DINO's text encoder limit; longer vocabularies are chunked

    def validate(self) -> None:
        _check(0.0 <= self.box_threshold <= 1.0, f"box threshold must be in [0, 1], got {self.box_threshold}")
        _check(0.0 <= self.text_threshold <= 1.0, f"text threshold must be in [0, 1], got {self.text_threshold}")
        _check(self.max_detections >= 1, f"max detections must be >= 1, got {self.max_detections}")
        _check(self.nms_iou is None or 0.0 < self.nms_iou <= 1.0, f"NMS IoU must be in (0, 1], got {self.nms_iou}")
        _check(16 <= self.shortest_edge <= self.longest_edge,
               f"detector input size must satisfy 16 <= shortest <= longest edge, got "
               f"{self.shortest_edge}/{self.longest_edge}")


@dataclass
class PropagatorConfig:
    """SAM 2 streaming session settings."""

    model: str = DEFAULT_SAM2
    max_conditioning_frames: int = 4  # first prompt + most recent ones; bounds memory on long videos
    fill_hole_area: int = 8  # SAM 2's default post-processing; 0 disables
    max_sprinkle_area: int = 0  # remove isolated foreground specks up to this area; 0 disables
    mask_threshold: float = 0.0
    batch_objects: bool = True  # all tracked objects share one memory-attention call and one SAM-heads batch
    compile: bool = False  # torch.compile the image encoder and the memory attention (fixed shape buckets)

    def validate(self) -> None:
        _check(self.max_conditioning_frames >= 1,
               f"max conditioning frames must be >= 1, got {self.max_conditioning_frames}")
        _check(self.fill_hole_area >= 0, f"fill hole area must be >= 0, got {self.fill_hole_area}")
        _check(self.max_sprinkle_area >= 0, f"max sprinkle area must be >= 0, got {self.max_sprinkle_area}")


@dataclass
class AssociationConfig:
    """Keyframe detection <-> live track matching and track lifecycle (see gsam2_video/tracking/lifecycle.py).

    Defaults are chosen for the common case: a file or stream at 25-30 fps, ``--detect-every 10``, Grounding
    DINO at its default box threshold.
    """

    iou_threshold: float = 0.5  # minimum mask IoU for a match
    refresh_iou: float = 0.7  # a matched track below this takes the detection mask as a new prompt
    duplicate_coverage: float = 0.6  # unmatched detection this much inside a live track is ignored
    class_aware: bool = False
    # occlusion tolerance, in source frames: a track SAM 2 cannot see (and no detection re-finds) for more than
    # this many frames is ended; None = 2 seconds at the source's fps (60 frames when the fps is unknown)
    max_lost_frames: int | None = None
    # optional stricter rule: also end a track missed on this many keyframes in a row while invisible; None = off
    max_missed_keyframes: int | None = None
    max_objects: int | None = None
    iou_max_side: int = 256  # masks are compared at a resolution whose long side is at most this
    weak_iou: float | None = 0.25  # 2nd pass: leftover visible track + detection at this IoU match (and refresh)
    # re-identification: a lost track takes a new detection whose box has this IoU with the box where it was
    # last seen or with its constant-velocity prediction; None = off
    reacquire_iou: float | None = 0.3
    # ... and, where the SAM 2 session exposes object pointers, only a detection whose pointer has at least
    # this cosine similarity with the track's pointer from its last visible frame; among such candidates the
    # highest (1 - reid_weight) * box IoU + reid_weight * similarity wins. None = position and motion only
    # (what a session without pointers always gets). Kept low on purpose: a threshold above the similarity of
    # one object's own pointers vetoes true re-identifications (worse than position alone), one below the
    # similarity of different objects only falls back to position; see benchmarks/README.md
    reid_min_similarity: float | None = 0.3
    reid_weight: float = 0.5
    # confirmation: a new track is tentative (tracked, never emitted) until matched again on confirm_hits of
    # the next confirm_window keyframes, or born from a detection scoring >= confirm_score; confirm_hits 0 = off
    confirm_hits: int = 1
    confirm_window: int = 2
    confirm_score: float | None = 0.6
    # a track SAM 2 still sees but no detection matches for this many keyframes in a row, while its class is
    # detected elsewhere in the frame, is ended (a false positive SAM 2 holds on to); None = off
    retire_unmatched_keyframes: int | None = 5
    # two-stage matching: detections scoring below the detector's box threshold but at least this much only
    # keep visible tracks alive (never start tracks); None = off
    low_score_threshold: float | None = 0.2

    def validate(self) -> None:
        for name in ("iou_threshold", "refresh_iou", "duplicate_coverage"):
            v = getattr(self, name)
            _check(0.0 <= v <= 1.0, f"{name.replace('_', ' ')} must be in [0, 1], got {v}")
        for name in ("max_missed_keyframes", "max_lost_frames", "retire_unmatched_keyframes"):
            v = getattr(self, name)
            _check(v is None or (isinstance(v, int) and v >= 1),
                   f"{name.replace('_', ' ')} must be an integer >= 1 or None, got {v}")
        _check(self.max_objects is None or self.max_objects >= 1,
               f"max objects must be >= 1, got {self.max_objects}")
        _check(self.iou_max_side >= 16, f"association IoU max side must be >= 16, got {self.iou_max_side}")
        for name in ("weak_iou", "reacquire_iou", "confirm_score", "low_score_threshold", "reid_min_similarity"):
            v = getattr(self, name)
            _check(v is None or 0.0 < v <= 1.0, f"{name.replace('_', ' ')} must be in (0, 1] or None, got {v}")
        _check(0.0 <= self.reid_weight <= 1.0, f"reid weight must be in [0, 1], got {self.reid_weight}")
        _check(self.confirm_hits >= 0, f"confirm hits must be >= 0, got {self.confirm_hits}")
        _check(self.confirm_window >= max(1, self.confirm_hits),
               f"confirm window must be >= max(1, confirm hits), got {self.confirm_window} "
               f"(confirm hits {self.confirm_hits})")


@dataclass
class KeyframeConfig:
    """When the detector runs."""

    detect_every: int = 10
    min_gap: int = 2  # adaptive triggers fire at most this often
    score_trigger: bool = True  # a confirmed track's object score dropping below 0 triggers detection
    # score-triggered keyframes are at least this many frames apart, so they cannot chain; None = detect_every
    score_trigger_gap: int | None = None
    scene_cut_threshold: float | None = 0.5  # histogram distance that counts as a cut; None disables

    def validate(self) -> None:
        _check(self.detect_every >= 1, f"--detect-every must be >= 1, got {self.detect_every}")
        _check(self.min_gap >= 1, f"keyframe min gap must be >= 1, got {self.min_gap}")
        _check(self.score_trigger_gap is None or self.score_trigger_gap >= 1,
               f"score trigger gap must be >= 1 or None, got {self.score_trigger_gap}")
        _check(self.scene_cut_threshold is None or 0.0 < self.scene_cut_threshold <= 1.0,
               f"scene cut threshold must be in (0, 1], got {self.scene_cut_threshold}")


@dataclass(frozen=True)
class FrameExtras:
    """What the GPU builds per frame besides the label map, to travel in the frame's single host copy.

    ``overlay``: the frame with the masks blended in and outlined (``FrameResult.overlay``), so the video and
    live outputs only draw boxes and captions on the host; ``rle``: the label map's column-major changes
    (``FrameResult.label_changes``), so tracks.json / mots.txt / JSONL encode COCO RLE without reading the
    frame's pixels. Both pay off where the models run on a GPU; on a CPU the host paths are as fast and are
    the reference, so :meth:`for_outputs` turns them on for CUDA devices only. Results are the same either
    way (RLE byte-identical; the overlay within one grey level of the host drawing).
    """

    overlay: bool = False
    rle: bool = False

    @classmethod
    def for_outputs(cls, device_type: str, *, picture: bool, rle: bool) -> FrameExtras:
        """The extras worth building on ``device_type`` ("cuda", "cpu", ...) when some output shows the
        annotated picture (``picture``) or writes COCO RLE (``rle``)."""
        gpu = device_type == "cuda"
        return cls(overlay=gpu and picture, rle=gpu and rle)


@dataclass
class TrackerConfig:
    """Everything the Tracker needs; ``mode`` 'auto' means offline for files, live for cameras/streams."""

    detector: DetectorConfig = field(default_factory=DetectorConfig)
    propagator: PropagatorConfig = field(default_factory=PropagatorConfig)
    association: AssociationConfig = field(default_factory=AssociationConfig)
    keyframes: KeyframeConfig = field(default_factory=KeyframeConfig)
    device: Device = "auto"
    dtype: DType = "auto"  # bf16 where the hardware has it, else fp32 (models.loading.resolve_dtype)
    tf32: bool = True  # fp32 matmuls/convolutions on CUDA Ampere+ use TF32; False = strict fp32 (parity)
    mode: Literal["auto", "live", "offline"] = "auto"

    def validate(self) -> None:
        _check(valid_device(self.device), f"device must be auto, cpu, cuda or cuda:N, got {self.device!r}")
        _check(self.dtype in ("auto", "fp32", "bf16", "fp16"),
               f"dtype must be auto, fp32, bf16 or fp16, got {self.dtype!r}")
        _check(self.mode in ("auto", "live", "offline"), f"mode must be auto, live or offline, got {self.mode!r}")
        self.detector.validate()
        self.propagator.validate()
        self.association.validate()
        self.keyframes.validate()

    def to_json(self) -> dict[str, Any]:
        return asdict(self)
