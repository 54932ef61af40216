"""Media helpers shared by the source tests: a clip re-muxed without re-encoding (to MPEG-TS in memory
for the stream tests, to a file with other muxer options)."""

from __future__ import annotations

import io
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
