"""``gsam2-video track --save masks,yolo,coco,cvat`` end to end with the tiny random models: every export
reads back (pycocotools, cvat_sdk, supervision) to the run's own mask PNGs, and the run scores J&F = 1,
HOTA = 1 against itself through ``gsam2-video eval``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from test_cli_track import model_args, read_masks, run_cli
from test_exports import read_cvat

from gsam2_video.sinks.polygons import mask_polygon, polygon_outline, polygon_points

sv = pytest.importorskip("supervision")
pytest.importorskip("cvat_sdk")
pytest.importorskip("trackeval")
from pycocotools.coco import COCO

FRAMES = 12


def test_track_exports_read_back_and_self_score(tmp_path: Path, tiny_models: dict[str, Path],
                                                videos_dir: Path) -> None:
    out = tmp_path / "out"
    proc = run_cli("track", str(videos_dir / "bikes.mp4"), "--prompt", "person. bicycle. car.", "--out", str(out),
                   "--save", "masks,mots,yolo,coco,cvat", "--max-frames", str(FRAMES), "--no-progress",
                   *model_args(tiny_models))
    assert proc.returncode == 0, proc.stderr
    masks = read_masks(out / "masks")
    assert sorted(masks) == list(range(FRAMES))
    assert any(m.any() for m in masks.values()), "the random detector at threshold 0.05 must create tracks"

    coco = COCO(str(out / "coco.json"))
    assert [c["name"] for c in coco.dataset["categories"]] == ["person", "bicycle", "car"]
    for img in coco.dataset["images"]:
        decoded = np.zeros(masks[0].shape, np.int64)
        for a in coco.loadAnns(coco.getAnnIds(imgIds=[img["id"]])):
            decoded[coco.annToMask(a).astype(bool)] = a["track_id"]
        assert np.array_equal(decoded, masks[img["frame_index"]])

    labels, cvat_maps, _ = read_cvat(out / "cvat.xml")
    assert labels == ["person", "bicycle", "car"]
    for f, truth in masks.items():
        assert np.array_equal(cvat_maps.get(f, np.zeros(truth.shape, np.int64)), truth)

    ds = sv.DetectionDataset.from_yolo(str(out / "yolo" / "images"), str(out / "yolo" / "labels"),
                                       str(out / "yolo" / "data.yaml"), force_masks=True)
    assert ds.classes == ["person", "bicycle", "car"] and len(ds) == FRAMES
    for path, image, det in ds:
        label = masks[int(Path(path).stem)]
        assert image.shape[:2] == label.shape
        ids = [i for i in np.unique(label) if i]
        assert len(det) == len(ids)
        for decoded, tid in zip(det.mask if len(det) else [], ids):
            truth = label == tid
            outline = polygon_outline(polygon_points(mask_polygon(truth)), *truth.shape)
            assert not ((decoded != truth) & ~outline).any()

    proc = run_cli("eval", str(out / "masks"), str(out / "masks"))
    assert proc.returncode == 0, proc.stderr
    assert json.loads((out / "eval.json").read_text())["means"]["J&F"] == 1.0
    proc = run_cli("eval", str(out / "mots.txt"), str(out / "mots.txt"), "--json", str(tmp_path / "t.json"))
    assert proc.returncode == 0, proc.stderr
    assert json.loads((tmp_path / "t.json").read_text())["HOTA"] == 1.0
