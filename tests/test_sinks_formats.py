"""Every output format round-tripped through the readers users use: PIL, pycocotools, numpy, PyAV, motmetrics."""

from __future__ import annotations

import csv
import itertools
import json
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils
from test_sinks_data import CATEGORIES, SCRIPT, TIMESTAMPS, H, W, make_result, scripted_results, video_info

from gsam2_video.drawing import annotate
from gsam2_video.errors import OutputError
from gsam2_video.sinks import (
    DavisSink,
    MotSink,
    MotsSink,
    VideoSink,
    YtvisSink,
    davis_palette,
    make_sinks,
    write_run_json,
)
from gsam2_video.types import FrameResult


def run_sink(sink, results, categories=CATEGORIES, info=None):
    sink.open(info or video_info(), categories)
    for r in results:
        sink.write(r)
    sink.close()
    return sink


def visible(result: FrameResult) -> dict[int, np.ndarray]:
    """track id -> mask for tracks with pixels (the synthetic masks are already disjoint)."""
    return {int(t): m for t, m in zip(result.track_ids, result.masks) if m.any()}


def leftovers(out: Path) -> list[str]:
    return sorted(p.name for p in out.iterdir() if p.name.startswith("."))


def test_synthetic_script_covers_the_cases():
    results = scripted_results()
    assert [sorted(visible(r)) for r in results] == [[1, 2], [1, 2, 3], [], [2, 3, 300], [3, 300], [4, 300]]
    assert 1 in results[4].track_ids  # present but invisible (empty mask)


# -- masks/ (DAVIS PNG) ---------------------------------------------------------------------------------------
def test_davis_png_palette_round_trip(tmp_path):
    results = scripted_results()[:3]  # ids <= 255: palette PNGs
    sink = run_sink(DavisSink(tmp_path), results)
    assert not sink.sixteen_bit
    folder = tmp_path / "masks"
    assert sorted(p.name for p in folder.iterdir()) == ["00000.png", "00001.png", "00002.png"]
    for r in results:
        with Image.open(folder / f"{r.frame_index:05d}.png") as img:
            assert img.mode == "P"
            assert img.getpalette()[:768] == davis_palette()
            ids = np.array(img)
        assert ids.dtype == np.uint8 and ids.shape == (H, W)
        assert np.array_equal(ids, r.label_map(np.uint8))
    assert davis_palette()[:9] == [0, 0, 0, 128, 0, 0, 0, 128, 0]  # DAVIS: 0 black, 1 dark red, 2 green
    assert davis_palette()[-3:] == [224, 224, 192]  # ... 255 light grey (the PASCAL VOC colour map)
    assert leftovers(tmp_path) == []


def test_davis_switches_whole_run_to_16_bit_above_255(tmp_path):
    results = scripted_results()  # id 300 appears in frame 3
    sink = run_sink(DavisSink(tmp_path), results)
    assert sink.sixteen_bit
    for r in results:
        with Image.open(tmp_path / "masks" / f"{r.frame_index:05d}.png") as img:
            assert img.mode == "I;16"  # earlier palette frames were rewritten: one format per run
            ids = np.array(img)
        assert np.array_equal(ids.astype(np.int64), r.label_map(np.int64))
    assert np.array(Image.open(tmp_path / "masks" / "00003.png")).max() == 300
    assert not np.array(Image.open(tmp_path / "masks" / "00002.png")).any()  # empty frame -> all background


def test_davis_16_bit_conversion_waits_for_close(tmp_path):
    sink = DavisSink(tmp_path)
    sink.open(video_info(), CATEGORIES)
    for r in scripted_results()[:4]:  # id 300 arrives in frame 3
        sink.write(r)
    [tmp] = [p for p in tmp_path.iterdir() if p.name.startswith(".masks.")]
    assert Image.open(tmp / "00000.png").mode == "P"  # not rewritten mid-run (no stall)
    assert Image.open(tmp / "00003.png").mode == "I;16"
    sink.close()
    assert {Image.open(p).mode for p in (tmp_path / "masks").iterdir()} == {"I;16"}


def test_davis_uses_source_frame_index_and_replaces_older_folder(tmp_path):
    (tmp_path / "masks").mkdir()
    (tmp_path / "masks" / "stale.png").write_bytes(b"old")
    results = [make_result(i, SCRIPT[0], 0.0) for i in (7, 123456)]
    run_sink(DavisSink(tmp_path), results)
    assert sorted(p.name for p in (tmp_path / "masks").iterdir()) == ["00007.png", "123456.png"]
    assert leftovers(tmp_path) == []


def test_davis_rejects_ids_beyond_16_bit(tmp_path):
    sink = DavisSink(tmp_path)
    sink.open(video_info(), CATEGORIES)
    with pytest.raises(OutputError, match="65536 .*exceeds 65535"):
        sink.write(make_result(0, [(65536, 0, 0.9, (10, 10, 5, 5))], 0.0))
    sink.abort()
    assert list(tmp_path.iterdir()) == []


# -- tracks.json (YouTube-VIS) --------------------------------------------------------------------------------
def test_ytvis_json_round_trip_with_pycocotools(tmp_path):
    results = scripted_results()
    run_sink(YtvisSink(tmp_path), results)
    doc = json.loads((tmp_path / "tracks.json").read_text())
    video = doc["videos"][0]
    assert video["length"] == len(results) and (video["height"], video["width"]) == (H, W)
    assert video["frame_indices"] == list(range(len(results))) and video["timestamps"] == TIMESTAMPS
    assert video["file_names"][3] == "synthetic/00003.jpg"
    assert doc["categories"] == [{"id": 1, "name": "person"}, {"id": 2, "name": "car"}, {"id": 3, "name": "dog"}]
    anns = {a["track_id"]: a for a in doc["annotations"]}
    assert sorted(anns) == [1, 2, 3, 4, 300]
    assert sorted(a["id"] for a in doc["annotations"]) == [1, 2, 3, 4, 5]
    for tid, ann in anns.items():
        assert ann["video_id"] == 1
        assert len(ann["segmentations"]) == len(ann["bboxes"]) == len(ann["areas"]) == len(results)
        scores = []
        for pos, r in enumerate(results):
            seg, box, area = ann["segmentations"][pos], ann["bboxes"][pos], ann["areas"][pos]
            truth = visible(r).get(tid)
            if truth is None:
                assert seg is None and box is None and area is None
                continue
            assert isinstance(seg["counts"], str) and seg["size"] == [H, W]
            decoded = mask_utils.decode(seg).astype(bool)  # str counts decode as-is
            assert np.array_equal(decoded, truth)
            assert area == int(truth.sum()) == int(mask_utils.area(seg))
            assert box == [int(v) for v in mask_utils.toBbox(seg)]
            scores.append(float(r.scores[list(r.track_ids).index(tid)]))
        assert ann["score"] == pytest.approx(np.mean(scores), abs=1e-6)
    # track 3: dog, person, dog -> majority dog (category 3); 300 always dog; 1 person; 2 car; 4 car
    assert {t: a["category_id"] for t, a in anns.items()} == {1: 1, 2: 2, 3: 3, 4: 2, 300: 3}
    assert doc["info"]["source"]["name"] == "synthetic" and doc["info"]["fps"] == 25.0


def test_ytvis_rejects_unknown_class_id(tmp_path):
    sink = YtvisSink(tmp_path)
    sink.open(video_info(), ["person"])
    with pytest.raises(OutputError, match=r"class id 1 is not one of the 1 categories"):
        sink.write(make_result(0, [(1, 1, 0.9, (10, 10, 5, 5))], 0.0))
    sink.abort()
    assert not (tmp_path / "tracks.json").exists()


# -- mots.txt ---------------------------------------------------------------------------------------------------
def parse_mots(path: Path) -> list[tuple[int, int, int, int, int, str]]:
    rows = []
    for line in path.read_text().splitlines():
        f, oid, cls, h, w, rle = line.split(" ")
        rows.append((int(f), int(oid), int(cls), int(h), int(w), rle))
    return rows


def test_mots_round_trip_trackeval_layout(tmp_path):
    results = scripted_results()
    run_sink(MotsSink(tmp_path), results)
    rows = parse_mots(tmp_path / "mots.txt")
    expected = [(r.frame_index + 1, tid) for r in results for tid in r.track_ids if tid in visible(r)]
    majority = {1: 1, 2: 2, 3: 3, 4: 2, 300: 3}
    assert [(f, oid % 1000) for f, oid, *_ in rows] == expected  # frames 1-based (MOTSChallenge)
    by_frame: dict[int, list] = {}
    for f, oid, cls, h, w, rle in rows:
        tid = oid % 1000
        assert oid // 1000 == cls == majority[tid]  # KITTI-MOTS: id = class * 1000 + instance
        assert (h, w) == (H, W)
        rle_obj = {"size": [h, w], "counts": rle.encode()}
        assert np.array_equal(mask_utils.decode(rle_obj).astype(bool), visible(results[f - 1])[tid])
        by_frame.setdefault(f, []).append(rle_obj)
    for f, rles in by_frame.items():  # TrackEval's overlap check, done the same way
        merged = rles[0]
        for rle in rles[1:]:
            assert mask_utils.area(mask_utils.merge([merged, rle], intersect=True)) == 0
            merged = mask_utils.merge([merged, rle], intersect=False)
    assert 3 not in by_frame  # the empty frame has no line
    assert leftovers(tmp_path) == []


def test_mots_frame_base_zero_for_kitti(tmp_path):
    run_sink(MotsSink(tmp_path, frame_base=0), scripted_results())
    assert sorted({row[0] for row in parse_mots(tmp_path / "mots.txt")}) == [0, 1, 3, 4, 5]


def test_mots_widens_id_multiplier_for_track_ids_from_1000(tmp_path, caplog):
    script = [[(5, 1, 0.9, (10, 10, 5, 5)), (1005, 0, 0.8, (25, 35, 6, 6))]]
    run_sink(MotsSink(tmp_path), [make_result(0, script[0], 0.0)])
    rows = parse_mots(tmp_path / "mots.txt")
    assert [(oid, cls) for _, oid, cls, *_ in rows] == [(2 * 10000 + 5, 2), (1 * 10000 + 1005, 1)]
    assert "10000" in caplog.text


# -- mot.txt ----------------------------------------------------------------------------------------------------
def test_mot_round_trip_numpy_and_motmetrics(tmp_path):
    results = scripted_results()
    run_sink(MotSink(tmp_path), results)
    path = tmp_path / "mot.txt"
    with open(path, newline="") as fh:
        assert all(len(row) == 10 for row in csv.reader(fh))
    table = np.loadtxt(path, delimiter=",", ndmin=2)
    expected = []
    for r in results:
        vis = visible(r)
        for tid, score in zip(r.track_ids, r.scores):
            if tid in vis:
                ys, xs = np.nonzero(vis[tid])
                expected.append([r.frame_index + 1, tid, xs.min(), ys.min(), xs.max() - xs.min() + 1,
                                 ys.max() - ys.min() + 1, round(float(score), 4), -1, -1, -1])
    np.testing.assert_allclose(table, np.array(expected, dtype=np.float64), atol=1e-6)
    mm = pytest.importorskip("motmetrics")
    df = mm.io.loadtxt(str(path), fmt="mot15-2D")
    assert len(df) == len(expected)
    assert sorted(set(df.index.get_level_values(0))) == [1, 2, 4, 5, 6]


# -- video.mp4 --------------------------------------------------------------------------------------------------
def decode_video(path: Path):
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        codec = s.codec_context.name
        frames = [(f.time, f.to_ndarray(format="rgb24")) for f in c.decode(s)]
    return codec, frames


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(((a.astype(np.float64) - b.astype(np.float64)) ** 2).mean())
    return 10 * np.log10(255.0**2 / mse)


def test_video_round_trip_frame_count_size_and_timestamps(tmp_path):
    results = scripted_results(scale=3)  # 150 x 111: odd height, padded to 112
    h, w = results[0].height, results[0].width
    run_sink(VideoSink(tmp_path), results)
    codec, frames = decode_video(tmp_path / "video.mp4")
    assert codec == "h264"
    assert len(frames) == len(results)
    assert all(img.shape == (h + 1, w, 3) for _, img in frames)
    assert [t for t, _ in frames] == pytest.approx(TIMESTAMPS, abs=1 / 90000)
    for r, (_, img) in zip(results, frames):
        got = img[:h]
        assert np.abs(img[h].astype(int) - img[h - 1]).mean() < 3  # padding repeats the edge row
        if len(visible(r)):  # the decoded frame is the annotated one, not the raw one (H.264 is lossy)
            assert psnr(annotate(r.image, r), got) > 20
            assert psnr(annotate(r.image, r), got) > psnr(r.image, got) + 5
        else:
            assert psnr(r.image, got) > 32
    assert leftovers(tmp_path) == []


def test_video_fps_fallback_and_increasing_times(tmp_path):
    results = [make_result(i, SCRIPT[0], float("nan") if i == 2 else 0.0) for i in range(4)]
    run_sink(VideoSink(tmp_path), results, info=video_info(fps=None))
    with av.open(str(tmp_path / "video.mp4")) as c:
        s = c.streams.video[0]
        assert s.guessed_rate == Fraction(30) or s.average_rate is not None
        times = [f.time for f in c.decode(s)]
    assert len(times) == 4 and all(b > a for a, b in itertools.pairwise(times))


def test_video_resizes_frames_when_the_size_changes(tmp_path, caplog):
    small = scripted_results()[:2]
    big = scripted_results(scale=2)[2:4]
    run_sink(VideoSink(tmp_path), small + big)
    _, frames = decode_video(tmp_path / "video.mp4")
    assert len(frames) == 4 and all(img.shape == (H + 1, W, 3) for _, img in frames)
    assert "resizing frames" in caplog.text


def test_video_without_image_is_an_output_error(tmp_path):
    sink = VideoSink(tmp_path)
    sink.open(video_info(), CATEGORIES)
    with pytest.raises(OutputError, match="frame 0 carries no image"):
        sink.write(scripted_results(with_image=False)[0])
    sink.abort()
    assert list(tmp_path.iterdir()) == []


def test_video_with_no_frames_writes_nothing(tmp_path):
    run_sink(VideoSink(tmp_path), [])
    assert list(tmp_path.iterdir()) == []


# -- shared rules --------------------------------------------------------------------------------------------
def test_overlapping_masks_resolved_by_score_in_every_format(tmp_path):
    a = np.zeros((H, W), bool)
    a[5:20, 5:25] = True
    b = np.zeros((H, W), bool)
    b[10:30, 15:40] = True  # overlaps a; b has the higher score and wins the overlap
    r = FrameResult(0, 0.0, H, W, np.array([1, 2]), np.stack([a, b]),
                    np.array([[5, 5, 25, 20], [15, 10, 40, 30]], np.float32), np.array([0.6, 0.9], np.float32),
                    np.array([0, 1]), ["person", "car"], image=np.zeros((H, W, 3), np.uint8))
    sinks = make_sinks(["masks", "json", "mots", "mot"], tmp_path)
    for s in sinks:
        run_sink(s, [r])
    want_a = a & ~b
    ids = np.array(Image.open(tmp_path / "masks" / "00000.png"))
    assert np.array_equal(ids == 1, want_a) and np.array_equal(ids == 2, b)
    doc = json.loads((tmp_path / "tracks.json").read_text())
    seg = {ann["track_id"]: mask_utils.decode(ann["segmentations"][0]).astype(bool) for ann in doc["annotations"]}
    assert np.array_equal(seg[1], want_a) and np.array_equal(seg[2], b)
    rows = parse_mots(tmp_path / "mots.txt")
    assert [oid for _, oid, *_ in rows] == [1001, 2002]
    mot = np.loadtxt(tmp_path / "mot.txt", delimiter=",")
    ys, xs = np.nonzero(want_a)
    assert list(mot[0, 2:6]) == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]


def test_track_id_zero_is_rejected(tmp_path):
    sink = MotSink(tmp_path)
    sink.open(video_info(), CATEGORIES)
    with pytest.raises(OutputError, match="track id 0; track ids must be >= 1"):
        sink.write(make_result(0, [(0, 0, 0.9, (10, 10, 5, 5))], 0.0))
    sink.abort()
    assert list(tmp_path.iterdir()) == []


def test_all_sinks_together_then_run_json(tmp_path):
    results = scripted_results()
    for s in make_sinks(["video", "masks", "json", "mots", "mot"], tmp_path):
        run_sink(s, results)
    report = {"source": video_info().to_json(), "frames": {"read": np.int64(6), "written": 6, "dropped": 0},
              "stage_seconds": {"write": np.float32(0.5)}, "out": tmp_path}
    write_run_json(tmp_path / "run.json", report)
    run = json.loads((tmp_path / "run.json").read_text())
    assert run["frames"] == {"read": 6, "written": 6, "dropped": 0}
    assert run["stage_seconds"]["write"] == 0.5 and run["out"] == str(tmp_path)
    assert run["versions"]["numpy"] == np.__version__ and run["versions"]["av"] == av.__version__
    assert sorted(p.name for p in tmp_path.iterdir()) == ["masks", "mot.txt", "mots.txt", "run.json",
                                                         "tracks.json", "video.mp4"]


def test_to_supervision():
    sv = pytest.importorskip("supervision")
    r = scripted_results()[3]
    det = r.to_supervision()
    assert isinstance(det, sv.Detections) and len(det) == 3
    np.testing.assert_array_equal(det.tracker_id, [2, 3, 300])
    np.testing.assert_array_equal(det.class_id, [1, 0, 2])
    np.testing.assert_allclose(det.confidence, [0.70, 0.60, 0.95], rtol=1e-6)
    np.testing.assert_array_equal(det.xyxy, r.boxes)
    assert det.mask.shape == (3, H, W) and np.array_equal(det.mask, r.masks)
    assert list(det.data["class_name"]) == ["car", "person", "dog"]
    sub = det[det.tracker_id == 300]  # sv indexing keeps data aligned
    assert list(sub.data["class_name"]) == ["dog"]
    empty = FrameResult.empty(9, 0.1, H, W).to_supervision()
    assert len(empty) == 0


def test_rle_column_strip_path_matches_pycocotools():
    from gsam2_video.sinks import encode_masks
    from gsam2_video.sinks.base import tight_boxes_xywh

    rng = np.random.default_rng(0)
    cases = []
    for _ in range(200):
        h, w = (int(v) for v in rng.integers(1, 30, 2))
        cases.append(rng.random((3, h, w)) < rng.random())
    full = np.ones((2, 5, 7), bool)
    corners = np.zeros((4, 6, 9), bool)
    corners[0, 0, 0] = corners[1, -1, -1] = corners[2, 0, -1] = corners[3, -1, 0] = True
    cases += [full, corners]
    for masks in cases:
        masks = masks[[m.any() for m in masks]]
        if not len(masks):
            continue
        expected = [r["counts"].decode() for r in
                    mask_utils.encode(np.asfortranarray(masks.transpose(1, 2, 0).astype(np.uint8)))]
        assert encode_masks(masks, tight_boxes_xywh(masks)) == expected == encode_masks(masks)


def test_sink_must_implement_write_or_write_view():
    from gsam2_video.sinks import Sink

    with pytest.raises(TypeError, match="must implement write"):
        class Nothing(Sink):
            kind = "nothing"
            outputs = property(lambda self: [])

            def open(self, info, categories): ...
            def close(self): ...
            def abort(self): ...
