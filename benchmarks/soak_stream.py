"""Soak: a live UDP stream on 127.0.0.1, restarted periodically, tracked by the real CLI for N frames.

Question: does a long live run stay flat in memory and lose nothing across streamer restarts?

Setup: the clip (carphone, re-encoded with a keyframe every 10 frames, as cameras send) is looped as MPEG-TS
datagrams to 127.0.0.1 by a separate streamer process (``tests/stream_media.py``, the same streamer the tests
kill), ``--speed`` times real time. Every ``--restart-every`` seconds the streamer is killed, stays down
``--down`` seconds (longer than ``--stream-timeout``, so the reader reconnects) and starts the clip again (its
pts start over). ``gsam2-video track udp://... --live --jsonl - --save video,masks,json`` runs with tiny
random models; this script reads its JSON lines from the pipe as they come, samples the tracker process's
current RSS (VmRSS) each time the stream position passes a multiple of ``--every`` frames, and stops the run
with SIGINT (Ctrl-C, the normal way to end a live run) once ``--frames`` frames have been read from the
stream. Then it checks that nothing was lost: run.json's counts, the JSON lines, the mask PNGs, tracks.json
and the frames PyAV decodes from video.mp4 must all equal the frames the tracker processed.

Live mode keeps only the newest frame, so frames the tracker cannot keep up with are dropped (counted);
``frames_read`` counts every frame received from the stream.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from _common import REPO, VIDEOS, detector_dir, emit, sam2_dir

sys.path.insert(0, str(REPO / "tests"))
from stream_media import encode_ts, free_udp_port, start_udp_streamer

CLIP_SECONDS = 4.0  # carphone_pristine.mp4: 120 frames at 30 fps


def _rss_mib(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024.0, 1)
    except OSError:
        return None
    return None


def _count_video_frames(path: Path) -> int:
    import av

    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


def _check_outputs(out: Path, lines: int) -> dict[str, Any]:
    """Frames in each output, read back the way users read them."""
    run = json.loads((out / "run.json").read_text())
    written = run["frames"]["written"]
    counts = {"run_json_written": written, "jsonl_lines": lines,
              "mask_pngs": len(list((out / "masks").glob("*.png"))) if (out / "masks").is_dir() else 0,
              "tracks_json_frames": (json.loads((out / "tracks.json").read_text())["videos"][0]["length"]
                                     if (out / "tracks.json").is_file() else 0),
              "video_frames": _count_video_frames(out / "video.mp4") if (out / "video.mp4").is_file() else 0}
    lost = {k: written - v for k, v in counts.items() if v != written}
    return {"run": run, "counts": counts, "lost_outputs": lost}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=10_000, help="frames to read from the stream (default 10000)")
    ap.add_argument("--every", type=int, default=1_000, help="RSS sample period in stream frames")
    ap.add_argument("--speed", type=float, default=4.0, help="stream speed relative to real time (default 4)")
    ap.add_argument("--restart-every", type=float, default=20.0, help="seconds between streamer restarts")
    ap.add_argument("--down", type=float, default=1.5, help="seconds the streamer stays down per restart")
    ap.add_argument("--stream-timeout", type=float, default=1.0)
    ap.add_argument("--max-seconds", type=float, default=900.0, help="stop the run after this long regardless")
    ap.add_argument("--out", type=Path, default=None, help="run folder (default: a temporary one, deleted)")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="gsam2-soak-"))
    out = args.out or work / "run"
    ts_file = work / "clip.ts"
    ts_file.write_bytes(encode_ts(VIDEOS / "carphone_pristine.mp4", gop=10))
    port = free_udp_port()
    loop_seconds = CLIP_SECONDS / args.speed
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONPATH": str(REPO),
           "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "gsam2_video", "track", f"udp://127.0.0.1:{port}", "--prompt", "person.",
           "--out", str(out), "--live", "--save", "video,masks,json", "--jsonl", "-", "--stream-timeout",
           str(args.stream_timeout), "--detector", str(detector_dir("tiny")), "--sam2", str(sam2_dir("tiny")),
           "--device", "cpu", "--box-threshold", "0.05", "--text-threshold", "0.05", "--max-live-objects", "4",
           "--no-progress"]
    streamer = start_udp_streamer(ts_file, port, loop_seconds, args.max_seconds + 60)
    stderr_file = (work / "stderr.txt").open("w")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=stderr_file, text=True, env=env, cwd=REPO)
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    samples: list[dict[str, Any]] = []
    restarts = 0
    processed = 0
    position = -1
    began = time.monotonic()
    first_line_at: float | None = None
    last_restart = None
    stopped = False
    next_mark = args.every
    while True:
        try:
            line = lines.get(timeout=1.0)
        except queue.Empty:
            line = ""
        if line is None:
            break
        now = time.monotonic()
        if line:
            processed += 1
            position = json.loads(line)["frame"]
            if first_line_at is None:
                first_line_at = last_restart = now
            if position + 1 >= next_mark:
                samples.append({"frames_read": position + 1, "frames_processed": processed,
                                "seconds": round(now - first_line_at, 1), "rss_mib": _rss_mib(proc.pid)})
                next_mark = (position + 1) // args.every * args.every + args.every
        if stopped:
            continue
        if position + 1 >= args.frames or now - began > args.max_seconds:
            proc.send_signal(signal.SIGINT)  # Ctrl-C: how a live run is ended
            stopped = True
        elif last_restart is not None and now - last_restart >= args.restart_every:
            streamer.kill()
            streamer.wait(10)
            time.sleep(args.down)
            streamer = start_udp_streamer(ts_file, port, loop_seconds, args.max_seconds + 60)
            restarts += 1
            last_restart = time.monotonic()
    proc.wait(120)
    streamer.kill()
    streamer.wait(10)
    stderr_file.close()
    wall = time.monotonic() - began
    checked = _check_outputs(out, processed)
    run = checked["run"]
    rss = [s["rss_mib"] for s in samples if s["rss_mib"] is not None]
    emit({
        "question": "live UDP stream with streamer restarts: memory flat, frames lost?",
        "setup": {"clip": "carphone_pristine.mp4 re-encoded, keyframe every 10 frames, looped",
                  "speed_x_real_time": args.speed, "restart_every_s": args.restart_every, "down_s": args.down,
                  "stream_timeout_s": args.stream_timeout, "models": "tiny random (tests' configs)",
                  "cli": " ".join(cmd[1:])},
        "exit_code": proc.returncode,
        "status": run.get("status"),
        "wall_seconds": round(wall, 1),
        # tracked: frames the tracker took from the source; the one it was computing when Ctrl-C came is not
        # finished (in_flight_at_stop); every other is written to every output
        "frames": {"read_from_stream": run["source_stats"].get("frames_read"),
                   "tracked": run["frames"]["read"], "written": run["frames"]["written"],
                   "in_flight_at_stop": run["frames"]["read"] - run["frames"]["written"],
                   "dropped": run["frames"]["dropped"]},
        "streamer_restarts": restarts,
        "reconnects": run["source_stats"].get("reconnects"),
        "discontinuities": run["source_stats"].get("discontinuities"),
        "rss_every_n_frames": samples,
        "rss_last_over_first": round(rss[-1] / rss[0], 3) if len(rss) >= 2 else None,
        "outputs": checked["counts"],
        "lost_outputs": checked["lost_outputs"],
        "stderr_tail": (work / "stderr.txt").read_text()[-1500:],
    })
    if args.out is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
