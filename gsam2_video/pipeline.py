"""The Tracker: one pass over a source, one FrameResult per decoded frame, one ID per object.

Per frame: the propagator encodes the frame once and carries every live track forward; on keyframes the
detector runs, its boxes become masks on the same features, the associator matches them to live tracks,
and new / drifted / lost tracks are added, refreshed or removed before the frame's memories are written.
Offline runs (files) hold results for up to ``detect_every`` frames so new tracks are back-filled to where
they really appeared; live runs (cameras, streams) emit every frame as soon as it is done.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .compose import ComposedFrame, compose_frame, masks_to_boxes, video_masks
from .config import DEFAULT_DETECTOR, DEFAULT_SAM2, FrameExtras, TrackerConfig
from .drawing import DEFAULT_ALPHA, drawing_order, line_thickness
from .drawing_torch import overlay_torch
from .errors import ConfigError
from .models.loading import precision_name, resolve_device, set_tf32
from .ops.rle import label_changes_packed
from .prompts import Prompt, parse_prompt
from .protocols import (
    BoxMasksLike,
    Detector,
    PointerSession,
    SegmentationModel,
    SegmentationSession,
    TunableDetector,
)
from .tracking.backfill import BackfillBuffer, PendingFrame
from .tracking.keyframes import KeyframePolicy
from .tracking.lifecycle import TrackRegistry
from .tracking.two_stage import associate_two_stage, split_scores
from .transfer import HostFrame, to_host
from .types import Frame, FrameResult, VideoInfo
from .upload import frames_on_device

log = logging.getLogger("gsam2_video")

#: label changes per pixel of frame height + width that the RLE buffer starts with (12 bytes each; 24k changes,
#: 288 KB, at 1080p: a column crossed by an object's edge costs 2). A frame with more is encoded on the host
#: and doubles the room for the frames after it.
RLE_CHANGES_PER_EDGE_PIXEL = 8


@dataclass
class RunStats:
    """Counters and per-stage wall time of one run (written to run.json by the CLI)."""

    frames_read: int = 0
    frames_emitted: int = 0
    keyframes: int = 0
    keyframe_reasons: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    detections: int = 0
    tracks_created: int = 0  # tentative ones included
    tracks_removed: int = 0
    tracks_confirmed: int = 0  # created tracks that were confirmed (at birth or on a later keyframe)
    tracks_discarded: int = 0  # tentative tracks never confirmed, dropped unseen
    tracks_reidentified: int = 0  # lost tracks re-found by a detection (a track may count more than once)
    backfilled_frames: int = 0
    #: frames whose GPU-built extras (FrameExtras) were not usable, so the host drew / encoded them: a back-fill
    #: painted the frame, a confirmation or score change altered what the overlay shows, or the RLE changes
    #: overflowed their buffer
    extras_redone: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    stage_seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))

    def to_json(self) -> dict[str, Any]:
        return {
            "frames_read": self.frames_read,
            "frames_emitted": self.frames_emitted,
            "keyframes": self.keyframes,
            "keyframe_reasons": dict(self.keyframe_reasons),
            "detections": self.detections,
            "tracks_created": self.tracks_created,
            "tracks_removed": self.tracks_removed,
            "tracks_confirmed": self.tracks_confirmed,
            "tracks_discarded": self.tracks_discarded,
            "tracks_reidentified": self.tracks_reidentified,
            "backfilled_frames": self.backfilled_frames,
            "extras_redone": dict(self.extras_redone),
            "stage_seconds": {k: round(v, 4) for k, v in self.stage_seconds.items()},
        }


class _Timer:
    def __init__(self, stats: RunStats, stage: str) -> None:
        self.stats, self.stage = stats, stage

    def __enter__(self) -> None:
        self.t0 = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        self.stats.stage_seconds[self.stage] += time.perf_counter() - self.t0


class TrackingRun:
    """An iterable over one source's FrameResults, with the source info and run statistics at hand.

    Iterate it (or use it as a context manager) to drive the run; ``close()`` stops decoding early.
    """

    def __init__(self, tracker: Tracker, source: Any, prompt: Prompt, config: TrackerConfig,
                 keep_images: bool, extras: FrameExtras | None = None) -> None:
        self.tracker = tracker
        self.source = source
        self.prompt = prompt
        self.config = config
        self.extras = extras or FrameExtras()
        # a GPU-built overlay can go stale (back-fill, a later confirmation): the frame is then drawn from
        # its pixels, so they are kept whenever the overlay is built
        self.keep_images = keep_images or self.extras.overlay
        self._rle_capacity = 0  # sized at the first frame
        self.info: VideoInfo = source.info
        self.live = config.mode == "live" or (config.mode == "auto" and self.info.is_live)
        detector = tracker.detector
        # two-stage matching: the detector runs at the low threshold; detections between it and the box
        # threshold only keep visible tracks alive (tracking/two_stage.py)
        det_config = config.detector
        low = config.association.low_score_threshold
        if low is not None and low < det_config.box_threshold:
            det_config = replace(det_config, box_threshold=low)
        if isinstance(detector, TunableDetector) and detector.config != det_config:
            detector = detector.with_thresholds(det_config)
        self.detector: Detector = detector
        self.sam2: SegmentationModel = tracker.propagator
        self.session: SegmentationSession | None = None  # this run's own; created at the first frame
        self.stats = RunStats()
        self._gen: Iterator[FrameResult] | None = None
        self._held: tuple[BackfillBuffer, TrackRegistry] | None = None  # for drain() after an interruption

    @property
    def categories(self) -> list[str]:
        return list(self.prompt.classes)

    def __iter__(self) -> Iterator[FrameResult]:
        if self._gen is None:
            self._gen = self._run()
        return self._gen

    def __enter__(self) -> TrackingRun:  # noqa: PYI034 - typing.Self needs Python 3.11
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._gen is not None:
            self._gen.close()
        self.source.close()

    def drain(self) -> Iterator[FrameResult]:
        """After the run was interrupted (e.g. KeyboardInterrupt), the frames it had finished but still held
        for back-fill (offline mode holds up to K), in order. Their masks are final: only a later keyframe
        could have added to them. The frame being computed when the interruption came is not among them."""
        if self._held is None:
            return
        buffer, registry = self._held
        for ready in buffer.drain():
            yield self._emit(ready, registry)

    # -- the loop -------------------------------------------------------------------------------------
    def _run(self) -> Iterator[FrameResult]:
        cfg = self.config
        policy = KeyframePolicy(cfg.keyframes)
        registry = TrackRegistry(cfg.association, fps=self.info.fps)  # [issue 14] fps sizes max_lost_frames
        buffer = BackfillBuffer(0 if self.live else cfg.keyframes.detect_every)
        self._held = (buffer, registry)
        stats = self.stats
        with self.source:
            frames = frames_on_device(iter(self.source), self.sam2.device)
            while True:
                with _Timer(stats, "decode_wait"):
                    item = next(frames, None)
                if item is None:
                    break
                frame, on_device = item
                stats.frames_read += 1
                if self.session is None:
                    # the length (when known) fixes SAM 2's object-pointer position scale as Meta's predictor
                    # sets it; a one-frame video has no pointers to place
                    n = self.info.frame_count
                    self.session = self.sam2.new_session(frame.height, frame.width,
                                                         num_frames=n if n is not None and n >= 2 else None)
                session = self.session
                with _Timer(stats, "encode"):
                    feats = session.encode(frame.image if on_device is None else on_device, frame.index)
                with _Timer(stats, "propagate"):
                    tracked = session.propagate(feats)
                    # read 1 of 2 on the device: the object scores decide score-triggered keyframes
                    scores = dict(zip(tracked.obj_ids, tracked.object_scores.tolist()))
                # only confirmed tracks can trigger a keyframe
                is_key, reason = policy.is_keyframe(frame.image, registry.trigger_scores(scores))
                born: list[tuple[int, torch.Tensor]] = []
                if is_key:
                    stats.keyframes += 1
                    stats.keyframe_reasons[reason] += 1
                    born = self._keyframe(frame, feats, tracked, scores, registry)
                with _Timer(stats, "commit"):
                    out = session.commit(feats)
                    composed = compose_frame(out.low_res, out.obj_ids, frame.height, frame.width,
                                             self.sam2.mask_threshold, out.object_scores)
                    # read 2 of 2: label map + per-track array (+ the extras asked for), one copy
                    host, ranking = self._to_host(frame, on_device, composed, registry)
                    registry.observe(frame.index, host.boxes_by_id())
                pending = PendingFrame(frame.index, frame.timestamp, frame.image if self.keep_images else None,
                                       feats if buffer.lag else None, host,
                                       {int(t): _snapshot(registry, int(t)) for t in out.obj_ids}, is_key,
                                       ranking)
                if born and buffer.lag:
                    with _Timer(stats, "backfill"):
                        self._backfill(born, feats, buffer, registry)
                for ready in buffer.push(pending):
                    yield self._emit(ready, registry)
            for ready in buffer.drain():
                yield self._emit(ready, registry)

    def _to_host(self, frame: Frame, on_device: torch.Tensor | None, composed: ComposedFrame,
                 registry: TrackRegistry) -> tuple[HostFrame, tuple[int, ...]]:
        """The frame's one copy to the host, with the extras this run builds on the device; also the ids the
        overlay drew, in outline order (lowest score first), for :meth:`_emit` to check it is still right."""
        overlay = changes = None
        ranking: tuple[int, ...] = ()
        if self.extras.overlay:
            drawn = sorted(t for t in composed.obj_ids if registry.emittable(t))  # results list tracks by id
            scores = [_snapshot(registry, t)[1] for t in drawn]
            ranking = tuple(drawn[k] for k in drawing_order(scores))
            image = on_device if on_device is not None else torch.from_numpy(frame.image)
            overlay = overlay_torch(image, composed.labels, drawn, scores, alpha=DEFAULT_ALPHA,
                                    thickness=line_thickness(frame.height, frame.width))
        if self.extras.rle:
            if not self._rle_capacity:
                self._rle_capacity = RLE_CHANGES_PER_EDGE_PIXEL * (frame.height + frame.width)
            changes = label_changes_packed(composed.labels, self._rle_capacity)
        host = to_host(composed, overlay=overlay, changes=changes)
        if changes is not None and host.changes is None:  # overflowed: this frame is encoded on the host,
            # later frames get room for twice as many
            self._rle_capacity = min(2 * self._rle_capacity, frame.height * frame.width)
        return host, ranking

    def _keyframe(self, frame: Frame, feats: Any, tracked: Any, scores: dict[int, float],
                  registry: TrackRegistry) -> list[tuple[int, torch.Tensor]]:
        """Detect, associate and apply the lifecycle update; returns (track id, mask) of the tracks born here
        confirmed (the ones to back-fill).

        Masks stay on the model's device: association compares them there (the mask IoU kernel on CUDA)
        and prompts go back to SAM 2 without a host round trip; only boxes and the IoU matrices (small)
        are read on the host. So do SAM 2's object pointers when the session has them (PointerSession):
        association reads only the lost tracks x new detections similarity matrix they give.
        """
        det, session, stats = self.detector, self.session, self.stats
        threshold = self.sam2.mask_threshold
        high = self.config.detector.box_threshold
        assert session is not None
        # re-identification by appearance needs the session's object pointers; without them it is by
        # position and motion only (a custom propagator need not have pointers)
        reid: PointerSession | None = None
        if self.config.association.reid_min_similarity is not None and isinstance(session, PointerSession):
            reid = session
        det_pointers: torch.Tensor | None = None
        with _Timer(stats, "detect"):
            dets = det.detect(frame.image, self.prompt, frame_index=frame.index)
        stats.detections += len(split_scores(dets.scores, high, self.config.association)[0])
        det_masks = torch.zeros((0, frame.height, frame.width), dtype=torch.bool, device=self.sam2.device)
        if len(dets):
            with _Timer(stats, "segment_boxes"):
                boxed: BoxMasksLike
                if reid is not None:
                    with_pointers = reid.segment_boxes(feats, dets.boxes)
                    boxed, det_pointers = with_pointers, with_pointers.pointers
                else:
                    boxed = session.segment_boxes(feats, dets.boxes)
                dets = dets.select(np.asarray(boxed.keep))
                det_masks = boxed.masks(threshold)
        with _Timer(stats, "associate"):
            track_ids = [int(t) for t in tracked.obj_ids]
            track_masks = video_masks(tracked.low_res, frame.height, frame.width, threshold)
            # two-stage matching; lost tracks re-identified by last box or constant-velocity prediction and,
            # with pointers, by SAM 2's object pointer similarity (both stay on the device)
            track_pointers = (reid.object_pointers(track_ids)
                              if reid is not None and det_pointers is not None else None)
            result = associate_two_stage(
                track_ids, track_masks, masks_to_boxes(track_masks).cpu().numpy(),
                np.array([registry.tracks[t].class_id for t in track_ids], dtype=np.int64),
                det_masks, masks_to_boxes(det_masks).cpu().numpy(), dets.class_ids, dets.scores,
                self.config.association, high_score=high, lost_boxes=registry.lost_boxes(track_ids),
                predicted_boxes=registry.predicted_boxes(track_ids, frame.index),
                track_pointers=track_pointers, det_pointers=det_pointers)
            visible = {t: scores.get(t, -1.0) > 0 for t in track_ids}
            update = registry.on_keyframe(result, dets.scores, dets.class_ids, dets.labels, visible,
                                          tracked.frame_idx)
        born = []
        with _Timer(stats, "prompt"):
            for tid in update.removed:
                session.remove(tid)
            for tid, di in update.refresh:
                session.refresh(tid, feats, det_masks[di])
            for tid, di in update.created:
                session.add_object(tid, feats, mask=det_masks[di])
                if registry.is_confirmed(tid):  # back-fill only confirmed tracks
                    born.append((tid, det_masks[di]))
        stats.tracks_created += len(update.created)
        stats.tracks_removed += len(update.removed)
        stats.tracks_confirmed += len(update.confirmed) + len(born)
        stats.tracks_discarded += len(update.discarded)
        stats.tracks_reidentified += len(result.reacquired)
        return born

    def _backfill(self, born: list[tuple[int, torch.Tensor]], feats: Any, buffer: BackfillBuffer,
                  registry: TrackRegistry) -> None:
        session = self.session
        assert session is not None
        past = buffer.newest_first()
        if not past:
            return
        threshold = self.sam2.mask_threshold
        for tid, mask in born:
            outs = session.backfill(tid, feats, mask, [p.features for p in past])
            for frame, out in zip(past, outs):
                got = video_masks(out.low_res, out.height, out.width, threshold)[0].cpu().numpy()
                if not got.any():
                    break  # the object was not there yet; earlier frames cannot gain it either
                if buffer.paint(frame, tid, got, _snapshot(registry, tid)):
                    self.stats.backfilled_frames += 1

    def _emit(self, p: PendingFrame, registry: TrackRegistry) -> FrameResult:
        with _Timer(self.stats, "emit"):
            host = p.host
            # tracks with pixels, by id; ids whose pixels all went to others drop out; tentative (not yet
            # confirmed) and discarded tracks are never shown: their pixels become background
            order = sorted(range(len(host.obj_ids)), key=lambda k: host.obj_ids[k])
            shown = [k for k in order if registry.emittable(host.obj_ids[k])]
            hidden = [host.obj_ids[k] for k in order if host.areas[k] > 0 and not registry.emittable(host.obj_ids[k])]
            rows = [k for k in shown if host.areas[k] > 0]
            labels = host.labels
            if hidden:  # one table lookup per pixel (np.isin sorts: ~15x slower on a 1080p map)
                lut = np.arange(int(max(host.obj_ids)) + 1, dtype=labels.dtype)
                lut[hidden] = 0
                labels = lut[labels]
            id_list = [host.obj_ids[k] for k in rows]
            # live tracks report their current (voted) class; retired ones what they had at commit
            meta = [_snapshot(registry, t) if t in registry else p.scores[t] for t in id_list]
            class_ids = [m[0] for m in meta]
            overlay = host.overlay
            if overlay is not None:  # drawn at commit: still right unless the tracks or their order changed
                order_now = tuple(id_list[k] for k in drawing_order([m[1] for m in meta]))
                area = dict(zip(host.obj_ids, host.areas.tolist()))
                if order_now != tuple(t for t in p.overlay_ranking if area.get(t, 0) > 0):
                    overlay = None
            # redone on the host: a stale or back-filled overlay; RLE changes that overflowed or were back-filled
            if self.extras.overlay and overlay is None:
                self.stats.extras_redone["overlay"] += 1
            if self.extras.rle and host.changes is None:
                self.stats.extras_redone["rle"] += 1
            result = FrameResult(
                frame_index=p.index, timestamp=p.timestamp, height=int(host.labels.shape[0]),
                width=int(host.labels.shape[1]), track_ids=np.array(id_list, np.int64), labels=labels,
                boxes=host.boxes[rows], areas=host.areas[rows], scores=np.array([m[1] for m in meta], np.float32),
                class_ids=np.array(class_ids, np.int64),
                class_names=[self.prompt.classes[c] for c in class_ids], image=p.image,
                is_keyframe=p.is_keyframe, overlay=overlay, label_changes=host.changes)
        self.stats.frames_emitted += 1
        return result


def _snapshot(registry: TrackRegistry, track_id: int) -> tuple[int, float]:
    """(class id, score) of a live track: its majority-vote class and mean matched detection score."""
    track = registry.tracks[track_id]
    return track.class_id, float(track.score)


class Tracker:
    """Grounding DINO + SAM 2 tracker. Build once (models load once), then ``track`` any number of sources."""

    def __init__(self, detector: Detector, propagator: SegmentationModel,
                 config: TrackerConfig | None = None) -> None:
        if not isinstance(detector, Detector):
            raise ConfigError(f"detector {type(detector).__name__} has no detect(image, prompt, frame_index)")
        if not isinstance(propagator, SegmentationModel):
            raise ConfigError(f"propagator {type(propagator).__name__} is not a segmentation model "
                              "(needs new_session(height, width, num_frames), device, mask_threshold)")
        self.detector = detector
        self.propagator = propagator
        config = replace(config) if config is not None else TrackerConfig()
        # the loaded models' own settings are the truth; the config records them (run.json, overrides)
        if isinstance(detector, TunableDetector):
            config.detector = detector.config
        config.propagator = propagator.config
        config.dtype = precision_name(propagator.amp_dtype)  # type: ignore[assignment]  # 'auto' as resolved
        config.validate()
        self.config = config

    @classmethod
    def from_pretrained(cls, detector: str | Path = DEFAULT_DETECTOR, sam2: str | Path = DEFAULT_SAM2,
                        device: str = "auto", dtype: str = "auto",
                        config: TrackerConfig | None = None) -> Tracker:
        """Load both models (hub id, save_pretrained directory, cached id; SAM 2 also a Meta .pt checkpoint)
        on ``device`` (auto, cpu, cuda or cuda:N) at ``dtype`` (auto, fp32, bf16, fp16).

        ``config.tf32`` (default True) lets fp32 matmuls use TF32 on CUDA Ampere+; False is strict fp32.
        """
        from .models.detector import Detector
        from .models.sam2_model import Sam2Model

        config = replace(config) if config is not None else TrackerConfig()
        config.detector.model, config.propagator.model = str(detector), str(sam2)
        config.device, config.dtype = device, dtype  # type: ignore[assignment]
        config.validate()
        set_tf32(resolve_device(device), config.tf32)
        det = Detector.from_pretrained(str(detector), config.detector, device=device, dtype=dtype)
        prop = Sam2Model.from_pretrained(str(sam2), config.propagator, device=device, dtype=dtype)
        return cls(det, prop, config)

    def extras_for(self, *, picture: bool, rle: bool) -> FrameExtras:
        """The device extras worth building for outputs that show the annotated ``picture`` or write COCO
        ``rle``: on for the GPU, off on the CPU (:meth:`FrameExtras.for_outputs`)."""
        return FrameExtras.for_outputs(self.propagator.device.type, picture=picture, rle=rle)

    def track(self, source: Any, prompt: str | Prompt, *, mode: str | None = None, keep_images: bool = False,
              decoder: str = "av", start: int = 0, stride: int = 1, max_frames: int | None = None,
              extras: FrameExtras | None = None, **overrides: Any) -> TrackingRun:
        """Track the objects ``prompt`` names through ``source`` (a path, glob, camera index, URL or an
        opened FrameSource). ``overrides`` set fields of the keyframe and association configs by name
        (e.g. ``detect_every=5``, ``iou_threshold=0.4``, ``max_objects=20``) and the detector's
        post-processing (``box_threshold``, ``text_threshold``, ``max_detections``, ``nms_iou``, input size).
        ``extras`` asks for the overlay and RLE changes to be built on the device (:class:`FrameExtras`).
        """
        from .sources import open_source

        prompt = prompt if isinstance(prompt, Prompt) else parse_prompt(prompt)
        config = _with_overrides(self.config, mode, overrides)
        if not hasattr(source, "info") or not hasattr(source, "__iter__"):
            source = open_source(source, decoder=decoder, start=start, stride=stride, max_frames=max_frames)
        return TrackingRun(self, source, prompt, config, keep_images, extras)


#: detector fields a single run may override (the model itself is fixed once loaded)
DETECTOR_RUN_FIELDS = ("box_threshold", "text_threshold", "max_detections", "nms_iou", "shortest_edge",
                       "longest_edge")


def _with_overrides(base: TrackerConfig, mode: str | None, overrides: dict[str, Any]) -> TrackerConfig:
    """A copy of ``base`` with per-run overrides applied to whichever stage config owns each field."""
    config = replace(base, keyframes=replace(base.keyframes), association=replace(base.association),
                     detector=replace(base.detector))
    if mode is not None:
        config.mode = mode  # type: ignore[assignment]
    for key, value in overrides.items():
        if key in DETECTOR_RUN_FIELDS:
            setattr(config.detector, key, value)
            continue
        for part in (config.keyframes, config.association):
            if hasattr(part, key):
                setattr(part, key, value)
                break
        else:
            raise ConfigError(f"unknown tracking option {key!r}")
    config.validate()
    return config
