"""``dataset --save yolo,coco,cvat``: set-wide exports built from the finished videos, read back by
supervision (YOLO), pycocotools (COCO) and cvat_sdk (CVAT), equal to the dataset's own Annotations PNGs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image
from test_dataset_layout import ScriptedTracker, make_videos, obj, write_video
from test_exports import read_cvat

from gsam2_video.cli import main
from gsam2_video.dataset.exports import category_order, parse_dataset_save
from gsam2_video.dataset.filters import Filters
from gsam2_video.dataset.inputs import JobDefaults, collect_jobs
from gsam2_video.dataset.layout import DatasetLayout
from gsam2_video.dataset.merge import merge_dataset
from gsam2_video.dataset.runner import DatasetRunner, RunnerOptions
from gsam2_video.errors import ConfigError
from gsam2_video.sinks.polygons import mask_polygon, polygon_outline, polygon_points

sv = pytest.importorskip("supervision")
pytest.importorskip("cvat_sdk")
from pycocotools.coco import COCO

PROMPT = "person. car. dog."


def videos(folder: Path) -> None:
    make_videos(folder)  # alpha (person, car), beta (car, dog)
    for k in range(3):
        write_video(folder, f"gamma{k}", 3, [obj(1, "dog", 0, 3, [2 + k, 2, 12, 14], dx=1),
                                             obj(4, "person", 1, 3, [16, 4, 22, 20])])


def run(folder: Path, out: Path, exports: tuple[str, ...], save_frames: bool = True):
    jobs = collect_jobs([str(folder)], JobDefaults(prompt=PROMPT, filters=Filters()))
    runner = DatasetRunner(ScriptedTracker, DatasetLayout(out),
                           RunnerOptions(save_frames=save_frames, progress=False, exports=exports),
                           {"detector": "scripted"})
    return runner.run(jobs)


def annotation_maps(out: Path, video: str) -> dict[int, np.ndarray]:
    return {int(p.stem): np.array(Image.open(p)).astype(np.int64)
            for p in sorted((out / "Annotations" / video).glob("*.png"))}


def check_exports(out: Path, names: list[str]) -> None:
    # COCO: one file for the set, categories in prompt order, masks equal to the PNGs
    coco = COCO(str(out / "coco.json"))
    assert [c["name"] for c in coco.dataset["categories"]] == ["person", "car", "dog"]
    assert [v["name"] for v in coco.dataset["videos"]] == names
    for video in coco.dataset["videos"]:
        maps = annotation_maps(out, video["name"])
        images = [i for i in coco.dataset["images"] if i["video_id"] == video["id"]]
        assert [i["frame_index"] for i in images] == sorted(maps)
        for img in images:
            assert (out / "JPEGImages" / img["file_name"]).is_file()
            decoded = np.zeros_like(maps[img["frame_index"]])
            for a in coco.loadAnns(coco.getAnnIds(imgIds=[img["id"]])):
                decoded[coco.annToMask(a).astype(bool)] = a["track_id"]
            assert np.array_equal(decoded, maps[img["frame_index"]])
    # CVAT: one file per video, masks equal to the PNGs
    assert sorted(p.name for p in (out / "cvat").iterdir()) == [f"{n}.xml" for n in names]
    for name in names:
        labels, cvat_maps, _ = read_cvat(out / "cvat" / f"{name}.xml")
        assert labels == ["person", "car", "dog"]
        for frame, truth in annotation_maps(out, name).items():
            assert np.array_equal(cvat_maps.get(frame, np.zeros_like(truth)), truth)
    # YOLO: split by video, images linked (written once), labels within the polygon tolerance
    doc = yaml.safe_load((out / "yolo" / "data.yaml").read_text())
    assert doc["names"] == {0: "person", 1: "car", 2: "dog"}
    assert (doc["train"], doc["val"]) == ("images/train", "images/val")
    train = sorted(p.name for p in (out / "yolo" / "images" / "train").iterdir())
    val = sorted(p.name for p in (out / "yolo" / "images" / "val").iterdir())
    assert sorted(train + val) == names and not set(train) & set(val) and len(val) == 1
    for part, part_names in (("train", train), ("val", val)):
        for name in part_names:
            for img in (out / "yolo" / "images" / part / name).iterdir():
                assert img.stat().st_ino == (out / "JPEGImages" / name / img.name).stat().st_ino
            ds = sv.DetectionDataset.from_yolo(str(out / "yolo" / "images" / part / name),
                                               str(out / "yolo" / "labels" / part / name),
                                               str(out / "yolo" / "data.yaml"), force_masks=True)
            maps = annotation_maps(out, name)
            assert len(ds) == len(maps)
            for path, _, det in ds:
                truth_map = maps[int(Path(path).stem)]
                ids = [i for i in np.unique(truth_map) if i]
                assert len(det) == len(ids)
                for decoded, oid in zip(det.mask if len(det) else [], ids):
                    truth = truth_map == oid
                    outline = polygon_outline(polygon_points(mask_polygon(truth)), *truth.shape)
                    assert not ((decoded != truth) & ~outline).any()


def test_exports_of_a_dataset_run(tmp_path):
    videos(tmp_path / "in")
    out = tmp_path / "out"
    summary = run(tmp_path / "in", out, ("yolo", "coco", "cvat"))
    assert summary.done == 5 and summary.failed == 0
    names = ["alpha", "beta", "gamma0", "gamma1", "gamma2"]
    check_exports(out, names)
    assert not [p for p in out.rglob("*") if ".partial" in p.name or p.name.endswith(".spill")]


def test_merge_builds_the_exports_after_shard_runs(tmp_path):
    videos(tmp_path / "in")
    out = tmp_path / "out"
    jobs = collect_jobs([str(tmp_path / "in")], JobDefaults(prompt=PROMPT, filters=Filters()))
    from gsam2_video.dataset.shard import Shard

    for i in range(2):
        DatasetRunner(ScriptedTracker, DatasetLayout(out), RunnerOptions(save_frames=True, progress=False),
                      {"detector": "scripted"}, shard=Shard(i, 2)).run(jobs)
    assert not (out / "coco.json").exists()
    merge_dataset(DatasetLayout(out), ("yolo", "coco", "cvat"))
    check_exports(out, ["alpha", "beta", "gamma0", "gamma1", "gamma2"])


def test_save_names_and_category_order():
    assert parse_dataset_save("masks,json") == ()
    assert parse_dataset_save("cvat, YOLO,masks") == ("yolo", "cvat")
    for bad, message in (("video", "written by 'track' only"), ("voc", "unknown output voc"), ("", "unknown")):
        with pytest.raises(ConfigError, match=message):
            parse_dataset_save(bad)

    class R:
        def __init__(self, prompt, cats):
            self.settings = {"prompt": prompt}
            self.objects = [type("O", (), {"category": c})() for c in cats]

    assert category_order([R("dog. Person.", ["dog"]), R("car. person.", ["car"]), R("", ["Zebra"])]) == \
        ["dog", "person", "car", "zebra"]


def test_dataset_cli_rejects_track_only_outputs(tmp_path, capsys):
    videos(tmp_path / "in")
    code = main(["dataset", str(tmp_path / "in"), "--out", str(tmp_path / "out"), "--prompt", PROMPT,
                 "--save", "masks,mots"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--save mots: written by 'track' only" in err[0]
    assert not (tmp_path / "out").exists()


def test_yolo_turns_frame_saving_on(tmp_path, monkeypatch):
    """``--save yolo`` without ``--save-frames`` still saves the frames YOLO links to."""
    import gsam2_video.cli.dataset as dataset_cli

    seen = {}

    class Runner:
        def __init__(self, make, layout, options, settings, **kw):
            seen["options"] = options

        def run(self, jobs):
            from gsam2_video.dataset.runner import DatasetSummary

            return DatasetSummary(total=len(jobs))

    monkeypatch.setattr(dataset_cli, "DatasetRunner", Runner)
    videos(tmp_path / "in")
    assert main(["dataset", str(tmp_path / "in"), "--out", str(tmp_path / "out"), "--prompt", PROMPT,
                 "--save", "yolo,coco"]) == 0
    assert seen["options"].save_frames and seen["options"].exports == ("yolo", "coco")


def test_a_later_run_without_save_warns_that_exports_are_stale(tmp_path, caplog):
    videos(tmp_path / "in")
    out = tmp_path / "out"
    run(tmp_path / "in", out, ("coco", "cvat"))
    before = (out / "coco.json").read_bytes()
    write_video(tmp_path / "in", "delta", 2, [obj(1, "car", 0, 2, [1, 1, 5, 5])])
    caplog.clear()
    with caplog.at_level("WARNING", logger="gsam2_video"):
        assert run(tmp_path / "in", out, ()).done == 1
    assert (out / "coco.json").read_bytes() == before
    warned = [r.getMessage() for r in caplog.records if "earlier run" in r.getMessage()]
    assert warned == [("coco.json, cvat still describe(s) the videos of an earlier run; add --save coco,cvat to "
                       "rebuild")]
    run(tmp_path / "in", out, ("coco", "cvat"))
    assert [v["name"] for v in COCO(str(out / "coco.json")).dataset["videos"]] == \
        ["alpha", "beta", "delta", "gamma0", "gamma1", "gamma2"]
