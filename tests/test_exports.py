"""YOLO, COCO and CVAT exports, each read back by a library users read these formats with.

* YOLO segmentation: ``supervision.DetectionDataset.from_yolo`` (Roboflow's maintained reader; it rasterises
  each polygon with ``cv2.fillPoly`` as Ultralytics does). Datumaro, which imports all three formats, cannot
  be installed beside this project's pins (it requires pandas 2.3, pillow 12, opencv < 5).
* COCO: ``pycocotools.coco.COCO`` (``annToMask``).
* CVAT for video 1.1: the XML parsed as CVAT's importer does (``left top width height`` -> box) and the masks
  decoded by ``cvat_sdk.masks.decode_mask``, CVAT's own SDK.

Round trip: the decoded masks equal the written label maps pixel for pixel (COCO, CVAT); YOLO polygons equal
them except on the polygon's own outline (the tolerance :mod:`gsam2_video.sinks.polygons` documents).
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image
from test_sinks_data import CATEGORIES, H, W, make_image, scripted_results, video_info

from gsam2_video.sinks import AsyncWriter, FrameView, make_sinks
from gsam2_video.sinks.cvat import cvat_rle
from gsam2_video.sinks.polygons import mask_polygon, polygon_outline, polygon_points
from gsam2_video.sinks.yolo import split_videos
from gsam2_video.types import FrameResult, VideoInfo

cvat_masks = pytest.importorskip("cvat_sdk.masks")
sv = pytest.importorskip("supervision")
from pycocotools.coco import COCO


def written_label_map(result: FrameResult) -> np.ndarray:
    """What every mask file of the frame holds: visible tracks after overlap resolution."""
    t = FrameView(result).tracks()
    out = np.zeros((result.height, result.width), np.int64)
    for tid, m in zip(t.track_ids, t.masks):
        out[m] = tid
    return out


def hard_shapes_results() -> list[FrameResult]:
    """Masks with a hole, with two separate parts, a single pixel and a 1-pixel diagonal line."""
    h, w = 40, 60
    ring = np.zeros((h, w), bool)
    ring[4:30, 4:30] = True
    ring[10:20, 12:22] = False  # hole
    ring[14:16, 15:17] = True  # island inside the hole
    parts = np.zeros((h, w), bool)
    parts[5:10, 40:55] = True
    parts[20:28, 44:50] = True
    parts[33:36, 2:58] = True
    dot = np.zeros((h, w), bool)
    dot[38, 1] = True
    diag = np.zeros((h, w), bool)
    for k in range(10):
        diag[12 + k, 32 + k] = True
    masks = np.stack([ring, parts, dot, diag])
    results = []
    for i in range(2):
        boxes = np.zeros((4, 4), np.float32)
        results.append(FrameResult(i, i / 25, h, w, np.array([1, 2, 3, 4]), masks, boxes,
                                   np.array([0.9, 0.8, 0.7, 0.6], np.float32), np.array([0, 1, 2, 1]),
                                   [CATEGORIES[c] for c in (0, 1, 2, 1)], image=make_image(i, h, w)))
    return results


def write_all(out: Path, results: list[FrameResult], kinds=("yolo", "coco", "cvat"),
              info: VideoInfo | None = None) -> None:
    with AsyncWriter(make_sinks(kinds, out)) as writer:
        writer.open(info or video_info(), CATEGORIES)
        for r in results:
            writer.write(r)


# -- YOLO ----------------------------------------------------------------------------------------------------
def check_yolo(folder: Path, results: list[FrameResult]) -> None:
    ds = sv.DetectionDataset.from_yolo(images_directory_path=str(folder / "images"),
                                       annotations_directory_path=str(folder / "labels"),
                                       data_yaml_path=str(folder / "data.yaml"), force_masks=True)
    assert ds.classes == CATEGORIES
    assert len(ds) == len(results)
    by_name = {Path(path).name: det for path, _, det in ds}
    for r in results:
        det = by_name[f"{r.frame_index:05d}.jpg"]
        tracks = FrameView(r).tracks()
        assert len(det) == len(tracks)
        if not len(det):
            continue
        assert det.class_id.tolist() == tracks.class_ids.tolist()
        for decoded, truth in zip(det.mask, tracks.masks):
            outline = polygon_outline(polygon_points(mask_polygon(truth)), r.height, r.width)
            differ = decoded != truth
            assert not (differ & ~outline).any(), "a pixel off the polygon's outline differs"
            interior = truth & ~outline
            assert np.array_equal(decoded[interior], truth[interior])


def test_yolo_round_trip_through_supervision(tmp_path):
    results = scripted_results()
    write_all(tmp_path, results, ("yolo",))
    folder = tmp_path / "yolo"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["yolo"]  # nothing temporary left
    assert sorted(p.name for p in (folder / "images").iterdir()) == [f"{i:05d}.jpg" for i in range(6)]
    assert (folder / "labels" / "00002.txt").read_text() == ""  # a frame without objects: background image
    doc = yaml.safe_load((folder / "data.yaml").read_text())
    assert doc["names"] == {0: "person", 1: "car", 2: "dog"} and doc["nc"] == 3
    assert doc["train"] == doc["val"] == "images" and "path" not in doc
    with Image.open(folder / "images" / "00003.jpg") as img:
        assert img.size == (W, H)
    check_yolo(folder, results)


def test_yolo_holes_and_parts_are_one_line_each(tmp_path):
    results = hard_shapes_results()
    write_all(tmp_path, results, ("yolo",))
    lines = (tmp_path / "yolo" / "labels" / "00000.txt").read_text().splitlines()
    assert [line.split()[0] for line in lines] == ["0", "1", "2", "1"]  # one line per object
    assert all(len(line.split()) >= 7 and len(line.split()) % 2 == 1 for line in lines)
    check_yolo(tmp_path / "yolo", results)
    # the hole stays empty away from the 1-pixel bridge to the island, and the island is filled
    ds = sv.DetectionDataset.from_yolo(str(tmp_path / "yolo" / "images"), str(tmp_path / "yolo" / "labels"),
                                       str(tmp_path / "yolo" / "data.yaml"), force_masks=True)
    ring = next(det for path, _, det in ds if path.endswith("00000.jpg")).mask[0]
    assert not ring[17:20, 17:22].any() and ring[14:16, 15:17].all() and ring[4:30, 4:8].all()


def test_split_by_video_is_seeded_and_never_splits_a_video():
    names = [f"clip{i:02d}" for i in range(10)]
    train, val = split_videos(names)
    assert len(val) == 2 and sorted(train + val) == names and not set(train) & set(val)
    assert split_videos(list(reversed(names))) == (train, val)  # order of the inputs does not matter
    assert split_videos(names, seed="other") != (train, val)
    assert split_videos(["only"]) == (["only"], ["only"])
    assert split_videos(["a", "b"])[1] and len(split_videos(["a", "b"])[1]) == 1


# -- COCO ----------------------------------------------------------------------------------------------------
def check_coco(path: Path, results: list[FrameResult], video_id: int = 1, name: str = "synthetic") -> None:
    coco = COCO(str(path))
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == CATEGORIES
    images = [img for img in coco.dataset["images"] if img["video_id"] == video_id]
    assert len(images) == len(results)
    for pos, (img, r) in enumerate(zip(images, results)):
        assert img["file_name"] == f"{name}/{r.frame_index:05d}.jpg" and img["frame_id"] == pos
        assert (img["height"], img["width"]) == (r.height, r.width)
        decoded = np.zeros((r.height, r.width), np.int64)
        anns = coco.loadAnns(coco.getAnnIds(imgIds=[img["id"]]))
        tracks = FrameView(r).tracks()
        assert [a["track_id"] for a in anns] == tracks.track_ids.tolist()
        assert [a["category_id"] for a in anns] == (tracks.class_ids + 1).tolist()
        for a in anns:
            m = coco.annToMask(a).astype(bool)
            assert not decoded[m].any() and a["iscrowd"] == 0 and a["video_id"] == video_id
            assert a["area"] == int(m.sum())
            decoded[m] = a["track_id"]
        assert np.array_equal(decoded, written_label_map(r))


def test_coco_round_trip_through_pycocotools(tmp_path):
    results = scripted_results()
    write_all(tmp_path, results, ("coco",))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["coco.json"]
    check_coco(tmp_path / "coco.json", results)
    doc = json.loads((tmp_path / "coco.json").read_text())
    assert doc["videos"] == [{"id": 1, "name": "synthetic", "width": W, "height": H, "length": 6}]
    assert [a["id"] for a in doc["annotations"]] == list(range(1, len(doc["annotations"]) + 1))


def test_coco_holes_and_parts_are_exact(tmp_path):
    results = hard_shapes_results()
    write_all(tmp_path, results, ("coco",), VideoInfo("shapes", "memory://shapes", 60, 40, 25.0, 2))
    check_coco(tmp_path / "coco.json", results, name="shapes")


# -- CVAT ----------------------------------------------------------------------------------------------------
def read_cvat(path: Path) -> tuple[list[str], dict[int, np.ndarray], list[ET.Element]]:
    """Labels, and per frame the label map of (group_id = object id), decoded as CVAT's importer does."""
    root = ET.parse(path).getroot()
    assert root.findtext("version") == "1.1"
    task = root.find("meta/task")
    assert task.findtext("mode") == "interpolation"
    w = int(task.findtext("original_size/width"))
    h = int(task.findtext("original_size/height"))
    labels = [lab.findtext("name") for lab in task.find("labels")]
    maps: dict[int, np.ndarray] = {}
    tracks = root.findall("track")
    for track in tracks:
        for el in track.findall("mask"):
            if el.get("outside") == "1":
                continue
            left, top = int(el.get("left")), int(el.get("top"))
            points = [int(v) for v in el.get("rle").split(",")]
            points += [left, top, left + int(el.get("width")) - 1, top + int(el.get("height")) - 1]
            m = cvat_masks.decode_mask(points, image_width=w, image_height=h)
            frame_map = maps.setdefault(int(el.get("frame")), np.zeros((h, w), np.int64))
            assert not frame_map[m].any()
            frame_map[m] = int(track.get("group_id"))
    return labels, maps, tracks


def test_cvat_round_trip_through_cvat_sdk(tmp_path):
    results = scripted_results()
    write_all(tmp_path, results, ("cvat",))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cvat.xml"]
    labels, maps, tracks = read_cvat(tmp_path / "cvat.xml")
    assert labels == CATEGORIES
    for r in results:
        truth = written_label_map(r)
        assert np.array_equal(maps.get(r.frame_index, np.zeros_like(truth)), truth)
    # one track per visible object-frame, ordered by object; closed by an outside keyframe on the next frame
    visible = sorted((int(t), r.frame_index) for r in results for t in FrameView(r).tracks().track_ids)
    got = [(int(t.get("group_id")), int(t.find("mask").get("frame"))) for t in tracks]
    assert got == visible
    for t in tracks:
        masks = t.findall("mask")
        frame = int(masks[0].get("frame"))
        assert t.get("label") == CATEGORIES[int(next(
            c for r in results if r.frame_index == frame
            for tid, c in zip(r.track_ids, r.class_ids) if tid == int(t.get("group_id"))))]
        if frame == results[-1].frame_index:
            assert len(masks) == 1
        else:
            assert [(m.get("frame"), m.get("outside")) for m in masks] == [(str(frame), "0"),
                                                                          (str(frame + 1), "1")]


def test_cvat_rle_equals_cvat_sdk_encoding():
    for r in hard_shapes_results()[:1] + scripted_results():
        t = FrameView(r).tracks()
        for m, (x, y, w, h) in zip(t.masks, t.boxes_xywh.tolist()):
            expected = cvat_masks.encode_mask(m, bbox=[x, y, x + w, y + h])
            assert cvat_rle(m, (x, y, w, h)) + [x, y, x + w - 1, y + h - 1] == expected


def test_cvat_holes_and_parts_are_exact_and_stride_is_recorded(tmp_path):
    results = hard_shapes_results()
    results[1].frame_index = 3  # --start 0 --stride 3
    write_all(tmp_path, results, ("cvat",), VideoInfo("shapes", "memory://shapes", 60, 40, 25.0, 2))
    labels, maps, _ = read_cvat(tmp_path / "cvat.xml")
    assert labels == CATEGORIES and sorted(maps) == [0, 3]
    for r in results:
        assert np.array_equal(maps[r.frame_index], written_label_map(r))
    task = ET.parse(tmp_path / "cvat.xml").getroot().find("meta/task")
    assert (task.findtext("start_frame"), task.findtext("stop_frame"), task.findtext("frame_filter")) == \
        ("0", "3", "step=3")


# -- all three, atomic -----------------------------------------------------------------------------------------
def test_interrupted_run_leaves_no_export(tmp_path):
    results = scripted_results()
    with pytest.raises(KeyboardInterrupt), AsyncWriter(make_sinks(["yolo", "coco", "cvat"], tmp_path)) as w:
        w.open(video_info(), CATEGORIES)
        for r in results[:3]:
            w.write(r)
        raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_yolo_without_images_is_one_clear_error(tmp_path):
    from gsam2_video.errors import OutputError

    sink = make_sinks(["yolo"], tmp_path)[0]
    assert sink.needs_image
    sink.open(video_info(), CATEGORIES)
    with pytest.raises(OutputError, match="frame 0 carries no image"):
        sink.write(scripted_results(with_image=False)[0])
    sink.abort()
    assert list(tmp_path.iterdir()) == []


def test_exports_on_a_real_clip(videos_dir, tmp_path):
    from test_sinks_real_clip import CLIP, results_from_clip

    path = videos_dir / CLIP
    if not path.exists():
        pytest.skip(f"{path} not found")
    results = [r for _, r in results_from_clip(path)][:40]
    h, w = results[0].height, results[0].width
    info = VideoInfo(CLIP, str(path), w, h, 29.97, len(results))
    with AsyncWriter(make_sinks(["yolo", "coco", "cvat"], tmp_path)) as writer:
        writer.open(info, ["face", "car"])
        for r in results:
            writer.write(r)
    coco = COCO(str(tmp_path / "coco.json"))
    _, maps, _ = read_cvat(tmp_path / "cvat.xml")
    for img, r in zip(coco.dataset["images"], results):
        truth = written_label_map(r)
        decoded = np.zeros_like(truth)
        for a in coco.loadAnns(coco.getAnnIds(imgIds=[img["id"]])):
            decoded[coco.annToMask(a).astype(bool)] = a["track_id"]
        assert np.array_equal(decoded, truth)
        assert np.array_equal(maps.get(r.frame_index, np.zeros_like(truth)), truth)
    ds = sv.DetectionDataset.from_yolo(str(tmp_path / "yolo" / "images"), str(tmp_path / "yolo" / "labels"),
                                       str(tmp_path / "yolo" / "data.yaml"), force_masks=True)
    assert ds.classes == ["face", "car"] and len(ds) == len(results)
    for path_, _, det in ds:
        r = results[int(Path(path_).stem)]
        t = FrameView(r).tracks()
        assert len(det) == len(t)
        for decoded, truth in zip(det.mask if len(det) else [], t.masks):
            outline = polygon_outline(polygon_points(mask_polygon(truth)), h, w)
            assert not ((decoded != truth) & ~outline).any()
