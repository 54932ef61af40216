"""Dataset layout, filters, resume and failure isolation, driven by a scripted tracker (no models).

The scripted tracker reads a small JSON "video" (frame count, size, rectangles that move) so every expected
PNG value, meta.json entry and RLE is known exactly. End-to-end runs with real decoding and tiny random
models are in test_dataset_e2e.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from gsam2_video.config import FrameExtras
from gsam2_video.dataset.filters import Filters, FrameEntry
from gsam2_video.dataset.inputs import JobDefaults, collect_jobs
from gsam2_video.dataset.layout import DatasetLayout, build_instances, build_meta
from gsam2_video.dataset.record import VideoCollector
from gsam2_video.dataset.runner import DatasetRunner, RunnerOptions
from gsam2_video.errors import OutputError, SourceError
from gsam2_video.sinks.davis import davis_palette
from gsam2_video.sources.base import Selection
from gsam2_video.types import FrameResult, VideoInfo

H, W = 24, 32


# -- the scripted tracker ------------------------------------------------------------------------------------
def rect_mask(box: list[int], shift: int) -> np.ndarray:
    x0, y0, x1, y1 = box
    m = np.zeros((H, W), bool)
    m[y0:y1, x0 + shift:x1 + shift] = True
    return m


def scripted_frame(script: dict[str, Any], index: int, keep_image: bool) -> FrameResult:
    objs = [o for o in script["objects"] if o["start"] <= index < o["end"]]
    masks = np.stack([rect_mask(o["box"], index * o.get("dx", 0)) for o in objs]) if objs else np.zeros((0, H, W), bool)
    image = np.random.default_rng(index).integers(0, 255, (H, W, 3), dtype=np.uint8) if keep_image else None
    return FrameResult(index, index / 10, H, W, [o["id"] for o in objs], masks, np.zeros((len(objs), 4)),
                       [o.get("score", 0.9) for o in objs], [0] * len(objs), [o["class"] for o in objs], image)


class ScriptedSource:
    def __init__(self, selection: Selection, missing: int) -> None:
        self.selection = selection
        self.stats = {"frames_missing": missing}

    def close(self) -> None:
        pass


class ScriptedRun:
    def __init__(self, path: Path, script: dict[str, Any], options: dict[str, Any], calls: list[str]) -> None:
        self.script, self.options, self.calls = script, options, calls
        # like the real sources: frame_count counts the frames present after the selection, and
        # frames_missing what the header declares beyond them (a truncated file)
        frames = script["frames"]
        sel = Selection(options.get("start", 0), options.get("stride", 1), options.get("max_frames"))
        self.info = VideoInfo(path.stem, str(path), W, H, 10.0, sel.count(frames))
        self.source = ScriptedSource(sel, max(0, script.get("declared", frames) - frames))

    def __enter__(self) -> ScriptedRun:  # noqa: PYI034
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def __iter__(self) -> Iterator[FrameResult]:
        sel = self.source.selection
        emitted = 0
        for index in range(self.script["frames"]):
            if not sel.wanted(index):
                continue
            if index == self.script.get("crash_at"):
                raise RuntimeError("scripted crash")
            if index == self.options.get("interrupt_at"):
                raise KeyboardInterrupt
            yield scripted_frame(self.script, index, self.options.get("keep_images", False))
            emitted += 1
            if sel.max_frames is not None and emitted >= sel.max_frames:
                return


class ScriptedTracker:
    """``interrupt`` maps a video name to the frame at which Ctrl-C arrives."""

    def __init__(self, interrupt: dict[str, int] | None = None) -> None:
        self.calls: list[str] = []
        self.interrupt = interrupt or {}

    def extras_for(self, *, picture: bool, rle: bool) -> FrameExtras:
        assert (picture, rle) == (False, True)
        return FrameExtras(rle=True)  # as on a GPU: the run must pass it on to track()

    def track(self, source: str, prompt: str, **options: Any) -> ScriptedRun:
        path = Path(source)
        if not path.is_file():
            raise SourceError(f"{source}: no such file or directory")
        self.calls.append(path.stem)
        assert options["mode"] == "offline"
        assert options["extras"] == FrameExtras(rle=True)  # what extras_for gave: the record is RLE
        options = {**options, "interrupt_at": self.interrupt.get(path.stem)}
        return ScriptedRun(path, json.loads(path.read_text()), options, self.calls)


def write_video(folder: Path, name: str, frames: int, objects: list[dict[str, Any]], **extra: Any) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.mp4"
    path.write_text(json.dumps({"frames": frames, "objects": objects, **extra}))
    return path


def obj(tid: int, cls: str, start: int, end: int, box: list[int], **kw: Any) -> dict[str, Any]:
    return {"id": tid, "class": cls, "start": start, "end": end, "box": box, **kw}


def make_videos(folder: Path) -> None:
    write_video(folder, "alpha", 6, [obj(3, "person", 0, 6, [0, 0, 4, 4], dx=1), obj(5, "car", 2, 5, [10, 10, 20, 20])])
    write_video(folder, "beta", 4, [obj(1, "car", 1, 4, [5, 5, 9, 9]), obj(2, "dog", 0, 4, [20, 0, 30, 10])])


def run(folder: Path, out: Path, tracker: ScriptedTracker | None = None, prompt: str = "person. car. dog.",
        save_frames: bool = False, filters: Filters | None = None, inputs: list[str] | None = None,
        allow_partial: bool = False, progress: bool = False):
    tracker = tracker or ScriptedTracker()
    made: list[int] = []

    def make() -> ScriptedTracker:
        made.append(1)
        return tracker

    jobs = collect_jobs(inputs or [str(folder)], JobDefaults(prompt=prompt, filters=filters or Filters()))
    runner = DatasetRunner(make, DatasetLayout(out), RunnerOptions(save_frames=save_frames, progress=progress,
                                                                   allow_partial=allow_partial),
                           {"detector": "scripted", "detector_size": (800, 1333)})  # a tuple, as in asdict()
    return runner.run(jobs), tracker, made


def tree(root: Path) -> dict[str, bytes]:
    """Every file's bytes, except run.json (wall-clock times and versions) and the lock file."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name not in ("run.json", ".lock")}


# -- layout and formats --------------------------------------------------------------------------------------
def test_layout_pngs_meta_and_instances_are_exact(tmp_path: Path) -> None:
    make_videos(tmp_path / "in")
    out = tmp_path / "out"
    summary, tracker, made = run(tmp_path / "in", out, save_frames=True)
    assert (summary.done, summary.skipped, summary.failed, summary.frames, summary.objects) == (2, 0, 0, 10, 4)
    assert made == [1] and tracker.calls == ["alpha", "beta"]

    # alpha: person (track 3) appears first -> object 1; car (track 5) -> object 2
    pngs = sorted((out / "Annotations" / "alpha").iterdir())
    assert [p.name for p in pngs] == [f"{i:05d}.png" for i in range(6)]
    for i, p in enumerate(pngs):
        with Image.open(p) as img:
            assert img.mode == "P" and img.getpalette()[:30] == davis_palette()[:30]
            labels = np.array(img)
        expected = rect_mask([0, 0, 4, 4], i).astype(np.uint8)
        if 2 <= i < 5:
            expected[rect_mask([10, 10, 20, 20], 0)] = 2
        np.testing.assert_array_equal(labels, expected)
    jpgs = sorted((out / "JPEGImages" / "beta").iterdir())
    assert [p.name for p in jpgs] == [f"{i:05d}.jpg" for i in range(4)]
    with Image.open(jpgs[0]) as img:
        assert img.size == (W, H) and img.mode == "RGB"

    meta = json.loads((out / "meta.json").read_text())
    assert meta == {"videos": {
        "alpha": {"objects": {"1": {"category": "person", "frames": [f"{i:05d}" for i in range(6)]},
                              "2": {"category": "car", "frames": ["00002", "00003", "00004"]}}},
        "beta": {"objects": {"1": {"category": "dog", "frames": ["00000", "00001", "00002", "00003"]},
                             "2": {"category": "car", "frames": ["00001", "00002", "00003"]}}}}}

    inst = json.loads((out / "instances.json").read_text())
    assert inst["categories"] == [{"id": 1, "name": "car", "supercategory": "object"},
                                  {"id": 2, "name": "dog", "supercategory": "object"},
                                  {"id": 3, "name": "person", "supercategory": "object"}]
    assert [(v["id"], v["name"], v["length"], v["width"], v["height"]) for v in inst["videos"]] == \
        [(1, "alpha", 6, W, H), (2, "beta", 4, W, H)]
    assert inst["videos"][1]["file_names"][:2] == ["beta/00000.jpg", "beta/00001.jpg"]
    assert [(a["video_id"], a["object_id"], a["category_id"], a["track_id"]) for a in inst["annotations"]] == \
        [(1, 1, 3, 3), (1, 2, 1, 5), (2, 1, 2, 2), (2, 2, 1, 1)]
    # every RLE decodes (pycocotools) to exactly that object's pixels in the PNG
    for ann in inst["annotations"]:
        video = inst["videos"][ann["video_id"] - 1]
        for k, seg in enumerate(ann["segmentations"]):
            with Image.open(out / "Annotations" / video["name"] / f"{video['frame_indices'][k]:05d}.png") as img:
                truth = np.array(img) == ann["object_id"]
            if seg is None:
                assert not truth.any() and ann["bboxes"][k] is None and ann["areas"][k] is None
            else:
                np.testing.assert_array_equal(mask_utils.decode(seg).astype(bool), truth)
                assert ann["areas"][k] == int(truth.sum())
                ys, xs = np.nonzero(truth)
                assert ann["bboxes"][k] == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
    # the streamed files equal the in-memory builders over the same records
    records = DatasetLayout(out).finished_records()
    assert inst == build_instances(records, {"alpha", "beta"}) and meta == build_meta(records)
    assert (out / "failures.jsonl").read_text() == ""
    report = json.loads((out / "runs" / "alpha" / "run.json").read_text())
    assert report["frames"] == 6 and report["objects_kept"] == 2 and "versions" in report
    assert json.loads((out / "run.json").read_text())["summary"]["done"] == 2
    assert not (out / ".partial").exists()


def test_filters_in_order_and_renumbering() -> None:
    def entries(positions: list[int], area: int = 10, score: float = 0.5, cls: str = "person") -> dict[int, FrameEntry]:
        return {p: FrameEntry("x", (0, 0, 1, 1), area, score, cls) for p in positions}

    tracks = {
        7: entries([3, 4, 5, 6]),                               # long, appears late
        2: entries([0, 1]),                                      # short
        9: {**entries([0, 1, 2], area=3), **entries([5], area=50)},  # small except one frame
        4: {**entries([1, 2, 3], cls="car"), **entries([4], cls="person")},  # majority car
        5: entries([2, 3, 4, 5], score=0.9),                     # as long as 7, higher score
    }
    kept, removed = Filters().apply(tracks)
    assert [(o.object_id, o.track_id, o.category) for o in kept] == \
        [(1, 2, "person"), (2, 9, "person"), (3, 4, "car"), (4, 5, "person"), (5, 7, "person")]
    kept, removed = Filters(min_area=5, min_track_length=2, classes=("person",), max_objects=2).apply(tracks)
    assert [(o.object_id, o.track_id) for o in kept] == [(1, 5), (2, 7)]
    assert removed == {"small_masks": 3, "empty": 0, "classes": 1, "min_track_length": 1, "max_objects": 1}
    kept, _ = Filters(min_area=5).apply(tracks)
    assert [o.frames.keys() for o in kept if o.track_id == 9] == [{5: None}.keys()]


def test_filters_through_the_runner(tmp_path: Path) -> None:
    write_video(tmp_path / "in", "v", 5, [obj(1, "person", 0, 5, [0, 0, 2, 2]),       # 4 px
                                          obj(2, "person", 0, 2, [10, 10, 20, 20]),   # 2 frames
                                          obj(3, "car", 0, 5, [20, 0, 30, 10])])
    out = tmp_path / "out"
    summary, _, _ = run(tmp_path / "in", out, filters=Filters(min_area=5, min_track_length=3))
    assert summary.objects == 1
    meta = json.loads((out / "meta.json").read_text())
    assert meta["videos"]["v"]["objects"] == {"1": {"category": "car", "frames": [f"{i:05d}" for i in range(5)]}}
    with Image.open(out / "Annotations" / "v" / "00000.png") as img:
        assert sorted(np.unique(np.array(img)).tolist()) == [0, 1]
    record = json.loads((out / "runs" / "v" / "objects.json").read_text())
    assert record["filtered"] == {"small_masks": 5, "empty": 1, "classes": 0, "min_track_length": 1,
                                  "max_objects": 0}


def test_many_objects_switch_to_16_bit_pngs(tmp_path: Path) -> None:
    objects = [obj(i + 1, "person", 0, 1, [i % W, i // W, i % W + 1, i // W + 1]) for i in range(300)]
    write_video(tmp_path / "in", "crowd", 1, objects)
    out = tmp_path / "out"
    run(tmp_path / "in", out)
    with Image.open(out / "Annotations" / "crowd" / "00000.png") as img:
        labels = np.array(img)
    assert labels.dtype == np.uint16 and labels.max() == 300
    assert labels[0, 0] == 1 and labels[300 // W, 299 % W] == 300


def test_collector_rejects_out_of_order_and_size_changes() -> None:
    c = VideoCollector("v")
    c.add(FrameResult.empty(3, 0.0, 4, 4))
    with pytest.raises(OutputError, match="frame index 2 after 3"):
        c.add(FrameResult.empty(2, 0.0, 4, 4))
    with pytest.raises(OutputError, match="frame 4 is 5x4 but the video started at 4x4"):
        c.add(FrameResult.empty(4, 0.0, 4, 5))


# -- failures, resume, crash debris --------------------------------------------------------------------------
def test_bad_videos_fail_alone(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    make_videos(folder)
    write_video(folder, "crash", 5, [obj(1, "person", 0, 5, [0, 0, 4, 4])], crash_at=3)
    write_video(folder, "short", 3, [obj(1, "person", 0, 3, [0, 0, 4, 4])], declared=10)
    out = tmp_path / "out"
    inputs = [str(folder), str(tmp_path / "missing.mp4")]
    summary, _, _ = run(folder, out, inputs=inputs)
    assert (summary.done, summary.failed) == (2, 3)
    failures = [json.loads(line) for line in (out / "failures.jsonl").read_text().splitlines()]
    assert [(f["video"], f["error"]) for f in failures] == \
        [("crash", "RuntimeError"), ("short", "SourceError"), ("missing", "SourceError")]
    assert failures[0]["message"] == "RuntimeError: scripted crash" and "Traceback" in failures[0]["traceback"]
    assert "truncated or corrupt video, 7 of its frames do not decode (3 decoded)" in failures[1]["message"]
    assert failures[2]["message"].endswith("missing.mp4: no such file or directory")
    assert sorted(p.name for p in (out / "Annotations").iterdir()) == ["alpha", "beta"]
    assert sorted(p.name for p in (out / "runs").iterdir()) == ["alpha", "beta"]
    assert set(json.loads((out / "meta.json").read_text())["videos"]) == {"alpha", "beta"}
    assert not (out / ".partial").exists()

    # --allow-partial keeps the truncated one; the re-run skips the two finished videos
    summary, tracker, _ = run(folder, out, inputs=inputs, allow_partial=True)
    assert (summary.done, summary.skipped, summary.failed) == (1, 2, 2)
    assert tracker.calls == ["crash", "short"]
    assert json.loads((out / "runs" / "short" / "objects.json").read_text())["length"] == 3


def test_interrupted_run_resumes_to_identical_tree(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    make_videos(folder)
    clean = tmp_path / "clean"
    run(folder, clean, save_frames=True)

    broken = tmp_path / "broken"
    summary, _, _ = run(folder, broken, ScriptedTracker(interrupt={"beta": 2}), save_frames=True)
    assert summary.interrupted and summary.done == 1
    assert sorted(p.name for p in (broken / "Annotations").iterdir()) == ["alpha"]
    assert set(json.loads((broken / "meta.json").read_text())["videos"]) == {"alpha"}

    summary, tracker, _ = run(folder, broken, save_frames=True)
    assert (summary.done, summary.skipped) == (1, 1) and tracker.calls == ["beta"]
    assert tree(broken) == tree(clean)


def test_crash_debris_is_cleaned_and_half_published_video_redone(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    make_videos(folder)
    clean = tmp_path / "clean"
    run(folder, clean)
    out = tmp_path / "out"
    run(folder, out)
    # a kill between publishing Annotations and the record, plus temporary files of every kind
    (out / "runs" / "beta" / "objects.json").unlink()
    (out / ".partial" / "beta" / "Annotations").mkdir(parents=True)
    (out / "Annotations" / ".beta.old.x.partial").mkdir()
    (out / ".meta.json.abc.partial").write_text("{")
    (out / "Annotations" / "beta" / "00000.png").write_bytes(b"garbage")
    summary, tracker, _ = run(folder, out)
    assert tracker.calls == ["beta"] and summary.skipped == 1
    assert tree(out) == tree(clean)


def test_changed_settings_redo_and_finished_runs_load_no_model(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    make_videos(folder)
    out = tmp_path / "out"
    run(folder, out)
    summary, tracker, made = run(folder, out)
    assert (summary.skipped, made, tracker.calls) == (2, [], [])
    summary, tracker, _ = run(folder, out, prompt="person. car. dog. cat.")
    assert summary.done == 2 and tracker.calls == ["alpha", "beta"]
    summary, tracker, _ = run(folder, out, prompt="person. car. dog. cat.", save_frames=True)
    assert summary.done == 2 and (out / "JPEGImages" / "alpha").is_dir()


def test_progress_over_videos_and_frames(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    make_videos(tmp_path / "in")
    summary, _, _ = run(tmp_path / "in", tmp_path / "out", progress=True)
    err = capsys.readouterr().err
    assert "videos: 100%" in err and "2/2" in err
    # one frame bar per video, sized by the source's frame count (cleared when the video ends)
    assert "alpha:   0%|          | 0/6" in err and "beta:   0%|          | 0/4" in err and "frame/s" in err
    assert summary.line() == "2 done, 0 skipped, 0 failed of 2 videos; 10 frames, 4 objects; " \
        f"{summary.seconds:.1f} s"


def test_set_files_of_an_empty_set_are_valid(tmp_path: Path) -> None:
    layout = DatasetLayout(tmp_path / "out")
    with layout.locked():
        layout.prepare()
        layout.write_set_files()
    assert json.loads(layout.meta_path.read_text()) == {"videos": {}}
    inst = json.loads(layout.instances_path.read_text())
    assert (inst["videos"], inst["categories"], inst["annotations"]) == ([], [], [])


def test_second_run_on_same_folder_is_refused(tmp_path: Path) -> None:
    layout = DatasetLayout(tmp_path / "out")
    with layout.locked(), pytest.raises(OutputError, match="is in use by another gsam2-video dataset run"), \
            DatasetLayout(tmp_path / "out").locked():
        pass
