"""The extras a GPU builds in the frame's single copy (FrameExtras): the masks' overlay and the label map's
RLE changes. On CUDA the CLI turns them on; here they are forced on the CPU, which runs the same code
(``overlay_torch``, ``label_changes_packed`` through the torch reference of ``cuda/rle.cu``).

What must hold: results are the same with and without extras (label maps exact, RLE byte-identical, the
picture within one grey level of the host drawing), including the frames where the overlay goes stale
(back-fill paints a held frame, a tentative track is confirmed while its frames are held) or the RLE buffer
overflows; the outputs users read are unchanged.
"""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils
from test_pipeline import BOX_A, BOX_B, make_tracker

from gsam2_video.config import AssociationConfig, FrameExtras
from gsam2_video.drawing import annotate
from gsam2_video.ops.rle import changes_reference, label_changes_packed, rle_from_changes, unpack_changes
from gsam2_video.sinks import AsyncWriter, make_sinks
from gsam2_video.sinks.base import FrameView

CLIP = "carphone_pristine.mp4"
ALL = FrameExtras(overlay=True, rle=True)


def _runs(models: dict[str, Path], videos_dir: Path, mode: str, frames: int = 13, **track):
    """The same scripted run without and with extras: B is born at frame 8 (back-filled offline) and, with
    two hits needed, A is tentative from frame 0 until its second detection at frame 4."""
    out = []
    for extras in (None, ALL):
        tracker = make_tracker(models, [[BOX_A], [BOX_A], [BOX_A, BOX_B], [BOX_A, BOX_B]])
        tracker.config.association = AssociationConfig(max_missed_keyframes=2, confirm_hits=2, confirm_window=3)
        with tracker.track(videos_dir / CLIP, "person. car.", mode=mode, max_frames=frames, keep_images=True,
                           extras=extras, **track) as run:
            out.append((list(run), run.stats))
    return out


@pytest.fixture(scope="module")
def offline(tiny_models, videos_dir):
    return _runs(tiny_models, videos_dir, "offline")


def _same_results(plain, extra) -> None:
    assert len(plain) == len(extra) == 13
    for a, b in zip(plain, extra):
        assert a.frame_index == b.frame_index
        assert a.track_ids.tolist() == b.track_ids.tolist()
        np.testing.assert_array_equal(a.labels, b.labels)
        np.testing.assert_array_equal(a.boxes, b.boxes)
        np.testing.assert_array_equal(a.scores, b.scores)


def test_results_unchanged_by_extras(offline) -> None:
    (plain, _), (extra, stats) = offline
    _same_results(plain, extra)
    assert all(r.overlay is None and r.label_changes is None for r in plain)
    assert stats.backfilled_frames > 0  # back-filled frames are encoded and drawn on the host
    with_changes = sum(r.label_changes is not None for r in extra)
    assert 0 < with_changes == 13 - stats.extras_redone["rle"]


def test_overlay_equals_host_drawing_and_stale_ones_are_redrawn(offline) -> None:
    (plain, _), (extra, stats) = offline
    assert any(len(r) for r in plain)
    with_overlay = [r for r in extra if r.overlay is not None]
    assert 0 < len(with_overlay) < len(extra)  # built on most frames; some went stale and were dropped
    # stale: A confirmed at frame 4 while frames 0-3 were held (drawn without it); back-filled frames
    assert stats.extras_redone["overlay"] == len(extra) - len(with_overlay)
    for a, b in zip(plain, extra):
        want = annotate(a.image, a)
        got = annotate(None if b.overlay is not None else b.image, b)
        assert np.abs(got.astype(np.int16) - want.astype(np.int16)).max() <= 1, b.frame_index
        if b.overlay is not None and len(b):
            assert not np.array_equal(b.overlay, b.image)  # the masks really are in it


def test_rle_from_device_changes_is_byte_identical(offline) -> None:
    (plain, _), (extra, _) = offline
    assert sum(len(r) for r in extra if r.label_changes is not None) > 0
    for a, b in zip(plain, extra):
        got, want = FrameView(b).rles(), FrameView(a).rles()
        assert got == want
        for tid, counts in zip(b.track_ids.tolist(), got):
            rle = {"size": [b.height, b.width], "counts": counts.encode()}
            np.testing.assert_array_equal(mask_utils.decode(rle).astype(bool), b.labels == tid)


def test_live_mode_uses_every_overlay(tiny_models, videos_dir) -> None:
    """Live runs emit at commit: nothing can change what was drawn, so no overlay is redone."""
    (plain, _), (extra, stats) = _runs(tiny_models, videos_dir, "live")
    _same_results(plain, extra)
    assert all(r.overlay is not None for r in extra)
    assert "overlay" not in stats.extras_redone
    for a, b in zip(plain, extra):
        diff = np.abs(annotate(None, b).astype(np.int16) - annotate(a.image, a).astype(np.int16))
        assert diff.max() <= 1


def test_rle_buffer_overflow_falls_back_and_grows(tiny_models, videos_dir, monkeypatch) -> None:
    from gsam2_video import pipeline

    monkeypatch.setattr(pipeline, "RLE_CHANGES_PER_EDGE_PIXEL", 1)  # 320 changes: the first frames overflow
    (plain, _), (extra, stats) = _runs(tiny_models, videos_dir, "live")
    assert extra[0].label_changes is None
    assert stats.extras_redone["rle"] == sum(r.label_changes is None for r in extra)
    assert any(r.label_changes is not None for r in extra)  # the room grew until the frames fit
    for a, b in zip(plain, extra):
        assert FrameView(b).rles() == FrameView(a).rles()


@pytest.mark.parametrize("dtype", [torch.uint8, torch.uint16, torch.int32])
def test_packed_changes_equal_the_reference_scan(dtype) -> None:
    rng = np.random.default_rng(3)
    for h, w in [(1, 1), (1, 9), (9, 1), (31, 47), (64, 64)]:
        labels = np.zeros((h, w), np.int64)
        ids = [1, 5, 300 if dtype != torch.uint8 else 250]
        for tid in ids:
            y, x = rng.integers(0, h), rng.integers(0, w)
            labels[y:y + rng.integers(1, h + 1), x:x + rng.integers(1, w + 1)] = tid
        t = torch.from_numpy(labels).to(dtype)
        got = unpack_changes(label_changes_packed(t, h * w).numpy())
        assert got is not None
        for g, want in zip(got, changes_reference(t.numpy())):
            np.testing.assert_array_equal(g, want)
        rles = rle_from_changes(got, ids + [7], h, w)
        for tid, rle in zip(ids + [7], rles):
            assert rle["counts"] == mask_utils.encode(np.asfortranarray((labels == tid).astype(np.uint8)))["counts"]
        if len(got[0]) > 1:
            assert unpack_changes(label_changes_packed(t, len(got[0]) - 1).numpy()) is None  # overflow seen


def test_for_outputs_builds_extras_on_cuda_only() -> None:
    assert FrameExtras.for_outputs("cuda", picture=True, rle=True) == ALL
    assert FrameExtras.for_outputs("cuda", picture=False, rle=True) == FrameExtras(rle=True)
    assert FrameExtras.for_outputs("cpu", picture=True, rle=True) == FrameExtras()


def _tracks_json(out: Path) -> dict:
    """tracks.json without its creation time (the only field that may differ between two runs)."""
    data = json.loads((out / "tracks.json").read_text())
    del data["info"]["date_created"]
    return data


def _write(results, out: Path, categories) -> None:
    from gsam2_video.types import VideoInfo

    writer = AsyncWriter(make_sinks(["video", "masks", "json", "mots", "coco"], out))
    writer.open(VideoInfo("clip", "clip", results[0].width, results[0].height, 29.97, len(results)), categories)
    for r in results:
        writer.write(r)
    writer.close()


def test_written_outputs_unchanged_by_extras(offline, tmp_path) -> None:
    """The files users read: masks, tracks.json, mots.txt and coco.json byte-identical; the video's frames
    (lossy H.264 of pictures within one grey level) equal to within encoder noise."""
    (plain, _), (extra, _) = offline
    _write(plain, tmp_path / "plain", ["person", "car"])
    _write(extra, tmp_path / "extra", ["person", "car"])
    for name in ("mots.txt", "coco.json"):
        assert (tmp_path / "plain" / name).read_bytes() == (tmp_path / "extra" / name).read_bytes(), name
    assert _tracks_json(tmp_path / "plain") == _tracks_json(tmp_path / "extra")
    pngs = sorted((tmp_path / "plain" / "masks").glob("*.png"))
    assert len(pngs) == 13
    for png in pngs:
        assert png.read_bytes() == (tmp_path / "extra" / "masks" / png.name).read_bytes()
    decoded = []
    for run in ("plain", "extra"):
        with av.open(str(tmp_path / run / "video.mp4")) as c:
            decoded.append([f.to_ndarray(format="rgb24").astype(np.int16) for f in c.decode(video=0)])
    assert len(decoded[0]) == len(decoded[1]) == 13
    for a, b in zip(*decoded):
        assert np.abs(a - b).mean() < 0.5


def test_cli_records_and_uses_the_extras(tiny_models, videos_dir, tmp_path, monkeypatch) -> None:
    """The track command asks for the extras its outputs use (forced here as on a GPU) and run.json says so;
    the deterministic files equal a run without them."""
    from gsam2_video.cli import main

    args = ["track", str(videos_dir / CLIP), "--prompt", "person. car.", "--max-frames", "8", "--no-progress",
            "--save", "video,masks,json,mots", "--detector", str(tiny_models["detector"]), "--sam2",
            str(tiny_models["sam2"]), "--device", "cpu", "--box-threshold", "0.05", "--text-threshold", "0.05",
            "--detect-every", "4"]
    assert main([*args, "--out", str(tmp_path / "plain")]) == 0
    asked = []

    def forced(device_type: str, *, picture: bool, rle: bool) -> FrameExtras:
        asked.append((device_type, picture, rle))
        return FrameExtras(overlay=picture, rle=rle)

    monkeypatch.setattr(FrameExtras, "for_outputs", staticmethod(forced))
    assert main([*args, "--out", str(tmp_path / "extra")]) == 0
    assert asked == [("cpu", True, True)]
    report = json.loads((tmp_path / "extra" / "run.json").read_text())
    assert report["device_extras"] == {"overlay": True, "rle": True}
    assert json.loads((tmp_path / "plain" / "run.json").read_text())["device_extras"] == {"overlay": False,
                                                                                          "rle": False}
    assert (tmp_path / "plain" / "mots.txt").read_bytes() == (tmp_path / "extra" / "mots.txt").read_bytes()
    assert _tracks_json(tmp_path / "plain") == _tracks_json(tmp_path / "extra")



def test_dataset_uses_the_extras_and_writes_the_same_files(tiny_models, videos_dir, tmp_path, monkeypatch,
                                                           one_torch_thread) -> None:
    """The dataset command asks for the RLE changes (its record is COCO RLE), forced here as on a GPU: the
    annotations and instances.json are byte-identical to a run without them, and each video's run.json says
    which extras were built."""
    from test_dataset_e2e import dataset_args

    from gsam2_video.cli import main

    clip = videos_dir / CLIP
    assert main(dataset_args(tiny_models, tmp_path / "plain", [clip], "--max-frames", "9")) == 0
    asked = []

    def forced(device_type: str, *, picture: bool, rle: bool) -> FrameExtras:
        asked.append((device_type, picture, rle))
        return FrameExtras(overlay=picture, rle=rle)

    monkeypatch.setattr(FrameExtras, "for_outputs", staticmethod(forced))
    assert main(dataset_args(tiny_models, tmp_path / "extra", [clip], "--max-frames", "9")) == 0
    assert asked == [("cpu", False, True)]
    name = clip.stem
    reports = [json.loads((tmp_path / run / "runs" / name / "run.json").read_text()) for run in ("plain", "extra")]
    assert [r["device_extras"] for r in reports] == [{"overlay": False, "rle": False}, {"overlay": False, "rle": True}]
    assert reports[1]["tracker_stats"]["extras_redone"].get("rle", 0) < 9  # most frames used the changes
    pngs = sorted((tmp_path / "plain" / "Annotations" / name).glob("*.png"))
    assert len(pngs) == 9
    for png in pngs:
        assert png.read_bytes() == (tmp_path / "extra" / "Annotations" / name / png.name).read_bytes()
    instances = [json.loads((tmp_path / run / "instances.json").read_text()) for run in ("plain", "extra")]
    assert instances[0]["annotations"], "the run must keep some objects for the comparison to mean anything"
    assert instances[0]["annotations"] == instances[1]["annotations"]
    assert instances[0]["videos"] == instances[1]["videos"]
