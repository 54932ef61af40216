"""The dataset's optional exports (``--save yolo,coco,cvat``), built from the finished videos' records.

Layout added to ``DIR`` (the ``track`` command's formats, see :mod:`gsam2_video.sinks.yolo`, ``.coco``,
``.cvat``)::

    DIR/yolo/data.yaml                              train / val folders, class names
    DIR/yolo/images/{train,val}/<video>/00000.jpg   hard links to JPEGImages/<video>/ (copies where links fail)
    DIR/yolo/labels/{train,val}/<video>/00000.txt
    DIR/coco.json                                   every video, file_name = <video>/<frame>.jpg in JPEGImages/
    DIR/cvat/<video>.xml                            one CVAT for video 1.1 file per video (one CVAT task each)

Why built from the records at the end of a run (and by ``--merge``), like ``instances.json``: the files span
all videos (class ids, the train / val split, the COCO image ids), so they must describe exactly the finished
videos, whatever run or shard labelled each. Each is written atomically (a hidden temporary file or folder,
renamed into place). The cost is one pass over every record: COCO copies the stored RLE strings; YOLO and
CVAT decode each mask once.

Frames: YOLO needs the images, so ``--save yolo`` turns ``--save-frames`` on; each frame is written once, to
``JPEGImages/``, and linked into ``yolo/images/``. Split: by video, never by frame (:func:`split_videos`, a
seeded hash rank, 20 % of the videos for validation). Classes: every video's prompt classes in prompt order,
videos taken by name, a class seen in an earlier video keeping its id; object ids are the dataset's object
ids (the pixel values in ``Annotations/``), kept as COCO ``track_id`` and as the CVAT tracks' ``group_id``.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np

from ..errors import ConfigError, OutputError
from ..prompts import parse_prompt
from ..sinks.atomic import make_partial_dir, remove_quietly, replace_dir
from ..sinks.coco import CocoWriter
from ..sinks.cvat import CvatWriter
from ..sinks.rle import decode_mask
from ..sinks.yolo import data_yaml, label_text, split_videos
from .filters import normalise_class
from .record import VideoRecord, frame_name

#: names ``dataset --save`` accepts: the always-written defaults and the exports
DATASET_EXPORTS: tuple[str, ...] = ("yolo", "coco", "cvat")
ALWAYS_WRITTEN: tuple[str, ...] = ("masks", "json")
SAVE_DEFAULT = "masks,json"


def export_paths(root: Path) -> dict[str, Path]:
    """Where each export lives in a dataset folder."""
    return {"yolo": root / "yolo", "coco": root / "coco.json", "cvat": root / "cvat"}


def parse_dataset_save(text: str) -> tuple[str, ...]:
    """``--save`` of ``dataset`` -> the exports to build (``masks`` and ``json``, i.e. ``Annotations/`` and
    ``instances.json``, are always written). The names mean what they mean for ``track``."""
    names = [t.strip().lower() for t in text.split(",") if t.strip()]
    track_only = [n for n in names if n in ("video", "mots", "mot")]
    if track_only:
        raise ConfigError(f"--save {track_only[0]}: written by 'track' only; dataset outputs are "
                          f"{', '.join(ALWAYS_WRITTEN + DATASET_EXPORTS)}")
    unknown = [n for n in names if n not in ALWAYS_WRITTEN + DATASET_EXPORTS]
    if unknown or not names:
        raise ConfigError(f"--save: unknown output {', '.join(unknown) or repr(text)}; choose from "
                          f"{', '.join(ALWAYS_WRITTEN + DATASET_EXPORTS)}")
    return tuple(n for n in DATASET_EXPORTS if n in names)


def category_order(records: Iterable[VideoRecord]) -> list[str]:
    """Class names in prompt order across the set (see the module docstring), normalised as the dataset
    unifies them; categories of objects that no stored prompt names come last, sorted."""
    order: list[str] = []
    seen: set[str] = set()
    for r in records:
        seen |= {normalise_class(o.category) for o in r.objects}
        prompt = r.settings.get("prompt")
        try:
            classes = parse_prompt(prompt).classes if prompt else ()
        except Exception:  # noqa: BLE001 - an old or hand-edited record: fall back to the objects' names
            classes = ()
        for name in classes:
            if normalise_class(name) not in order:
                order.append(normalise_class(name))
    extra = sorted(seen - set(order))
    return order + extra


def _frame_objects(record: VideoRecord, pos: int, cat_index: dict[str, int]) -> list[tuple]:
    """(object id, 0-based class, counts, box, area, score) of the objects on frame ``pos``, by object id."""
    out = []
    for o in sorted(record.objects, key=lambda o: o.object_id):
        e = o.frames.get(pos)
        if e is not None:
            out.append((o.object_id, cat_index[normalise_class(o.category)], e.counts, e.box, e.area, e.score))
    return out


Records = Callable[[], Iterable[VideoRecord]]


def write_coco(path: Path, records: Records, categories: list[str]) -> None:
    cat_index = {n: i for i, n in enumerate(categories)}
    writer = CocoWriter(path, categories, "gsam2-video dataset")
    try:
        for r in records():
            writer.add_video(r.name, r.width, r.height)
            for pos, frame in enumerate(r.frame_indices):
                objs = _frame_objects(r, pos, cat_index)
                writer.add_frame(frame, r.height, r.width,
                                 [(oid, cls + 1, counts, box, area, score)
                                  for oid, cls, counts, box, area, score in objs])
    except BaseException:
        writer.discard()
        raise
    writer.commit()


def write_cvat(folder: Path, records: Records, categories: list[str]) -> None:
    cat_index = {n: i for i, n in enumerate(categories)}
    tmp = make_partial_dir(folder)
    try:
        for r in records():
            writer = CvatWriter(tmp / f"{r.name}.xml", categories, r.name)
            try:
                for pos, frame in enumerate(r.frame_indices):
                    writer.add_frame(frame, r.height, r.width, [
                        (oid, cls, decode_mask(counts, r.height, r.width), box)
                        for oid, cls, counts, box, _, _ in _frame_objects(r, pos, cat_index)])
            except BaseException:
                writer.discard()
                raise
            writer.commit()
        replace_dir(tmp, folder)
    except BaseException:
        remove_quietly(tmp)
        raise


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def write_yolo(folder: Path, images_root: Path, names: Sequence[str], records: Records,
               categories: list[str]) -> None:
    cat_index = {n: i for i, n in enumerate(categories)}
    train, val = split_videos(names)
    parts = {n: ["train"] for n in train}
    for n in val:
        parts.setdefault(n, []).append("val")  # a single video is in both (there is nothing to hold out)
    tmp = make_partial_dir(folder)
    try:
        for r in records():
            frames_dir = images_root / r.name
            if not frames_dir.is_dir():
                raise OutputError(f"yolo output: {r.name} has no saved frames in {frames_dir} (re-run with "
                                  f"--save yolo, which saves them)")
            for part in parts[r.name]:
                img_dir = tmp / "images" / part / r.name
                lab_dir = tmp / "labels" / part / r.name
                img_dir.mkdir(parents=True)
                lab_dir.mkdir(parents=True)
                for pos, frame in enumerate(r.frame_indices):
                    stem = frame_name(frame)
                    objs = _frame_objects(r, pos, cat_index)
                    masks = np.stack([decode_mask(c, r.height, r.width) for _, _, c, _, _, _ in objs]) if objs \
                        else np.zeros((0, r.height, r.width), bool)
                    (lab_dir / f"{stem}.txt").write_text(label_text(masks, [o[1] for o in objs]), encoding="utf-8")
                    _link_or_copy(frames_dir / f"{stem}.jpg", img_dir / f"{stem}.jpg")
        for part in ("train", "val"):
            (tmp / "images" / part).mkdir(parents=True, exist_ok=True)
            (tmp / "labels" / part).mkdir(parents=True, exist_ok=True)
        (tmp / "data.yaml").write_text(data_yaml(categories, "images/train", "images/val"), encoding="utf-8")
        replace_dir(tmp, folder)
    except OSError as err:
        remove_quietly(tmp)
        raise OutputError(f"cannot write {folder}: {err.strerror or err}") from err
    except BaseException:
        remove_quietly(tmp)
        raise


def write_exports(root: Path, images_root: Path, names: Sequence[str], records: Records,
                  kinds: Sequence[str]) -> None:
    """Build the requested exports of the finished videos into the dataset folder ``root``. ``records()``
    yields the records of ``names`` (sorted) afresh on each call, so only one video is in memory at a time."""
    if not kinds:
        return
    categories = category_order(records())
    paths = export_paths(root)
    if "coco" in kinds:
        write_coco(paths["coco"], records, categories)
    if "cvat" in kinds:
        write_cvat(paths["cvat"], records, categories)
    if "yolo" in kinds:
        write_yolo(paths["yolo"], images_root, names, records, categories)
