"""``gsam2-video dataset`` end to end on the shared clips with tiny random models (saved, then loaded by path).

Covers what only a real run shows: real decoding and tracking feeding the layout, a corrupt file (the first
100 KB of vtest.avi) failing alone among good clips, and models loading once for a manifest of videos.
These call the CLI's ``main`` in-process to stay fast; kill-and-resume (test_dataset_resume.py, which reuses
the helpers here) runs the CLI as child processes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

REPO = Path(__file__).resolve().parents[1]
PROMPT = "person. car. tree."
SIZES = {"tree": (320, 240), "carphone_pristine": (176, 144)}
# The random detector's scores spread over (0, 1); 0.99 keeps a handful of boxes per keyframe.
MODEL_ARGS = ["--device", "cpu", "--box-threshold", "0.99", "--text-threshold", "0.0", "--detect-every", "3",
              "--detector-size", "64", "96", "--no-progress"]


def env() -> dict[str, str]:
    # one thread: deterministic float reductions across processes and fair to the shared CPU
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
            "PYTHONPATH": str(REPO)}


def dataset_args(models: dict[str, Path], out: Path, inputs: list[Path], *extra: str) -> list[str]:
    """``dataset ...`` arguments, as given to ``gsam2_video.cli.main``."""
    return ["dataset", *map(str, inputs), "--out", str(out), "--prompt", PROMPT, "--detector",
            str(models["detector"]), "--sam2", str(models["sam2"]), *MODEL_ARGS, *extra]


def dataset_cmd(models: dict[str, Path], out: Path, inputs: list[Path], *extra: str) -> list[str]:
    """The same as a command line for a child process."""
    return [sys.executable, "-m", "gsam2_video", *dataset_args(models, out, inputs, *extra)]


def run(cmd: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, env=env(), cwd=REPO, timeout=600,
                          check=False)


def check_video(out: Path, name: str, frames: int, save_frames: bool) -> int:
    """Check one finished video against every format; returns its object count."""
    w, h = SIZES[name]
    pngs = sorted((out / "Annotations" / name).glob("*.png"))
    assert [p.stem for p in pngs] == [f"{i:05d}" for i in range(frames)]
    labels = []
    for p in pngs:
        with Image.open(p) as img:
            assert img.size == (w, h) and img.mode == "P"
            labels.append(np.array(img))
    labels = np.stack(labels)
    if save_frames:
        jpgs = sorted((out / "JPEGImages" / name).glob("*.jpg"))
        assert [p.stem for p in jpgs] == [p.stem for p in pngs]
        with Image.open(jpgs[0]) as img:
            assert img.size == (w, h)
    meta = json.loads((out / "meta.json").read_text())["videos"][name]["objects"]
    ids = sorted(int(i) for i in np.unique(labels) if i)
    assert sorted(int(k) for k in meta) == ids == list(range(1, len(ids) + 1))
    for key, obj in meta.items():
        present = [f"{i:05d}" for i in range(frames) if (labels[i] == int(key)).any()]
        assert obj["frames"] == present and obj["category"] in PROMPT.replace(".", "").split()
    inst = json.loads((out / "instances.json").read_text())
    (video,) = [v for v in inst["videos"] if v["name"] == name]
    assert video["length"] == frames and (video["width"], video["height"]) == (w, h)
    anns = [a for a in inst["annotations"] if a["video_id"] == video["id"]]
    categories = {c["id"]: c["name"] for c in inst["categories"]}
    assert sorted(a["object_id"] for a in anns) == ids
    for a in anns:
        assert categories[a["category_id"]] == meta[str(a["object_id"])]["category"]
        for k, seg in enumerate(a["segmentations"]):
            truth = labels[k] == a["object_id"]
            if seg is None:
                assert not truth.any()
            else:
                np.testing.assert_array_equal(mask_utils.decode(seg).astype(bool), truth)
    return len(ids)


@pytest.fixture()
def one_thread() -> Iterator[None]:
    """In-process runs use one torch thread, as the child processes do (OMP_NUM_THREADS=1): the same float
    reductions, and no oversubscription of the shared CPU."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture()
def corrupt_clip(videos_dir: Path, tmp_path: Path) -> Path:
    path = tmp_path / "broken" / "vtest_head.avi"
    path.parent.mkdir()
    with open(videos_dir / "vtest.avi", "rb") as fh:
        path.write_bytes(fh.read(100_000))
    return path


@pytest.mark.usefixtures("one_thread")
def test_corrupt_input_fails_alone_among_good_clips(tiny_models: dict[str, Path], videos_dir: Path,
                                                    corrupt_clip: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    from gsam2_video.cli import main

    out = tmp_path / "out"
    inputs = [videos_dir / "tree.avi", corrupt_clip, videos_dir / "carphone_pristine.mp4"]
    code = main(dataset_args(tiny_models, out, inputs, "--max-frames", "5", "--save-frames"))
    err = capsys.readouterr().err
    assert code == 1, err
    assert "2 done, 0 skipped, 1 failed of 3 videos; 10 frames" in err
    assert "Traceback" not in err
    (failure,) = [json.loads(line) for line in (out / "failures.jsonl").read_text().splitlines()]
    assert (failure["video"], failure["error"]) == ("vtest_head", "SourceError")
    assert "truncated or corrupt video" in failure["message"] and "--allow-partial" in failure["message"]
    objects = sum(check_video(out, name, 5, save_frames=True) for name in ("tree", "carphone_pristine"))
    assert objects > 0, "the tiny models found nothing: the test would not exercise the masks"
    assert sorted(p.name for p in (out / "Annotations").iterdir()) == ["carphone_pristine", "tree"]
    assert not (out / "JPEGImages" / "vtest_head").exists() and not (out / ".partial").exists()


@pytest.mark.usefixtures("one_thread")
def test_manifest_overrides_filters_and_one_model_load(tiny_models: dict[str, Path], videos_dir: Path,
                                                       tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    from gsam2_video.cli import main
    from gsam2_video.pipeline import Tracker

    loads: list[str] = []
    original = Tracker.from_pretrained.__func__

    def counting(cls, *args, **kwargs):
        loads.append(str(kwargs.get("detector")))
        return original(cls, *args, **kwargs)

    monkeypatch.setattr(Tracker, "from_pretrained", classmethod(counting))
    manifest = tmp_path / "set.jsonl"
    manifest.write_text("\n".join(json.dumps(row) for row in [
        {"source": str(videos_dir / "tree.avi"), "name": "tree", "max_frames": 4, "detect_every": 2},
        {"source": str(videos_dir / "carphone_pristine.mp4"), "prompt": "car. person.", "max_frames": 3,
         "start": 10, "stride": 2, "decoder": "opencv"},
    ]) + "\n")
    out = tmp_path / "out"
    args = ["dataset", "--manifest", str(manifest), "--out", str(out), "--prompt", PROMPT,
            "--detector", str(tiny_models["detector"]), "--sam2", str(tiny_models["sam2"]), *MODEL_ARGS,
            "--keep-longest", "2", "--min-track-length", "2", "--max-live-objects", "3"]
    assert main(args) == 0
    assert loads == [str(tiny_models["detector"])]
    # the same command again: everything is done, so nothing is tracked and no model is loaded
    assert main(args) == 0
    assert loads == [str(tiny_models["detector"])]
    assert "0 done, 2 skipped, 0 failed of 2 videos" in capsys.readouterr().err
    meta = json.loads((out / "meta.json").read_text())["videos"]
    assert sorted(meta) == ["carphone_pristine", "tree"]
    assert sorted(p.stem for p in (out / "Annotations" / "carphone_pristine").glob("*.png")) == \
        ["00010", "00012", "00014"]
    check_video(out, "tree", 4, save_frames=False)
    for objects in (meta["tree"]["objects"], meta["carphone_pristine"]["objects"]):
        assert len(objects) <= 2 and all(len(o["frames"]) >= 2 for o in objects.values())
    record = json.loads((out / "runs" / "tree" / "objects.json").read_text())
    assert record["settings"]["tracking"] == {"detect_every": 2}
    assert record["settings"]["models"]["association"]["max_objects"] == 3
    report = json.loads((out / "runs" / "tree" / "run.json").read_text())
    assert report["objects_tracked"] <= 3  # the live cap; 4 frames are too few for any track to retire
    import torch

    from gsam2_video.models.loading import precision_name, resolve_dtype

    dtype = record["settings"]["models"]["dtype"]  # as asked ('auto' unless MODEL_ARGS pin it) ...
    assert report["precision"] == precision_name(resolve_dtype(dtype, torch.device("cpu")))  # ... and as run
    assert record["settings"]["decoding"]["max_frames"] == 4
    carphone = json.loads((out / "runs" / "carphone_pristine" / "objects.json").read_text())
    assert carphone["settings"]["prompt"] == "car. person." and carphone["frame_indices"] == [10, 12, 14]
    assert carphone["settings"]["decoding"] == {"decoder": "opencv", "start": 10, "stride": 2, "max_frames": 3}
