"""coco.json read by Datumaro, opt-in: ``GSAM2_DATUMARO_PYTHON=/path/to/python`` names an interpreter that has
``datumaro`` (it cannot live in the project's environment: datumaro 1.13 pins pandas 2.3, pillow 12 and
opencv < 5). Datumaro's other importers cannot read these exports at all: its YOLO importer takes only boxes
(5 fields per line), and its CVAT importer reads masks only inside ``<image>`` (CVAT for images), not in
tracks; those two are read back by supervision and cvat_sdk in test_exports.py."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_exports import hard_shapes_results
from test_sinks_data import CATEGORIES, scripted_results, video_info

from gsam2_video.sinks import AsyncWriter, make_sinks
from gsam2_video.types import VideoInfo

PYTHON = os.environ.get("GSAM2_DATUMARO_PYTHON")

CHECK = '''
import shutil, sys
from pathlib import Path
import numpy as np
from PIL import Image
import datumaro as dm
from datumaro.components.annotation import AnnotationType

root = Path(sys.argv[1])
pngs = {int(p.stem): np.array(Image.open(p)).astype(np.int64) for p in sorted((root / "masks").glob("*.png"))}
layout = root / "coco_layout"  # Datumaro finds COCO by its folder layout
(layout / "annotations").mkdir(parents=True)
(layout / "images" / "default").mkdir(parents=True)
shutil.copy(root / "coco.json", layout / "annotations" / "instances_default.json")
ds = dm.Dataset.import_from(str(layout), "coco_instances")
assert [c.name for c in ds.categories()[AnnotationType.label]] == sys.argv[2].split(",")
seen = 0
for item in ds:
    truth = pngs[int(Path(item.id).name.split(".")[0])]
    masks = [a.image.astype(bool) for a in item.annotations if a.type == AnnotationType.mask]
    assert len(masks) == len([i for i in np.unique(truth) if i])
    for m in masks:  # each Datumaro mask is exactly the pixels of one object id
        ids = np.unique(truth[m])
        assert len(ids) == 1 and ids[0] != 0 and np.array_equal(truth == ids[0], m)
    seen += 1
assert seen == len(pngs)
print("ok", seen)
'''


@pytest.mark.skipif(not PYTHON, reason="GSAM2_DATUMARO_PYTHON (an interpreter with datumaro) not set")
@pytest.mark.parametrize("case", ["scripted", "shapes"])
def test_datumaro_reads_coco_json(tmp_path: Path, case: str) -> None:
    if case == "scripted":
        results, info = scripted_results(), video_info()
    else:
        results, info = hard_shapes_results(), VideoInfo("shapes", "memory://shapes", 60, 40, 25.0, 2)
    with AsyncWriter(make_sinks(["masks", "coco"], tmp_path)) as writer:
        writer.open(info, CATEGORIES)
        for r in results:
            writer.write(r)
    (tmp_path / "check.py").write_text(CHECK)
    proc = subprocess.run([PYTHON or sys.executable, str(tmp_path / "check.py"), str(tmp_path), ",".join(CATEGORIES)],
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split() == ["ok", str(len(results))]
