"""``--preview PORT``: watch a run in a browser, for a GPU server without a display.

``http://HOST:PORT/`` is a small page: the annotated video (MJPEG, ``/stream.mjpg``, which every browser
shows in an ``<img>``), and the fps, frame, live objects and dropped frames, refreshed from
``/stats.json`` twice a second. The server binds 127.0.0.1 unless ``--preview-host`` says otherwise (a
preview shows camera pictures: exposing it is the user's explicit choice).

Cost: a frame is JPEG-encoded only while a client is watching the stream; each client is sent the newest
frame when one is ready (a slow client skips frames, it never holds the run back). The server is bound when
the options are checked (a port in use is a one-line error before the models load) and serves from a daemon
thread until the run's outputs close.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from ..errors import ConfigError
from ..sinks.base import FrameView, Sink
from ..types import VideoInfo
from .annotated import annotated_frame

log = logging.getLogger("gsam2_video")

BOUNDARY = "gsam2frame"
JPEG_QUALITY = 80
CLIENT_WAIT_S = 1.0  # a stream handler re-checks for shutdown at least this often

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>gsam2-video preview</title>
<style>
body{margin:0;background:#111;color:#eee;font:14px system-ui,sans-serif;display:flex;flex-wrap:wrap}
#v{flex:1 1 640px;min-width:320px;padding:8px}#v img{width:100%;background:#000}
#s{flex:0 0 260px;padding:8px}table{border-collapse:collapse;width:100%}
td{padding:2px 6px;border-bottom:1px solid #333}h1{font-size:16px;margin:4px 0}
</style></head><body>
<div id="v"><img src="/stream.mjpg" alt="annotated stream"></div>
<div id="s"><h1>gsam2-video</h1>
<table><tr><td>source</td><td id="src"></td></tr><tr><td>fps</td><td id="fps"></td></tr>
<tr><td>frame</td><td id="frame"></td></tr><tr><td>dropped</td><td id="dropped"></td></tr>
<tr><td>live objects</td><td id="n"></td></tr></table>
<h1>objects</h1><table id="objs"></table></div>
<script>
async function tick(){
  try{
    const s = await (await fetch('/stats.json', {cache:'no-store'})).json();
    for (const k of ['src','fps','frame','dropped']) document.getElementById(k).textContent = s[k] ?? '';
    document.getElementById('n').textContent = s.objects.length;
    document.getElementById('objs').innerHTML = s.objects.map(o =>
      `<tr><td>${o.id}</td><td>${o.class ?? ''}</td><td>${o.score.toFixed(2)}</td></tr>`).join('');
  }catch(e){}
  setTimeout(tick, 500);
}
tick();
</script></body></html>
"""


class _Shared:
    """The newest JPEG and stats, handed from the writer thread to the HTTP handler threads."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.jpeg: bytes | None = None
        self.seq = 0
        self.clients = 0
        self.closed = False
        self.stats: dict[str, Any] = {"src": "", "fps": 0.0, "frame": None, "dropped": 0, "objects": []}


class _QuietServer(ThreadingHTTPServer):
    """An HTTP server that never prints a traceback on the run's stderr when a browser goes away."""

    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if not isinstance(exc, OSError):  # a client disconnecting is normal; anything else is worth a line
            log.warning("preview: request from %s failed: %s", client_address[0], exc)


class PreviewServer:
    """The HTTP server of the preview; binds in the constructor (ConfigError, one line, when it cannot)."""

    def __init__(self, host: str, port: int) -> None:
        shared = self.shared = _Shared()

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def log_message(self, *args: object) -> None:  # the run's own log is what matters
                pass

            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/":
                    self._send(200, "text/html; charset=utf-8", PAGE.encode())
                elif path == "/stats.json":
                    with shared.cond:
                        body = json.dumps(shared.stats).encode()
                    self._send(200, "application/json", body)
                elif path == "/stream.mjpg":
                    self._stream()
                else:
                    self._send(404, "text/plain", b"not found\n")

            def _send(self, code: int, ctype: str, body: bytes) -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

            def _stream(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                seen = -1
                with shared.cond:
                    shared.clients += 1
                try:
                    while True:
                        with shared.cond:
                            shared.cond.wait_for(lambda last=seen: shared.closed or shared.seq != last,
                                                 CLIENT_WAIT_S)
                            if shared.closed:
                                return
                            if shared.seq == seen or shared.jpeg is None:
                                continue
                            jpeg, seen = shared.jpeg, shared.seq
                        self.wfile.write(f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\n"
                                         f"Content-Length: {len(jpeg)}\r\n\r\n".encode() + jpeg + b"\r\n")
                        self.wfile.flush()
                except OSError:
                    return  # the browser went away
                finally:
                    with shared.cond:
                        shared.clients -= 1

        try:
            self._server = _QuietServer((host, port), Handler)
        except OSError as err:
            raise ConfigError(f"--preview {port}: cannot listen on {host}:{port}: {err.strerror or err}") from None
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    @property
    def url(self) -> str:
        host, port = self.address
        return f"http://{'[' + host + ']' if ':' in host else host}:{port}/"

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.2},
                                            name="gsam2-preview", daemon=True)
            self._thread.start()

    def close(self) -> None:
        with self.shared.cond:
            self.shared.closed = True
            self.shared.cond.notify_all()
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(5.0)
            self._thread = None
        self._server.server_close()


class PreviewSink(Sink):
    """Feeds a :class:`PreviewServer` from the writer thread: newest JPEG (only while watched) and stats."""

    kind = "preview"
    needs_image = True

    def __init__(self, server: PreviewServer, dropped: Callable[[], int] = lambda: 0) -> None:
        self.server = server
        self.dropped = dropped
        self._names: list[str] = []
        self._times: deque[float] = deque(maxlen=30)

    @property
    def outputs(self) -> list[str]:
        return []

    def open(self, info: VideoInfo, categories: list[str]) -> None:
        self._names = list(categories)
        with self.server.shared.cond:
            self.server.shared.stats["src"] = info.name
        self.server.start()

    def write_view(self, view: FrameView) -> None:
        import cv2

        shared = self.server.shared
        now = time.monotonic()
        self._times.append(now)
        fps = (len(self._times) - 1) / (now - self._times[0]) if len(self._times) > 1 and now > self._times[0] \
            else 0.0
        result = view.result
        objects = [{"id": int(t), "class": self._names[c] if 0 <= c < len(self._names) else None,
                    "score": round(float(s), 3)}
                   for t, c, s in zip(result.track_ids.tolist(), result.class_ids.tolist(), result.scores.tolist())]
        stats = {"src": shared.stats["src"], "fps": round(fps, 2), "frame": int(result.frame_index),
                 "timestamp": round(float(result.timestamp), 3), "dropped": int(self.dropped()),
                 "objects": objects}
        jpeg = None
        with shared.cond:
            watched = shared.clients > 0
        if watched:
            rgb = annotated_frame(view)
            if rgb is not None:
                ok, buf = cv2.imencode(".jpg", rgb[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
                jpeg = buf.tobytes() if ok else None
        with shared.cond:
            shared.stats = stats
            if jpeg is not None:
                shared.jpeg = jpeg
                shared.seq += 1
            shared.cond.notify_all()

    def close(self) -> None:
        self.server.close()

    def abort(self) -> None:
        self.server.close()
