"""All writers on a real clip (carphone_pristine.mp4, 120 frames, 29.97 fps) decoded with PyAV.

Masks are derived from the pixels (bright parts of the left and right halves as two tracks) so the files
hold real-looking shapes; the video's frame count, size, rate and timestamps must match the source.
"""

from __future__ import annotations

import json

import av
import numpy as np
import pytest
from PIL import Image

from gsam2_video.sinks import SINK_KINDS, AsyncWriter, make_sinks
from gsam2_video.types import FrameResult, VideoInfo

CLIP = "carphone_pristine.mp4"


def results_from_clip(path):
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        fps = float(s.average_rate)
        for i, frame in enumerate(c.decode(s)):
            rgb = frame.to_ndarray(format="rgb24")
            h, w = rgb.shape[:2]
            bright = rgb.mean(axis=2) > 150
            halves = np.zeros((2, h, w), bool)
            halves[0, :, : w // 2] = bright[:, : w // 2]
            halves[1, :, w // 2:] = bright[:, w // 2:]
            keep = [k for k in range(2) if halves[k].any()]
            boxes = []
            for k in keep:
                ys, xs = np.nonzero(halves[k])
                boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
            yield fps, FrameResult(i, float(frame.time), h, w, np.array([k + 1 for k in keep]), halves[keep],
                                   np.array(boxes, np.float32).reshape(-1, 4), np.full(len(keep), 0.9),
                                   np.array(keep), [["face", "car"][k] for k in keep], image=rgb)


def test_all_writers_on_a_real_clip(videos_dir, tmp_path):
    path = videos_dir / CLIP
    if not path.exists():
        pytest.skip(f"{path} not found")
    produced = list(results_from_clip(path))
    fps = produced[0][0]
    results = [r for _, r in produced]
    h, w = results[0].height, results[0].width
    info = VideoInfo(CLIP, str(path), w, h, fps, len(results))
    with AsyncWriter(make_sinks(SINK_KINDS, tmp_path), max_queue=8) as writer:
        writer.open(info, ["face", "car"])
        for r in results:
            writer.write(r)
    assert writer.frames_written == len(results) == 120

    with av.open(str(tmp_path / "video.mp4")) as c:
        s = c.streams.video[0]
        assert (s.codec_context.width, s.codec_context.height) == (w, h) == (176, 144)
        assert float(s.average_rate) == pytest.approx(30000 / 1001, rel=1e-3)
        times = [f.time for f in c.decode(s)]
    t0 = results[0].timestamp
    assert times == pytest.approx([r.timestamp - t0 for r in results], abs=1.5 / 90000)

    pngs = sorted((tmp_path / "masks").iterdir())
    assert [p.name for p in pngs] == [f"{i:05d}.png" for i in range(120)]
    for r in results[::17]:
        with Image.open(tmp_path / "masks" / f"{r.frame_index:05d}.png") as img:
            assert img.mode == "P" and np.array_equal(np.array(img), r.label_map(np.uint8))
    doc = json.loads((tmp_path / "tracks.json").read_text())
    assert doc["videos"][0]["length"] == 120 and doc["info"]["fps"] == pytest.approx(fps)
    mot = np.loadtxt(tmp_path / "mot.txt", delimiter=",", ndmin=2)
    assert len(mot) == sum(len(r) for r in results)
    assert len((tmp_path / "mots.txt").read_text().splitlines()) == len(mot)
