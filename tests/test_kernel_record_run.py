"""The run record sees the ops run by the sink writer's thread (RLE for tracks.json and mots.txt)."""

from __future__ import annotations

from test_sinks_data import CATEGORIES, scripted_results, video_info

from gsam2_video.ops import kernel_record
from gsam2_video.sinks import AsyncWriter, make_sinks
from gsam2_video.sinks.base import visible_tracks


def test_writer_thread_ops_count_in_the_run_record(tmp_path):
    results = scripted_results()
    with kernel_record() as record, AsyncWriter(make_sinks(["json", "mots"], tmp_path)) as writer:
        writer.open(video_info(), CATEGORIES)
        for r in results:
            writer.write(r)
    # one label-map scan per frame with a visible track, shared by both sinks
    encoded = sum(1 for r in results if len(visible_tracks(r)))
    assert encoded > 0
    assert record.report() == {"rle": {"kernel": 0, "torch": encoded}}
