"""``gsam2-video eval``: J / F against TrackEval's DAVIS-derived J&F code and hand-computed values, HOTA / IDF1 /
MOTA against TrackEval's own evaluation of the same files, self-scores of 1, and one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_sinks_data import CATEGORIES, scripted_results, video_info

from gsam2_video.cli import main
from gsam2_video.evaluation import evaluate_masks, evaluate_tracks, f_measure, jaccard
from gsam2_video.evaluation.davis import boundary_map, statistics
from gsam2_video.sinks import AsyncWriter, make_sinks
from gsam2_video.sinks.davis import davis_palette
from gsam2_video.types import FrameResult

trackeval = pytest.importorskip("trackeval")
pytest.importorskip("skimage")  # TrackEval's F uses scikit-image's disk
from pycocotools import mask as mask_utils
from trackeval.metrics.j_and_f import JAndF


def square(h: int, w: int, y0: int, x0: int, size: int) -> np.ndarray:
    m = np.zeros((h, w), bool)
    m[y0:y0 + size, x0:x0 + size] = True
    return m


# -- hand-made cases ---------------------------------------------------------------------------------------
def test_j_and_f_on_hand_computed_cases():
    gt = square(100, 100, 20, 20, 20)
    assert jaccard(gt, gt) == 1.0 and f_measure(gt, gt) == 1.0
    empty = np.zeros_like(gt)
    assert jaccard(empty, empty) == 1.0 and f_measure(empty, empty) == 1.0  # both absent: perfect
    assert jaccard(gt, empty) == 0.0 and f_measure(gt, empty) == 0.0
    assert jaccard(empty, gt) == 0.0 and f_measure(empty, gt) == 0.0
    # boundary of a 20 x 20 square: the 21 x 21 ring from its top-left outside corner, 80 pixels
    ring = boundary_map(gt)
    assert ring.sum() == 80 and ring[19, 19:40].all() and ring[19:40, 19].all() and ring[39, 19:40].all()
    # 1 pixel to the right: IoU 380 / 420; every boundary pixel within the tolerance ceil(0.008 * 141.4) = 2
    shifted = square(100, 100, 20, 21, 20)
    assert jaccard(gt, shifted) == pytest.approx(380 / 420, abs=1e-12)
    assert f_measure(gt, shifted) == 1.0
    # 10 pixels to the right: IoU 200 / 600; 30 of each ring's 80 pixels lie within 2 pixels of the other
    # (13 on each horizontal side, 2 + 2 on the near vertical side), so P = R = F = 30 / 80
    far = square(100, 100, 20, 30, 20)
    assert jaccard(gt, far) == pytest.approx(1 / 3, abs=1e-12)
    assert f_measure(gt, far) == pytest.approx(30 / 80, abs=1e-12)
    # void pixels are left out of both
    void = np.zeros_like(gt)
    void[:, 30:] = True
    assert jaccard(gt, far, void) == 0.0
    assert jaccard(gt, shifted, void) == pytest.approx(180 / 200, abs=1e-12)  # columns 20..29 kept


def test_statistics_are_davis_mean_recall_decay():
    values = np.array([1.0, 1.0, 0.9, 0.8, 0.6, 0.4, 0.3, 0.2])
    mean, recall, decay = statistics(values)
    assert mean == pytest.approx(values.mean()) and recall == pytest.approx(5 / 8)
    # 4 bins of 8 frames: linspace(1, 8, 5) = [1, 2.75, 4.5, 6.25, 8], rounded (4.5 + 1e-10 up) minus 1 =
    # [0, 2, 4, 5, 7]; bins include their right edge: first = frames 0..2, last = frames 5..7
    assert decay == pytest.approx(values[0:3].mean() - values[5:8].mean())


# -- against TrackEval's J&F on real masks ---------------------------------------------------------------------
def clip_masks(videos_dir: Path, frames: int = 30) -> list[np.ndarray]:
    """Label maps from a real clip: bright pixels of the left / right half as objects 1 / 2."""
    from test_sinks_real_clip import CLIP, results_from_clip

    path = videos_dir / CLIP
    if not path.exists():
        pytest.skip(f"{path} not found")
    maps = []
    for _, r in results_from_clip(path):
        maps.append(r.label_map(np.int64))
        if len(maps) == frames:
            break
    return maps


def perturbed(maps: list[np.ndarray], seed: int = 0) -> list[np.ndarray]:
    """A tracker-like prediction: ids 7 / 9 instead of 1 / 2, masks shifted and eroded, one object lost."""
    import cv2

    rng = np.random.default_rng(seed)
    out = []
    for t, m in enumerate(maps):
        p = np.zeros_like(m)
        for src, dst in ((1, 7), (2, 9)):
            obj = np.roll(m == src, shift=(int(rng.integers(-3, 4)), int(rng.integers(-3, 4))), axis=(0, 1))
            if t % 3 == 0:
                obj = cv2.erode(obj.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
            if dst == 9 and t > 20:
                continue  # the prediction loses object 2
            p[obj & (p == 0)] = dst
        out.append(p)
    return out


def rle(mask: np.ndarray) -> dict:
    return mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))


def save_pngs(folder: Path, maps: list[np.ndarray]) -> Path:
    folder.mkdir(parents=True)
    for t, m in enumerate(maps):
        img = Image.fromarray(m.astype(np.uint8))
        img.putpalette(davis_palette())
        img.save(folder / f"{t:05d}.png")
    return folder


def test_per_frame_j_and_f_equal_trackeval_on_real_masks(videos_dir):
    gt_maps = clip_masks(videos_dir)
    pred_maps = perturbed(gt_maps)
    checked = 0
    for g_map, p_map in zip(gt_maps, pred_maps):
        for gid, pid in ((1, 7), (2, 9)):
            g, p = g_map == gid, p_map == pid
            ref_j = JAndF._compute_j([[rle(g)]], [[rle(p)]], 1, 1, 1)[0, 0, 0]
            ref_f = JAndF._compute_f([[rle(g)]], [[rle(p)]], 0, 0, 0.008)[0]
            assert jaccard(g, p) == pytest.approx(ref_j, abs=1e-6)
            assert f_measure(g, p) == pytest.approx(ref_f, abs=1e-6)
            checked += 1
    assert checked == 60


def trackeval_j_and_f(gt_maps: list[np.ndarray], pred_maps: list[np.ndarray]) -> dict:
    """TrackEval's JAndF.eval_sequence on the same label maps (ids relabelled 0..n-1 as its datasets do)."""
    gt_ids = sorted({int(i) for m in gt_maps for i in np.unique(m) if i})
    pr_ids = sorted({int(i) for m in pred_maps for i in np.unique(m) if i})
    data = {"num_timesteps": len(gt_maps), "num_gt_ids": len(gt_ids), "num_tracker_ids": len(pr_ids),
            "gt_ids": [], "tracker_ids": [], "gt_dets": [], "tracker_dets": []}
    for g, p in zip(gt_maps, pred_maps):
        gi = [k for k, i in enumerate(gt_ids) if (g == i).any()]
        pi = [k for k, i in enumerate(pr_ids) if (p == i).any()]
        data["gt_ids"].append(np.array(gi, int))
        data["tracker_ids"].append(np.array(pi, int))
        data["gt_dets"].append([rle(g == gt_ids[k]) for k in gi])
        data["tracker_dets"].append([rle(p == pr_ids[k]) for k in pi])
    return JAndF().eval_sequence(data)


def test_sequence_scores_equal_trackeval_j_and_f_with_hungarian_matching(videos_dir, tmp_path):
    gt_maps = clip_masks(videos_dir)
    pred_maps = perturbed(gt_maps)
    save_pngs(tmp_path / "gt", gt_maps)
    save_pngs(tmp_path / "pred", pred_maps)
    report = evaluate_masks(tmp_path / "pred", tmp_path / "gt")
    assert report.matching == {"gt": "hungarian"}
    assert [(o.gt_id, o.pred_id) for o in report.objects] == [(1, 7), (2, 9)]
    ref = trackeval_j_and_f(gt_maps, pred_maps)
    means = report.means()
    for ours, theirs in (("J", "J-Mean"), ("F", "F-Mean"), ("J&F", "J&F"), ("J_recall", "J-Recall"),
                         ("F_recall", "F-Recall"), ("J_decay", "J-Decay"), ("F_decay", "F-Decay")):
        assert means[ours] == pytest.approx(ref[theirs], abs=1e-6), ours
    assert 0.3 < means["J&F"] < 0.95  # a real, imperfect prediction


def test_missing_prediction_objects_score_zero_like_trackeval(tmp_path):
    gt = [np.where(square(60, 80, 10, 10, 20), 1, 0) + np.where(square(60, 80, 30, 50, 15), 2, 0)
          for _ in range(4)]
    pred = [np.where(square(60, 80, 11, 10, 20), 5, 0) for _ in range(4)]  # only one object, own id
    save_pngs(tmp_path / "gt", gt)
    save_pngs(tmp_path / "pred", pred)
    report = evaluate_masks(tmp_path / "pred", tmp_path / "gt")
    assert [(o.gt_id, o.pred_id) for o in report.objects] == [(1, 5), (2, None)]
    assert report.objects[1].j.tolist() == [0.0] * 4 and report.objects[1].f.tolist() == [0.0] * 4
    ref = trackeval_j_and_f(gt, pred)
    assert report.means()["J&F"] == pytest.approx(ref["J&F"], abs=1e-6)


# -- self-scores through the CLI -----------------------------------------------------------------------------
def write_run(out: Path, results: list[FrameResult], categories=CATEGORIES) -> Path:
    with AsyncWriter(make_sinks(["masks", "mots", "mot"], out)) as writer:
        writer.open(video_info(), categories)
        for r in results:
            writer.write(r)
    return out


def test_a_run_scored_against_itself_is_perfect(tmp_path, capsys):
    run = write_run(tmp_path / "run", scripted_results())
    assert main(["eval", str(run / "masks"), str(run / "masks")]) == 0
    doc = json.loads((run / "eval.json").read_text())
    assert doc["kind"] == "masks" and doc["means"]["J&F"] == 1.0 and doc["means"]["J"] == 1.0
    assert [o["gt_id"] for o in doc["objects"]] == [1, 2, 3, 4, 300] and doc["matching"] == {"masks": "id"}
    table = capsys.readouterr().out
    assert table.splitlines()[-1].split()[-3:] == ["1.0000", "1.0000", "1.0000"]
    for name in ("mots.txt", "mot.txt"):
        out = tmp_path / f"{name}.json"
        assert main(["eval", str(run / name), str(run / name), "--json", str(out)]) == 0
        doc = json.loads(out.read_text())
        assert (doc["HOTA"], doc["IDF1"], doc["MOTA"], doc["IDSW"]) == (1.0, 1.0, 1.0, 0)
        assert doc["GT_tracks"] == 5 and doc["GT_dets"] == 12


def test_bad_inputs_are_one_line(tmp_path, capsys):
    run = write_run(tmp_path / "run", scripted_results())
    other = tmp_path / "other"
    other.mkdir()
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(other / "00000.png")
    cases = [
        (["eval", str(run / "masks"), str(run / "mots.txt")], "PRED is a folder but GT is a file"),
        (["eval", str(run / "mots.txt"), str(run / "mot.txt")], "is MOTS but GT"),
        (["eval", str(tmp_path / "nope"), str(run / "masks")], "no such file or folder"),
        (["eval", str(other), str(run / "masks")], "lacks 5 of the 6 ground-truth frames"),
    ]
    for argv, message in cases:
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0] and err[0].startswith("gsam2-video: error: ")
    shutil_size = tmp_path / "size"
    shutil_size.mkdir()
    for k in range(6):
        Image.fromarray(np.zeros((10, 10), np.uint8)).save(shutil_size / f"{k:05d}.png")
    assert main(["eval", str(shutil_size), str(run / "masks")]) == 2
    assert "PRED is 10x10, GT is 50x37" in capsys.readouterr().err
    (tmp_path / "bad.txt").write_text("1 2 3 nonsense\n")
    assert main(["eval", str(tmp_path / "bad.txt"), str(run / "mots.txt")]) == 2
    assert "line 1: not a MOTS line" in capsys.readouterr().err


# -- tracks: equal to TrackEval's own evaluation of the same files --------------------------------------------
def moved(results: list[FrameResult]) -> list[FrameResult]:
    """A prediction with errors: masks shifted, an id switch after frame 2, a missed object on frame 3."""
    out = []
    for r in results:
        keep = [k for k in range(len(r)) if not (r.frame_index == 3 and r.track_ids[k] == 2)]
        ids = [int(r.track_ids[k]) for k in keep]
        ids = [{1: 11, 3: 13}.get(i, i) if r.frame_index < 3 else {1: 11, 3: 31}.get(i, i) for i in ids]
        masks = np.roll(r.masks[keep], 1, axis=2)
        out.append(FrameResult(r.frame_index, r.timestamp, r.height, r.width, np.array(ids, np.int64), masks,
                               r.boxes[keep] + np.array([1, 0, 1, 0], np.float32), r.scores[keep],
                               r.class_ids[keep], [r.class_names[k] for k in keep]))
    return out


def one_class(results: list[FrameResult]) -> list[FrameResult]:
    """Every object as class 1 ("pedestrian" at position 1 of the categories), what TrackEval scores."""
    for r in results:
        r.class_ids = np.ones(len(r), np.int64)
        r.class_names = ["pedestrian"] * len(r)
    return results


def trackeval_run(tmp_path: Path, gt_file: Path, pred_file: Path, kind: str, length: int) -> dict:
    seq = "seq01"
    gt_root, trk_root = tmp_path / "te_gt", tmp_path / "te_trk"
    (gt_root / seq / "gt").mkdir(parents=True)
    (trk_root / "ours" / "data").mkdir(parents=True)
    text = gt_file.read_text()
    if kind == "mot":  # MOTChallenge ground truth: consider flag 1, class 1 (pedestrian), visibility 1
        text = "".join(",".join(line.split(",")[:6] + ["1", "1", "1"]) + "\n" for line in text.splitlines())
    (gt_root / seq / "gt" / "gt.txt").write_text(text)
    (trk_root / "ours" / "data" / f"{seq}.txt").write_text(pred_file.read_text())
    dataset_cls = trackeval.datasets.MOTSChallenge if kind == "mots" else trackeval.datasets.MotChallenge2DBox
    config = {"GT_FOLDER": str(gt_root), "TRACKERS_FOLDER": str(trk_root), "SKIP_SPLIT_FOL": True,
              "SEQ_INFO": {seq: length}, "TRACKERS_TO_EVAL": ["ours"], "PRINT_CONFIG": False,
              "OUTPUT_FOLDER": str(tmp_path / "te_out")}
    evaluator = trackeval.Evaluator({"USE_PARALLEL": False, "PRINT_RESULTS": False, "PRINT_CONFIG": False,
                                     "TIME_PROGRESS": False, "OUTPUT_SUMMARY": False, "OUTPUT_DETAILED": False,
                                     "PLOT_CURVES": False, "LOG_ON_ERROR": None, "DISPLAY_LESS_PROGRESS": True})
    metrics = [trackeval.metrics.HOTA({"PRINT_CONFIG": False}), trackeval.metrics.CLEAR({"PRINT_CONFIG": False}),
               trackeval.metrics.Identity({"PRINT_CONFIG": False})]
    res, _ = evaluator.evaluate([dataset_cls(config)], metrics)
    return next(iter(res.values()))["ours"][seq]["pedestrian"]


@pytest.mark.parametrize("kind", ["mots", "mot"])
def test_hota_idf1_mota_equal_trackevals_own_evaluation(tmp_path, kind):
    categories = ["car", "pedestrian", "dog"]
    gt_run = write_run(tmp_path / "gt", one_class(scripted_results()), categories)
    pred_run = write_run(tmp_path / "pred", one_class(moved(scripted_results())), categories)
    name = f"{kind}.txt"
    ours = evaluate_tracks(pred_run / name, gt_run / name)
    ref = trackeval_run(tmp_path, gt_run / name, pred_run / name, kind, len(scripted_results()))
    assert ours["HOTA"] == pytest.approx(float(np.mean(ref["HOTA"]["HOTA"])), abs=1e-9)
    assert ours["DetA"] == pytest.approx(float(np.mean(ref["HOTA"]["DetA"])), abs=1e-9)
    assert ours["AssA"] == pytest.approx(float(np.mean(ref["HOTA"]["AssA"])), abs=1e-9)
    assert ours["IDF1"] == pytest.approx(ref["Identity"]["IDF1"], abs=1e-9)
    assert ours["MOTA"] == pytest.approx(ref["CLEAR"]["MOTA"], abs=1e-9)
    assert ours["IDSW"] == ref["CLEAR"]["IDSW"]
    assert 0.2 < ours["HOTA"] < 0.95 and ours["IDSW"] >= 1


def test_mots_ground_truth_of_another_size_is_one_line(tmp_path, capsys):
    run = write_run(tmp_path / "run", scripted_results())
    big = write_run(tmp_path / "big", scripted_results(scale=2))
    assert main(["eval", str(big / "mots.txt"), str(run / "mots.txt")]) == 2
    assert "different image sizes" in capsys.readouterr().err


def test_sequence_folders_pair_by_name(tmp_path):
    maps = [np.where(square(40, 40, 5, 5, 10), 1, 0) for _ in range(3)]
    for side in ("gt", "pred"):
        save_pngs(tmp_path / side / "b", maps)
        save_pngs(tmp_path / side / "a", [np.where(m > 0, 2, 0) for m in maps])
    save_pngs(tmp_path / "pred" / "extra", maps)
    report = evaluate_masks(tmp_path / "pred", tmp_path / "gt")
    assert [(o.sequence, o.gt_id) for o in report.objects] == [("a", 2), ("b", 1)]
    assert report.means()["J&F"] == 1.0


def test_f_on_the_crop_holding_both_masks_equals_f_on_the_frame():
    from scipy.ndimage import find_objects

    from gsam2_video.evaluation.davis import crop_box

    rng = np.random.default_rng(1)
    for _ in range(40):
        h, w = (int(v) for v in rng.integers(30, 90, 2))
        labels = np.zeros((h, w), np.int64)
        for k, (y, x) in enumerate(rng.integers(0, [h, w], (2, 2)), 1):  # near or on the edges too
            labels[max(0, y - 8):y + int(rng.integers(1, 12)), max(0, x - 6):x + int(rng.integers(1, 12))] = k
        g, p = labels == 1, labels == 2
        crop = crop_box([find_objects(g.astype(int))[0] if g.any() else None,
                         find_objects(p.astype(int))[0] if p.any() else None], (h, w))
        assert f_measure(g[crop], p[crop], image_shape=(h, w)) == f_measure(g, p)
