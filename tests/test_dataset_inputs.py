"""Dataset inputs: files, folders, globs, manifests (JSONL / CSV) and names, all checked before models load."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gsam2_video.dataset.filters import Filters
from gsam2_video.dataset.inputs import JobDefaults, SourceOptions, collect_jobs, read_manifest, safe_name
from gsam2_video.errors import ConfigError

DEFAULTS = JobDefaults(prompt="person. car.")


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    return path


def test_files_folders_and_globs(tmp_path: Path) -> None:
    vids = tmp_path / "vids"
    for n in ("clip10.mp4", "clip2.avi", "notes.txt", ".hidden.mp4"):
        touch(vids / n)
    frames = tmp_path / "frames"
    for n in ("1.jpg", "2.jpg"):
        touch(frames / n)
    vos = tmp_path / "JPEGImages"
    for v in ("b", "a"):
        touch(vos / v / "00000.jpg")
    single = touch(tmp_path / "one.mkv")
    jobs = collect_jobs([str(vids), str(frames), str(vos), str(single)], DEFAULTS)
    assert [j.name for j in jobs] == ["clip2", "clip10", "frames", "a", "b", "one"]
    assert jobs[0].source == str((vids / "clip2.avi").resolve())
    assert jobs[2].source == str(frames.resolve())
    assert jobs[3].source == str((vos / "a").resolve())
    assert all(j.prompt == "person. car." and j.origin == "command line" for j in jobs)

    globbed = collect_jobs([str(vids / "clip*")], DEFAULTS)
    assert [j.name for j in globbed] == ["clip2", "clip10"]
    image_glob = collect_jobs([str(frames / "*.jpg")], DEFAULTS)
    assert [(j.name, j.source) for j in image_glob] == [("frames", str(frames / "*.jpg"))]


def test_missing_path_is_kept_to_fail_alone_but_bad_globs_and_folders_are_errors(tmp_path: Path) -> None:
    jobs = collect_jobs([str(tmp_path / "gone.mp4")], DEFAULTS)
    assert [(j.name, j.source) for j in jobs] == [("gone", str(tmp_path / "gone.mp4"))]
    with pytest.raises(ConfigError, match="glob matches no files"):
        collect_jobs([str(tmp_path / "*.mp4")], DEFAULTS)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="holds no videos, images or folders of images"):
        collect_jobs([str(tmp_path / "empty")], DEFAULTS)
    with pytest.raises(ConfigError, match="webcam never ends"):
        collect_jobs(["0"], DEFAULTS)
    with pytest.raises(ConfigError, match=r"rtsp://\*\*\*@cam/live: a live stream never ends"):
        collect_jobs(["rtsp://user:secret@cam/live"], DEFAULTS)
    remote = collect_jobs(["https://example.org/media/My%20Clip.mp4"], DEFAULTS)
    assert [(j.name, j.source) for j in remote] == [("My_Clip", "https://example.org/media/My%20Clip.mp4")]
    with pytest.raises(ConfigError, match="no inputs"):
        collect_jobs([], DEFAULTS)


def test_name_collisions_take_parent_folder_or_fail(tmp_path: Path) -> None:
    a = touch(tmp_path / "a" / "clip.mp4")
    b = touch(tmp_path / "b" / "clip.mp4")
    jobs = collect_jobs([str(a), str(b)], DEFAULTS)
    assert [j.name for j in jobs] == ["a_clip", "b_clip"]
    with pytest.raises(ConfigError, match="both be named 'a_clip'"):
        collect_jobs([str(a), str(a)], DEFAULTS)
    assert safe_name("my clip (1).mp4") == "my_clip_1_.mp4"
    assert safe_name("..x") == "x"


def test_jsonl_manifest_overrides_and_relative_sources(tmp_path: Path) -> None:
    touch(tmp_path / "v" / "a.mp4")
    touch(tmp_path / "v" / "b.mp4")
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(
        json.dumps({"source": "v/a.mp4", "prompt": "dog", "max_frames": 5, "min_area": 10,
                    "classes": ["Dog"], "detect_every": 3, "iou_threshold": 0.4}) + "\n\n"
        + json.dumps({"source": "v/b.mp4", "name": "second"}) + "\n")
    defaults = JobDefaults(prompt="person. car.", filters=Filters(min_track_length=2),
                           source=SourceOptions(stride=2))
    jobs = collect_jobs([], defaults, manifest)
    a, b = jobs
    assert (a.name, a.source, a.prompt) == ("a", str((tmp_path / "v" / "a.mp4").resolve()), "dog")
    assert a.filters == Filters(min_area=10, min_track_length=2, classes=("dog",))
    assert a.source_options == SourceOptions(stride=2, max_frames=5)
    assert a.tracking == {"detect_every": 3, "iou_threshold": 0.4}
    assert a.origin == f"{manifest}:1"
    assert (b.name, b.prompt, b.tracking, b.origin) == ("second", "person. car.", {}, f"{manifest}:3")
    assert b.settings()["decoding"] == {"decoder": "av", "start": 0, "stride": 2, "max_frames": None}


def test_csv_manifest_types_and_empty_cells(tmp_path: Path) -> None:
    touch(tmp_path / "a.mp4")
    manifest = tmp_path / "m.csv"
    manifest.write_text('source,prompt,max_frames,classes,class_aware,min_area\n'
                        'a.mp4,"person. car.",7,"person,car",true,\n'
                        ',,,,,\n')
    (job,) = collect_jobs([], JobDefaults(), manifest)
    assert job.source_options.max_frames == 7
    assert job.filters.classes == ("person", "car")
    assert job.filters.min_area == 0
    assert job.tracking == {"class_aware": True}
    assert read_manifest(manifest)[0][0] == f"{manifest}:2"


def test_manifest_keep_longest_is_the_per_video_filter(tmp_path: Path) -> None:
    """The manifest spells the filter like the flag (--keep-longest); it never touches the live cap."""
    touch(tmp_path / "a.mp4")
    manifest = tmp_path / "m.csv"
    manifest.write_text("source,keep_longest\na.mp4,3\n")
    (job,) = collect_jobs([], DEFAULTS, manifest)
    assert job.filters == Filters(max_objects=3)
    assert job.tracking == {}


@pytest.mark.parametrize("body, suffix, message", [
    ('{"source": "a.mp4", "colour": 1}\n', ".jsonl", r"m.jsonl:1: unknown key 'colour'"),
    ('{"prompt": "x"}\n', ".jsonl", r"m.jsonl:1: 'source' is required"),
    ('{"source": "a.mp4", "max_frames": "many"}\n', ".jsonl", r"m.jsonl:1: max_frames must be an integer"),
    ('{"source": "a.mp4", "detect_every": 0}\n', ".jsonl", r"m.jsonl:1: --detect-every must be >= 1"),
    ('{"source": "a.mp4", "stride": 0}\n', ".jsonl", r"m.jsonl:1: stride must be an integer >= 1"),
    ('{"source": "a.mp4"}\n[1]\n', ".jsonl", r"m.jsonl:2: each line must be a JSON object"),
    ('{"source": \n', ".jsonl", r"m.jsonl:1: not valid JSON"),
    ('{"source": "a.mp4", "classes": "cat"}\n', ".jsonl", r"m.jsonl:1: classes to keep cat not in the prompt"),
    ('{"source": "a.mp4", "prompt": ". ,"}\n', ".jsonl", r"m.jsonl:1: prompt '. ,' names no class"),
    ("prompt\nperson\n", ".csv", r"m.csv: the CSV header must have a 'source' column"),
    ("source,max_frames\na.mp4,1,2\n", ".csv", r"m.csv:2: more cells than header columns"),
    ("", ".jsonl", r"m.jsonl: no rows"),
    ('{"source": "a.mp4", "max_objects": 2}\n', ".jsonl", r"m.jsonl:1: 'max_objects' is renamed 'keep_longest'"),
    ("source: a.mp4\n", ".yaml", r"unknown format .yaml"),
])
def test_manifest_errors_name_file_and_line(tmp_path: Path, body: str, suffix: str, message: str) -> None:
    touch(tmp_path / "a.mp4")
    manifest = tmp_path / f"m{suffix}"
    manifest.write_text(body)
    with pytest.raises(ConfigError, match=message):
        collect_jobs([], JobDefaults(prompt="person"), manifest)


def test_manifest_row_without_prompt_needs_default(tmp_path: Path) -> None:
    touch(tmp_path / "a.mp4")
    manifest = tmp_path / "m.jsonl"
    manifest.write_text('{"source": "a.mp4"}\n')
    with pytest.raises(ConfigError, match=r"m.jsonl:1: no prompt; add a 'prompt' value or pass --prompt"):
        collect_jobs([], JobDefaults(), manifest)
    with pytest.raises(ConfigError, match="manifest .*nope.jsonl: no such file"):
        collect_jobs([], DEFAULTS, tmp_path / "nope.jsonl")


def test_filters_validate() -> None:
    with pytest.raises(ConfigError, match="min track length must be an integer >= 1"):
        Filters(min_track_length=0)
    with pytest.raises(ConfigError, match="max objects must be an integer >= 1"):
        Filters(max_objects=0)
    with pytest.raises(ConfigError, match="classes to keep is empty"):
        Filters(classes=(" ",))
    assert Filters.parse_classes(" Person , traffic  light,") == ("person", "traffic light")
