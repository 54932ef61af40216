"""The fast writers against the code they replace, on real clip frames.

* Deterministic files (masks/*.png, tracks.json, mots.txt, mot.txt) written through the parallel AsyncWriter
  with the label-map FrameView are byte-identical to the previous code path: the mask-based
  ``visible_tracks`` + ``encode_masks`` + per-mask PNG labels, every sink on one thread (``ReferenceView``).
* The label-map drawing matches the previous ``annotate`` (kept verbatim in tests/_drawing_before.py) within
  a small per-pixel tolerance; the torch overlay equals the numpy one.
"""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from _drawing_before import annotate as annotate_before
from clip_results import clip_frames, clip_results, tight_xyxy

from gsam2_video.drawing import annotate, line_thickness, overlay
from gsam2_video.labelmap import resolved_label_map, track_boxes
from gsam2_video.sinks import AsyncWriter, FrameView, make_sinks, visible_tracks
from gsam2_video.sinks.base import VisibleTracks
from gsam2_video.sinks.rle import encode_label_strips, encode_masks
from gsam2_video.types import FrameResult, VideoInfo

DETERMINISTIC = ["masks", "json", "mots", "mot"]


class ReferenceView(FrameView):
    """The previous derivations: mask-based overlap resolution, boxes and RLE, PNG labels painted per mask."""

    def tracks(self, kind: str = "sink") -> VisibleTracks:
        if self._tracks is None:
            self._tracks = visible_tracks(self.result, kind)
        return self._tracks

    def rles(self, kind: str = "sink") -> list[str]:
        if self._rles is None:
            t = self.tracks(kind)
            self._rles = encode_masks(t.masks, t.boxes_xywh)
        return self._rles

    def label_map(self, kind: str = "sink") -> np.ndarray:
        t = self.tracks(kind)
        top = int(t.track_ids.max()) if len(t) else 0
        labels = np.zeros((self.result.height, self.result.width), np.uint8 if top <= 255 else np.uint16)
        for tid, mask in zip(t.track_ids, t.masks):
            labels[mask] = tid
        return labels


def overlapping(results: list[FrameResult], shift: int) -> list[FrameResult]:
    """The same frames with every mask also grown ``shift`` px to the right: neighbours now overlap, and the
    sinks must resolve each contested pixel by score."""
    out = []
    for r in results:
        masks = r.masks.copy()
        for _ in range(shift):
            masks[:, :, 1:] |= masks[:, :, :-1]
        out.append(FrameResult(r.frame_index, r.timestamp, r.height, r.width, r.track_ids, masks,
                               np.array([tight_xyxy(m) for m in masks], np.float32).reshape(-1, 4), r.scores,
                               r.class_ids, r.class_names, image=r.image))
    return out


def write_files(tmp, results, categories, info, reference: bool) -> dict[str, bytes]:
    sinks = make_sinks(DETERMINISTIC, tmp)
    if reference:
        for s in sinks:
            s.open(info, categories)
        for r in results:
            view = ReferenceView(r)
            for s in sinks:
                s.write_view(view)
        for s in sinks:
            s.close()
    else:
        with AsyncWriter(sinks, max_queue=4, parallel=True) as writer:
            writer.open(info, categories)
            for r in results:
                writer.write(r)
        assert writer.frames_written == len(results)
    files = {}
    for path in sorted(p for p in tmp.rglob("*") if p.is_file()):
        data = path.read_bytes()
        if path.name == "tracks.json":  # the creation time is the only field allowed to differ
            doc = json.loads(data)
            doc["info"]["date_created"] = "-"
            data = json.dumps(doc).encode()
        files[str(path.relative_to(tmp))] = data
    return files


@pytest.mark.parametrize(("clip", "objects", "first_id", "shift"), [
    ("bikes.mp4", 10, 1, 0),
    ("bikes.mp4", 6, 252, 0),  # ids cross 255: the PNGs switch to 16 bit mid-run
    ("vtest.avi", 8, 1, 9),  # overlapping masks
    ("carphone_pristine.mp4", 3, 1, 0),
])
def test_deterministic_outputs_are_byte_identical_to_the_previous_path(videos_dir, tmp_path, clip, objects,
                                                                         first_id, shift):
    frames = clip_frames(videos_dir / clip, 6)
    results = clip_results(frames, objects, seed=objects, first_id=first_id)
    if shift:
        results = overlapping(results, shift)
        assert any(r.masks.sum(0).max() > 1 for r in results)
    h, w = frames[0].shape[:2]
    info = VideoInfo(clip, str(videos_dir / clip), w, h, 25.0, len(results))
    categories = ["person", "bicycle", "car"]
    before = write_files(tmp_path / "before", results, categories, info, reference=True)
    after = write_files(tmp_path / "after", results, categories, info, reference=False)
    assert sorted(before) == sorted(after)
    assert len([k for k in before if k.startswith("masks/")]) == len(results)
    for name in before:
        assert before[name] == after[name], name


def test_results_built_from_a_label_map_write_the_same_files_without_building_masks(videos_dir, tmp_path):
    """The pipeline's results carry a label map (``labels=``): the writers read it as it is, the same bytes
    as from masks, and no N x H x W mask array is ever made."""
    frames = clip_frames(videos_dir / "bikes.mp4", 4)
    from_masks = clip_results(frames, 8, seed=4, first_id=250)
    from_labels = [FrameResult(r.frame_index, r.timestamp, r.height, r.width, r.track_ids, boxes=r.boxes,
                               scores=r.scores, class_ids=r.class_ids, class_names=r.class_names, image=r.image,
                               labels=r.label_map(np.uint16)) for r in from_masks]
    h, w = frames[0].shape[:2]
    info = VideoInfo("bikes", "bikes", w, h, 25.0, len(frames))
    categories = ["person", "bicycle", "car"]
    a = write_files(tmp_path / "masks", from_masks, categories, info, reference=False)
    b = write_files(tmp_path / "labels", from_labels, categories, info, reference=False)
    assert a == b and len(a) == len(frames) + 3
    assert all(r._masks is None for r in from_labels)  # nothing asked for per-track masks
    for r in from_labels:
        assert np.array_equal(annotate(r.image, r), annotate(r.image, from_masks[r.frame_index]))
    assert all(r._masks is None for r in from_labels)


def test_label_map_boxes_areas_and_rle_match_the_mask_path(videos_dir):
    frames = clip_frames(videos_dir / "vtest.avi", 2)
    for r in overlapping(clip_results(frames, 12, seed=3), 7):
        ref = visible_tracks(r)
        labels = resolved_label_map(r)
        view = FrameView(r)
        t = view.tracks()
        assert np.array_equal(t.track_ids, ref.track_ids) and np.array_equal(t.boxes_xywh, ref.boxes_xywh)
        assert np.array_equal(t.areas, ref.areas) and np.array_equal(t.masks, ref.masks)
        assert view.rles() == encode_masks(ref.masks, ref.boxes_xywh)
        assert encode_label_strips(labels, t.track_ids, t.boxes_xywh) == view.rles()
        # wrong box hints cost time, never a wrong box
        wrong = np.zeros((len(r), 4), np.float32)
        boxes, areas = track_boxes(labels, r.track_ids, wrong)
        keep = areas > 0
        assert np.array_equal(boxes[keep], ref.boxes_xywh) and np.array_equal(areas[keep], ref.areas)


@pytest.mark.parametrize(("clip", "size", "objects"), [
    ("bikes.mp4", (720, 1280), 10),
    ("bikes.mp4", None, 30),
    ("vtest.avi", None, 5),
    ("carphone_pristine.mp4", None, 2),
])
def test_drawing_matches_the_previous_annotate(videos_dir, clip, size, objects):
    frames = clip_frames(videos_dir / clip, 2, size)
    for r in clip_results(frames, objects, seed=objects):
        before = annotate_before(r.image, r).astype(np.int16)
        after = annotate(r.image, r)
        diff = np.abs(before - after).max(axis=-1)
        # blends are identical; outlines are drawn along the label-map edges instead of traced contours,
        # so a thin band of pixels along some edges differs (measured: 0.0-0.6 % of the frame)
        assert diff.mean() < 1.5
        assert (diff > 0).mean() < 0.01
        # away from the edges (5 px in) every mask pixel is exactly the old blend, boxes and captions
        interior = np.zeros((r.height, r.width), bool)
        for m in r.masks:
            interior |= cv2.erode(m.view(np.uint8), np.ones((11, 11), np.uint8), borderValue=0).view(bool)
        assert interior.sum() > 100 and not diff[interior].any()


def test_overlay_torch_equals_overlay_on_cpu_tensors(videos_dir):
    torch = pytest.importorskip("torch")
    from gsam2_video.drawing_torch import overlay_torch

    frames = clip_frames(videos_dir / "bikes.mp4", 1, (180, 320))
    for objects, alpha, first_id in [(10, 0.5, 1), (25, 0.35, 1), (4, 0.5, 300)]:
        r = clip_results(frames, objects, seed=objects, first_id=first_id)[0]
        labels = resolved_label_map(r)
        thickness = 2  # a widened outline (the max-filter path) at this small size
        want = overlay(r.image, labels, r.track_ids, r.scores, alpha=alpha, thickness=thickness)
        got = overlay_torch(torch.from_numpy(r.image), torch.from_numpy(labels.astype(np.int32)),
                            r.track_ids.tolist(), torch.from_numpy(r.scores), alpha=alpha,
                            thickness=thickness).numpy()
        diff = np.abs(want.astype(np.int16) - got)
        assert diff.max() <= (0 if alpha == 0.5 else 1)  # alpha 0.5 blends exactly; else float rounding
        assert (diff > 0).mean() < 0.005
    assert line_thickness(1080, 1920) == 3


def test_video_sink_takes_a_device_built_overlay_and_draws_only_boxes_and_captions(videos_dir, tmp_path):
    """A result carrying ``overlay`` (what the GPU path hands over) gives the same video as drawing on the
    host: the overlay_torch picture plus the host's boxes and captions equals annotate()."""
    torch = pytest.importorskip("torch")
    import av

    from gsam2_video.drawing_torch import overlay_torch

    frames = clip_frames(videos_dir / "bikes.mp4", 3, (144, 256))
    results = clip_results(frames, 5, seed=2)
    videos = {}
    for name in ("host", "device"):
        out = tmp_path / name
        (sink,) = make_sinks(["video"], out, video_codec="libx264", video_crf=0, video_preset="ultrafast")
        sink.open(VideoInfo("b", "b", 256, 144, 25.0, 3), ["person", "bicycle", "car"])
        for r in results:
            if name == "device":
                labels = torch.from_numpy(resolved_label_map(r).astype(np.int32))
                drawn = overlay_torch(torch.from_numpy(r.image), labels, r.track_ids.tolist(),
                                      torch.from_numpy(r.scores), thickness=line_thickness(144, 256))
                r = FrameResult(r.frame_index, r.timestamp, r.height, r.width, r.track_ids, r.masks, r.boxes,
                                r.scores, r.class_ids, r.class_names, image=None)
                r.overlay = drawn.numpy()
            sink.write(r)
        sink.close()
        with av.open(str(out / "video.mp4")) as c:
            videos[name] = [f.to_ndarray(format="rgb24") for f in c.decode(c.streams.video[0])]
    assert len(videos["host"]) == len(videos["device"]) == 3
    for a, b in zip(videos["host"], videos["device"]):
        assert np.array_equal(a, b)


def test_label_rle_equals_mask_rle_on_random_small_maps():
    """Edge cases the clips rarely hit: full-height boxes (runs crossing columns), masks touching the first
    or last pixel, single rows and columns."""
    rng = np.random.default_rng(0)
    for _ in range(600):
        h, w = (int(v) for v in rng.integers(1, 12, 2))
        labels = rng.integers(0, 3, (h, w)).astype(np.uint8)
        if rng.random() < 0.2:
            labels[:] = 1
        elif rng.random() < 0.25:
            labels = np.where(rng.random((h, w)) < 0.9, 1, 0).astype(np.uint8)
        ids = np.array([1, 2])
        boxes, areas = track_boxes(labels, ids)
        k = areas > 0
        assert encode_label_strips(labels, ids[k], boxes[k]) == \
            encode_masks(labels[None] == ids[k][:, None, None], boxes[k])
        wide = labels.astype(np.int64)  # a dtype OpenCV cannot transpose
        assert encode_label_strips(wide, ids[k], boxes[k]) == encode_label_strips(labels, ids[k], boxes[k])
