"""`gsam2-video track` on a live network stream served by the test on 127.0.0.1 (HTTP MPEG-TS)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import av
import pytest
from stream_media import remux_ts

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture()
def http_stream(videos_dir: Path) -> Iterator[str]:
    data = remux_ts(videos_dir / "carphone_pristine.mp4")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "video/mp2t")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/live.ts"
    finally:
        server.shutdown()
        server.server_close()


def test_stream_runs_live_with_one_result_per_delivered_frame(http_stream: str, tiny_models: dict[str, Path],
                                                              tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "gsam2_video", "track", http_stream, "--prompt", "person.", "--out", str(out),
         "--save", "video,masks,mot", "--max-frames", "8", "--no-progress", "--device", "cpu",
         "--detector", str(tiny_models["detector"]), "--sam2", str(tiny_models["sam2"]),
         "--box-threshold", "0.05", "--text-threshold", "0.05", "--max-live-objects", "3"],
        capture_output=True, text=True, cwd=REPO, timeout=300, check=False,
        env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 0, proc.stderr
    run = json.loads((out / "run.json").read_text())
    assert run["mode"] == "live"
    assert run["source"]["is_live"] is True
    written = run["frames"]["written"]
    assert run["frames"]["read"] == written  # live: no lag, nothing held back
    assert 1 <= written <= 8
    names = sorted(int(p.stem) for p in (out / "masks").glob("*.png"))
    assert len(names) == written
    # source indices, strictly increasing; gaps are frames the live reader replaced with newer ones (a finite
    # stream served live is reconnected to and indices keep counting, so they may pass the clip length)
    assert len(set(names)) == len(names)
    src = run["source_stats"]
    assert src["frames_yielded"] == written
    assert src["frames_dropped"] == run["frames"]["dropped"]
    assert src["frames_read"] >= written + src["frames_dropped"]
    with av.open(str(out / "video.mp4")) as container:
        assert sum(1 for _ in container.decode(video=0)) == written
