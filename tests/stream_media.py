"""Media helpers shared by the source tests: a clip re-muxed without re-encoding (to MPEG-TS in memory
for the stream tests, to a file with other muxer options)."""

from __future__ import annotations

import contextlib
import io
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import av


def remux(path: Path, target: Any, **open_kwargs: Any) -> None:
    """Copy the clip's video packets (no re-encoding) into ``target``, a path or a file object, opened for
    writing with ``open_kwargs`` (container format, muxer options)."""
    with av.open(str(path)) as inp, av.open(target, "w", **open_kwargs) as out:
        ins = inp.streams.video[0]
        outs = out.add_stream_from_template(ins)
        for packet in inp.demux(ins):
            if packet.dts is None:
                continue
            packet.stream = outs
            out.mux(packet)


def remux_ts(path: Path) -> bytes:
    """The clip's video packets as an MPEG-TS byte string, as a network camera or server would send it."""
    buf = io.BytesIO()
    remux(path, buf, format="mpegts")
    return buf.getvalue()


def encode_ts(path: Path, gop: int = 10) -> bytes:
    """The clip re-encoded (H.264, a keyframe every ``gop`` frames) as MPEG-TS: what a live camera sends, so a
    receiver joining mid-stream gets a picture within ``gop`` frames."""
    buf = io.BytesIO()
    with av.open(str(path)) as inp, av.open(buf, "w", format="mpegts") as out:
        ins = inp.streams.video[0]
        outs = out.add_stream("libx264", rate=ins.average_rate or 30)
        outs.width, outs.height, outs.pix_fmt = ins.codec_context.width, ins.codec_context.height, "yuv420p"
        outs.options = {"g": str(gop), "keyint_min": str(gop), "preset": "ultrafast", "tune": "zerolatency"}
        for frame in inp.decode(ins):
            frame.pict_type = av.video.frame.PictureType.NONE
            for packet in outs.encode(frame):
                out.mux(packet)
        for packet in outs.encode(None):
            out.mux(packet)
    return buf.getvalue()


def send_udp(data: bytes, port: int, seconds_per_loop: float, max_seconds: float) -> None:
    """Send MPEG-TS ``data`` to udp://127.0.0.1:``port`` in 7-packet datagrams, looping, paced so one pass
    takes ``seconds_per_loop`` (about real time), for at most ``max_seconds``; as a streamer would."""
    import socket
    import time

    chunk = 1316  # 7 TS packets per datagram, as FFmpeg and cameras send them
    chunks = max(1, len(data) // chunk)
    interval = seconds_per_loop / chunks
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    began = time.monotonic()
    sent = 0
    try:
        while time.monotonic() - began < max_seconds:
            for i in range(0, len(data), chunk):
                tx.sendto(data[i:i + chunk], ("127.0.0.1", port))
                sent += 1
                delay = began + sent * interval - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                if time.monotonic() - began >= max_seconds:
                    return
    finally:
        tx.close()


def start_udp_streamer(ts_file: Path, port: int, seconds_per_loop: float, max_seconds: float) -> Any:
    """A separate streamer process (so a test can kill it like a real one) running :func:`send_udp`."""
    import subprocess
    import sys

    return subprocess.Popen([sys.executable, __file__, "udp", str(ts_file), str(port), str(seconds_per_loop),
                             str(max_seconds)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


if __name__ == "__main__":  # python stream_media.py udp FILE PORT SECONDS_PER_LOOP MAX_SECONDS
    import sys

    if len(sys.argv) != 6 or sys.argv[1] != "udp":
        raise SystemExit("usage: stream_media.py udp FILE PORT SECONDS_PER_LOOP MAX_SECONDS")
    send_udp(Path(sys.argv[2]).read_bytes(), int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5]))


def free_udp_port() -> int:
    """A UDP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def serve_ts_over_http(data: bytes, name: str, content_length: bool = False) -> Iterator[str]:
    """Serve ``data`` as MPEG-TS to every GET on 127.0.0.1; yields the URL ``http://127.0.0.1:PORT/name``."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "video/mp2t")
            if content_length:
                self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            try:
                self.wfile.write(data)
            except OSError:
                pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/{name}"
    finally:
        server.shutdown()
        server.server_close()
