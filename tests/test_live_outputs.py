"""Live outputs (issue 16 item 5): ``--jsonl`` read from a pipe while the run goes on, ``--stream-out``
received on 127.0.0.1 with PyAV, ``--preview`` parsed as a multipart MJPEG stream, and their option errors
reported in one line before torch is imported. Every wait is bounded."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from io import BytesIO
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils
from test_run_defects import _cli_without_models

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONPATH": str(REPO),
       "OMP_NUM_THREADS": "1"}


def cli(models: dict[str, Path], *args: str) -> list[str]:
    return [sys.executable, "-m", "gsam2_video", "track", *args, "--detector", str(models["detector"]),
            "--sam2", str(models["sam2"]), "--device", "cpu", "--box-threshold", "0.05", "--text-threshold",
            "0.05", "--max-live-objects", "4", "--no-progress"]


def _free_port(kind: int = socket.SOCK_STREAM) -> int:
    s = socket.socket(socket.AF_INET, kind)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_jsonl_is_read_from_a_pipe_while_the_run_goes_on(tmp_path, tiny_models, videos_dir) -> None:
    out = tmp_path / "run"
    total = 40
    proc = subprocess.Popen(cli(tiny_models, str(videos_dir / "bikes.mp4"), "--prompt", "person. bicycle.",
                                "--out", str(out), "--max-frames", str(total), "--save", "masks", "--live",
                                "--jsonl", "-"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV, cwd=REPO)
    lines: list[str] = []
    running_at_first_line = None
    try:
        assert proc.stdout is not None
        for line in proc.stdout:  # ends when the run closes its stdout (bounded by the timeout below)
            if running_at_first_line is None:
                running_at_first_line = proc.poll() is None
            lines.append(line)
        err = proc.stderr.read() if proc.stderr else ""
        proc.wait(240)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert running_at_first_line is True  # the first line arrived while frames were still being tracked
    docs = [json.loads(line) for line in lines]
    run = json.loads((out / "run.json").read_text())
    assert 0 < len(docs) == run["frames"]["written"]  # --live on a file may drop frames; none is lost after
    frames = [d["frame"] for d in docs]
    assert frames == sorted(frames) and len(set(frames)) == len(frames)
    assert np.all(np.diff([d["timestamp"] for d in docs]) > 0)
    # every line agrees with the mask PNG of its frame, pixel for pixel
    for doc in docs:
        label = np.array(Image.open(out / "masks" / f"{doc['frame']:05d}.png"))
        assert (doc["height"], doc["width"]) == label.shape
        assert sorted(t["id"] for t in doc["tracks"]) == sorted(set(np.unique(label)) - {0})
        for t in doc["tracks"]:
            m = mask_utils.decode(t["mask"]).astype(bool)
            assert np.array_equal(m, label == t["id"])
            x, y, w, h = t["box"]
            rows, cols = np.nonzero(m)
            assert (x, y, w, h) == (cols.min(), rows.min(), cols.max() - cols.min() + 1, rows.max() - rows.min() + 1)
            assert t["class"] in ("person", "bicycle") and t["area"] == int(m.sum())


def _receive(url: str, counts: dict[str, object], ready: threading.Event) -> None:
    """Decode every frame that arrives on ``url`` until it goes quiet (or ends) for a few seconds."""
    try:
        with av.open(url, format="mpegts", timeout=(200.0, 4.0)) as c:  # opened before the models load
            ready.set()
            stream = c.streams.video[0]
            n = 0
            size = None
            try:
                for packet in c.demux(stream):
                    for frame in stream.decode(packet):
                        n += 1
                        size = (frame.width, frame.height)
            except av.error.FFmpegError:
                pass  # the read timeout after the sender finished
            counts["frames"], counts["size"] = n, size
    except Exception as exc:  # noqa: BLE001 - reported by the test
        counts["error"] = repr(exc)
    finally:
        ready.set()


@pytest.mark.parametrize("proto", ["udp", "tcp"])
def test_stream_out_is_received_on_localhost(tmp_path, tiny_models, videos_dir, proto) -> None:
    port = _free_port(socket.SOCK_DGRAM if proto == "udp" else socket.SOCK_STREAM)
    listen = f"udp://127.0.0.1:{port}" if proto == "udp" else f"tcp://127.0.0.1:{port}?listen=1"
    counts: dict[str, object] = {}
    ready = threading.Event()
    receiver = threading.Thread(target=_receive, args=(listen, counts, ready), daemon=True)
    receiver.start()
    time.sleep(0.5)  # the receiver is bound before anything is sent
    total = 30
    proc = subprocess.run(cli(tiny_models, str(videos_dir / "carphone_pristine.mp4"), "--prompt", "person.",
                              "--out", str(tmp_path / "run"), "--max-frames", str(total), "--save", "none",
                              "--stream-out", f"{proto}://127.0.0.1:{port}"),
                          capture_output=True, text=True, env=ENV, cwd=REPO, timeout=240, check=False)
    receiver.join(30)
    assert proc.returncode == 0, proc.stderr
    assert "error" not in counts, counts
    assert counts["frames"] == total and counts["size"] == (176, 144)
    assert json.loads((tmp_path / "run" / "run.json").read_text())["status"] == "completed"


def test_stream_out_goes_at_the_source_pace_and_keeps_its_timing() -> None:
    """Results ready at once (a file tracked faster than real time) leave at their timestamps' pace."""
    from test_sinks_data import TIMESTAMPS, scripted_results, video_info

    from gsam2_video.live.streamout import StreamOutSink
    from gsam2_video.sinks import AsyncWriter

    port = _free_port(socket.SOCK_DGRAM)
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("127.0.0.1", port))
    rx.settimeout(5.0)
    data = bytearray()
    try:
        began = time.monotonic()
        with AsyncWriter([StreamOutSink(f"udp://127.0.0.1:{port}")]) as writer:
            writer.open(video_info(fps=25.0), ["a", "b", "c"])
            for result in scripted_results():
                writer.write(result)
        elapsed = time.monotonic() - began
        rx.settimeout(0.5)
        while True:
            try:
                data += rx.recv(65536)
            except TimeoutError:
                break
    finally:
        rx.close()
    assert elapsed >= TIMESTAMPS[-1] - TIMESTAMPS[0]
    with av.open(BytesIO(bytes(data)), format="mpegts") as c:
        frames = list(c.decode(video=0))
    assert len(frames) == len(TIMESTAMPS)
    times = [float(f.pts * f.time_base) for f in frames]
    assert np.allclose(np.array(times) - times[0], TIMESTAMPS, atol=1e-3)  # variable frame rate kept


def _read_parts(url: str, want: int, timeout: float) -> list[bytes]:
    """JPEG parts of a multipart/x-mixed-replace response, parsed by their Content-Length headers."""
    parts: list[bytes] = []
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        ctype = resp.headers["Content-Type"]
        m = re.match(r"multipart/x-mixed-replace;\s*boundary=(\S+)", ctype)
        assert m, ctype
        boundary = m.group(1).encode()
        while len(parts) < want:
            line = resp.readline()
            if not line:
                break
            if line.strip() != b"--" + boundary:
                continue
            headers = {}
            while True:
                h = resp.readline().strip()
                if not h:
                    break
                k, v = h.decode().split(":", 1)
                headers[k.strip().lower()] = v.strip()
            assert headers["content-type"] == "image/jpeg"
            parts.append(resp.read(int(headers["content-length"])))
    return parts


def test_preview_serves_the_page_stats_and_an_mjpeg_stream(tmp_path, tiny_models, videos_dir) -> None:
    proc = subprocess.Popen(cli(tiny_models, str(videos_dir / "carphone_pristine.mp4"), "--prompt", "person.",
                                "--out", str(tmp_path / "run"), "--save", "none", "--live", "--preview", "0"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=ENV, cwd=REPO)
    try:
        assert proc.stderr is not None
        url = None
        deadline = time.monotonic() + 120
        while url is None and time.monotonic() < deadline:
            line = proc.stderr.readline()
            if not line:
                break
            m = re.search(r"preview at (http://\S+)", line)
            url = m.group(1) if m else None
        assert url is not None and url.startswith("http://127.0.0.1:")
        parts = _read_parts(url + "stream.mjpg", want=5, timeout=120)
        assert len(parts) == 5
        for jpeg in parts:
            img = Image.open(BytesIO(jpeg))
            img.load()
            assert img.format == "JPEG" and img.size == (176, 144)
        stats = json.loads(urllib.request.urlopen(url + "stats.json", timeout=10).read())
        assert set(stats) >= {"fps", "frame", "dropped", "objects", "src"}
        assert stats["src"] == "carphone_pristine.mp4" and stats["fps"] > 0
        assert all(set(o) == {"id", "class", "score"} for o in stats["objects"])
        page = urllib.request.urlopen(url, timeout=10).read().decode()
        assert 'src="/stream.mjpg"' in page and "/stats.json" in page
        proc.wait(240)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert proc.returncode == 0


def test_preview_port_in_use_is_one_line_before_torch(tmp_path, videos_dir) -> None:
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    try:
        rc, err, heavy = _cli_without_models("track", str(videos_dir / "tree.avi"), "--prompt", "tree.",
                                             "--out", str(tmp_path / "o"), "--preview", str(busy.getsockname()[1]))
    finally:
        busy.close()
    assert rc == 2 and heavy == [] and err.count("\n") == 1
    assert "cannot listen on 127.0.0.1" in err and "Address already in use" in err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("url", ["http://example.com/x", "udp://", "stream.ts"])
def test_bad_stream_out_url_is_one_line_before_torch(tmp_path, videos_dir, url) -> None:
    rc, err, heavy = _cli_without_models("track", str(videos_dir / "tree.avi"), "--prompt", "tree.",
                                         "--out", str(tmp_path / "o"), "--stream-out", url)
    assert rc == 2 and heavy == [] and err.count("\n") == 1 and "--stream-out" in err


def test_jsonl_into_a_missing_folder_is_one_line_before_torch(tmp_path, videos_dir) -> None:
    rc, err, heavy = _cli_without_models("track", str(videos_dir / "tree.avi"), "--prompt", "tree.",
                                         "--jsonl", str(tmp_path / "nope" / "x.jsonl"))
    assert rc == 2 and heavy == [] and "does not exist" in err


def test_preview_is_quiet_when_a_browser_goes_away(capsys) -> None:
    """A client hanging up mid-response (a closed tab) must not print a traceback into the run's stderr."""
    from gsam2_video.live.preview import PreviewServer

    server = PreviewServer("127.0.0.1", 0)
    try:
        assert server.address[0] == "127.0.0.1"
        try:
            raise BrokenPipeError(32, "Broken pipe")
        except BrokenPipeError:
            server._server.handle_error(None, ("127.0.0.1", 1))
    finally:
        server.close()
    assert capsys.readouterr().err == ""
