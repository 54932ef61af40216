"""Media helpers shared by the stream tests: a clip re-muxed to MPEG-TS in memory (no re-encoding)."""

from __future__ import annotations

import io
from pathlib import Path

import av


def remux_ts(path: Path) -> bytes:
    """The clip's video packets as an MPEG-TS byte string, as a network camera or server would send it."""
    buf = io.BytesIO()
    with av.open(str(path)) as inp, av.open(buf, "w", format="mpegts") as out:
        ins = inp.streams.video[0]
        outs = out.add_stream_from_template(ins)
        for packet in inp.demux(ins):
            if packet.dts is None:
                continue
            packet.stream = outs
            out.mux(packet)
    return buf.getvalue()
