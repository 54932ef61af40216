"""``gsam2-video track``: one source in, annotated video / masks / tracks out.

Cheap checks (prompt, outputs, source) run before torch is even imported, so a typo costs well under 2 s,
not a model load. Outputs go through one async writer. However the run ends (finished, Ctrl-C, or a failure:
encoder error, full disk, source gone) every output is closed with complete files for the frames done and
run.json says how it ended (``status``: completed / interrupted / failed, with the reason); a failure prints
one line and exits non-zero.
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from ..errors import ConfigError, OutputError
from ..live.options import add_live_options, check_live_options, stream_timeouts
from ..live.outputs import LiveOutputs
from ..outcome import FAILED, RunOutcome
from ..sinks import (
    IMAGE_KINDS,
    PICTURE_KINDS,
    RLE_KINDS,
    SINK_KINDS,
    AsyncWriter,
    make_sinks,
    prepare_output_dir,
    write_run_json,
)
from ..types import FrameResult
from .options import (
    SAVE_DEFAULT,
    add_decoding_options,
    add_deprecated_alias,
    add_model_options,
    add_progress_option,
    int_at_least,
    parse_save,
    tracker_config,
)

log = logging.getLogger("gsam2_video")


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``track`` on the top-level CLI's subparsers."""
    t = subparsers.add_parser("track", help="track objects in one video, folder of frames, camera or stream",
                              description="Track the objects a prompt names through one source and write the "
                                          "annotated video, per-frame masks and tracks in standard formats.")
    t.add_argument("source", help="video file, image folder, glob, camera index (0) or stream URL "
                                  "(rtsp/rtmp/http(s)/udp/tcp)")
    t.add_argument("--prompt", required=True, help='classes to track, e.g. "person. car."')
    t.add_argument("--out", type=Path, default=None, metavar="DIR",
                   help="output folder (default runs/track/<source name>, numbered if it exists)")
    # default None in every command (a shared flag has one default); each command fills in its own list
    t.add_argument("--save", default=None, metavar="LIST",
                   help=f"comma list of outputs: {', '.join(SINK_KINDS)} (default {SAVE_DEFAULT}; "
                        "'none' writes only run.json)")
    mode = t.add_mutually_exclusive_group()
    mode.add_argument("--live", dest="mode", action="store_const", const="live",
                      help="no lag, no back-fill (default for cameras and streams)")
    mode.add_argument("--offline", dest="mode", action="store_const", const="offline",
                      help="results lag up to K frames so new tracks are back-filled (default for files)")
    t.add_argument("--video-codec", default="auto", metavar="CODEC",
                   help="video.mp4 codec: auto (H.264: NVENC on an NVIDIA GPU that has it, else libx264), "
                        "h264, hevc, av1, or an encoder name (libx264, h264_nvenc, libx265, libsvtav1, ...); "
                        "a codec this FFmpeg build cannot encode stops the run with one line")
    t.add_argument("--show", action="store_true", help="show the annotated frames in a window (q quits)")
    add_progress_option(t)
    add_decoding_options(t)
    add_model_options(t)
    # track's --max-objects was always the live cap: it keeps working under its explicit name
    add_deprecated_alias(t, "--max-objects", "max_live_objects", "--max-live-objects", int_at_least(1))
    add_live_options(t)
    return t


def default_out_dir(source_name: str, root: Path = Path("runs/track")) -> Path:
    """runs/track/<name>, then <name>2, <name>3, ... so earlier runs are never overwritten."""
    base = root / (source_name or "source")
    if not base.exists():
        return base
    n = 2
    while (root / f"{base.name}{n}").exists():
        n += 1
    return root / f"{base.name}{n}"


def run(args: argparse.Namespace) -> int:
    """Run ``track``; returns the exit code (0; 130 after Ctrl-C; 2 or 1 after a failure, outputs kept)."""
    from ..prompts import parse_prompt
    from ..sources import open_source

    # everything a user can get wrong is checked here, before torch / transformers are imported (seconds)
    kinds = parse_save(args.save if args.save is not None else SAVE_DEFAULT)
    encoder = None
    if "video" in kinds:  # a missing encoder is a one-line error before the (slow) model load
        from ..sinks.encoders import choose_encoder

        encoder = choose_encoder(getattr(args, "video_codec", "auto"))
    prompt = parse_prompt(args.prompt)
    config = tracker_config(args)
    check_live_options(args)
    display = _Display() if args.show else None
    source = open_source(args.source, decoder=args.decoder, start=args.start, stride=args.stride,
                         max_frames=args.max_frames, **stream_timeouts(args))
    created: list[Path] = []
    live: LiveOutputs | None = None
    try:
        live = LiveOutputs(args)
        info = source.info
        target = args.out if args.out is not None else default_out_dir(info.name)
        created = [p for p in (target, *target.parents) if not p.exists()]  # deepest first
        out_dir = prepare_output_dir(target)  # checked before the (slow) model load
        from ..pipeline import Tracker

        t_load = time.perf_counter()
        tracker = Tracker.from_pretrained(detector=args.detector, sam2=args.sam2, device=args.device,
                                          dtype=args.dtype, config=config)
        load_seconds = time.perf_counter() - t_load
        # on a GPU the masks' overlay and the RLE runs are built on the device, in the frame's one copy
        extras = tracker.extras_for(
            picture=bool(PICTURE_KINDS & set(kinds)) or display is not None or live.needs_image,
            rle=bool(RLE_KINDS & set(kinds)) or live.needs_rle)
        run = tracker.track(source, prompt, keep_images=(bool(IMAGE_KINDS & set(kinds)) or display is not None
                                                         or live.needs_image), extras=extras)
    except BaseException:
        source.close()
        if live is not None:
            live.close()
        if display is not None:
            display.close()
        _remove_empty(created)  # nothing was written: leave no empty run folder behind
        raise
    sinks = make_sinks(kinds, out_dir, video_codec=encoder.name if encoder else "auto") + live.sinks(source)
    writer = AsyncWriter(sinks)
    outcome = RunOutcome()
    t0 = time.perf_counter()
    max_live = 0
    ids_seen: set[int] = set()
    progress = _progress(info, disabled=args.no_progress)
    # which ops ran on CUDA kernels and which on their torch references (run.json "kernels"); the writer
    # thread runs in a copy of this context, so the sinks' RLE is counted too
    from ..ops._dispatch import kernel_record  # torch is loaded by now (the models are)

    kernels = kernel_record()
    record_ops = kernels.__enter__()
    writer.open(info, run.categories)

    def record(result: FrameResult) -> None:
        nonlocal max_live
        writer.write(result)
        ids_seen.update(int(t) for t in result.track_ids)
        max_live = max(max_live, len(result))
        if progress is not None:
            progress.set_postfix(objects=len(result), tracks=len(ids_seen), refresh=False)
            progress.update(1)

    try:
        with run:
            for result in run:
                record(result)
                if display is not None and not display.show(result):
                    break
    except KeyboardInterrupt:
        outcome.interrupt()
        _keep_held(run, record, writer)
        log.warning("interrupted: closing outputs for the %d frames done", run.stats.frames_emitted)
    except Exception as exc:
        outcome.fail(exc, output_failed=writer.error is not None)
        log.debug("run failed", exc_info=True)
        _keep_held(run, record, writer)
    finally:
        if progress is not None:
            progress.close()
        if display is not None:
            display.close()
    outcome.lose(writer.finish())  # every output closed for the frames done, after a failure too
    kernels.__exit__(None, None, None)
    if writer.error is not None:
        outcome.fail(writer.error, output_failed=True)  # a sink failed on the last frames, after the loop
    wall = time.perf_counter() - t0
    stats = run.stats.to_json()
    src_stats = getattr(source, "stats", {}) or {}
    report: dict[str, Any] = {
        "command": shlex.join(["gsam2-video", *sys.argv[1:]]),
        "source": {**info.to_json(), "decoder": args.decoder, "start": args.start, "stride": args.stride,
                   "max_frames": args.max_frames},
        "prompt": list(prompt.classes),
        "settings": run.config.to_json(),  # the effective settings: model truth, resolved precision
        "mode": "live" if run.live else "offline",
        "outputs": [p for s in sinks for p in s.outputs if p not in outcome.lost_outputs],
        "frames": {"requested": info.frame_count, "read": stats["frames_read"], "written": writer.frames_written,
                   "dropped": int(src_stats.get("frames_dropped", 0))},
        "tracks": {"total": len(ids_seen), "max_simultaneous": max_live},
        "stats": stats,
        "source_stats": dict(src_stats),
        "source_events": list(getattr(source, "events", []) or []),
        "kernels": record_ops.report(),
        "device_extras": {"overlay": run.extras.overlay, "rle": run.extras.rle},  # built on the GPU (FrameExtras)
        "writer": {"frames_written": writer.frames_written, "blocked_seconds": round(writer.blocked_seconds, 3),
                   "sink_seconds": {k: round(v, 3) for k, v in writer.sink_seconds.items()},
                   "parallel": writer.parallel, "video_encoder": encoder.name if encoder else None},
        "seconds": {"model_load": round(load_seconds, 3), "wall": round(wall, 3),
                    "fps": round(stats["frames_emitted"] / wall, 3) if wall > 0 else None},
        **outcome.to_json(writer.frames_written),
    }
    try:
        write_run_json(out_dir / "run.json", report)
    except OutputError as exc:
        print(f"gsam2-video: error: run.json not written: {exc}", file=sys.stderr)
        return outcome.exit_code or 2
    if outcome.status == FAILED:
        print(f"gsam2-video: error: {outcome.reason}; kept {writer.frames_written} finished frames in {out_dir} "
              f"(run.json: status failed)", file=sys.stderr)
        return outcome.exit_code
    if stats["frames_read"] and not ids_seen:
        log.warning("no objects matching %r were found in %d frames; outputs are empty",
                    prompt.text(), stats["frames_read"])
    print(f"gsam2-video: {stats['frames_emitted']} frames, {len(ids_seen)} tracks -> {out_dir}",
          file=sys.stderr)
    return outcome.exit_code


def _keep_held(run: Any, record: Any, writer: AsyncWriter) -> None:
    """Write the finished frames an offline run still holds for back-fill (their masks are final), unless the
    writer itself failed; a second Ctrl-C or another failure stops this, never the closing of the outputs."""
    if writer.error is not None:
        return
    try:
        for result in run.drain():
            record(result)
    except KeyboardInterrupt:
        pass
    except Exception as exc:  # noqa: BLE001 - the first failure is the one reported
        log.debug("writing held frames failed: %s", exc)


def _remove_empty(folders: list[Path]) -> None:
    """Remove the folders this run created, deepest first, as long as they are empty."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            return


def _progress(info: Any, disabled: bool) -> Any:
    if disabled:
        return None
    from tqdm import tqdm

    return tqdm(total=info.frame_count, unit="frame", desc=info.name, dynamic_ncols=True, leave=True,
                disable=None)


class _Display:
    """An OpenCV window with the annotated frames; 'q' or closing the window stops the run."""

    def __init__(self) -> None:
        import cv2

        try:
            cv2.namedWindow("gsam2-video", cv2.WINDOW_NORMAL)
        except cv2.error:
            raise ConfigError("--show needs a display and an OpenCV build with GUI support "
                              "(pip install opencv-python); run without --show") from None
        self._cv2 = cv2

    def show(self, result: Any) -> bool:
        from ..drawing import annotate

        if result.image is None and result.overlay is None:
            return True
        frame = annotate(result.image, result)
        self._cv2.imshow("gsam2-video", frame[:, :, ::-1])
        return (self._cv2.waitKey(1) & 0xFF) != ord("q")

    def close(self) -> None:
        try:
            self._cv2.destroyAllWindows()
        except self._cv2.error:
            pass
