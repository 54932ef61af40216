"""Detector behaviour on a tiny random Grounding DINO: class mapping, thresholds, NMS, chunking, bad input.

Tests that need exact control over the model's answer replace its forward with synthetic logits and boxes,
so the post-processing is checked against hand-computed expectations.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from random_detector import save_random_detector

from gsam2_video.config import DetectorConfig
from gsam2_video.errors import ConfigError, ModelError, PromptError
from gsam2_video.models.detector import Detector, batched_nms, box_iou
from gsam2_video.prompts import Prompt, parse_prompt, sentence
from gsam2_video.types import Detections


@pytest.fixture(scope="module")
def tiny_dir(vocab_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_random_detector(tmp_path_factory.mktemp("gdino"), vocab_file=vocab_file, seed=0)


def _detector(path: Path, **cfg) -> Detector:
    base = {"box_threshold": 0.3, "text_threshold": 0.3, "shortest_edge": 96, "longest_edge": 128}
    base.update(cfg)
    return Detector.from_pretrained(str(path), DetectorConfig(**base), device="cpu")


@pytest.fixture(scope="module")
def frame(videos_dir: Path) -> np.ndarray:
    import cv2

    cap = cv2.VideoCapture(str(videos_dir / "bikes.mp4"))
    ok, bgr = cap.read()
    cap.release()
    assert ok
    return np.ascontiguousarray(bgr[:, :, ::-1])  # 272 x 640 RGB


def _fake_forward(det: Detector, logits: torch.Tensor, boxes: torch.Tensor) -> list[dict]:
    """Make the model answer ``logits`` (Q x T, padded to 256 with -inf) and cxcywh ``boxes`` (Q x 4)."""
    calls: list[dict] = []
    full = torch.full((1, logits.shape[0], 256), float("-inf"))
    full[0, :, : logits.shape[1]] = logits

    def forward(**inputs):
        calls.append(inputs)
        return SimpleNamespace(logits=full.clone(), pred_boxes=boxes[None].clone())

    det.model.forward = forward
    return calls


def _logit(p: float) -> float:
    return float(np.log(p / (1 - p)))


def test_detect_contract_on_a_real_frame(tiny_dir: Path, frame: np.ndarray) -> None:
    det = _detector(tiny_dir)
    assert not det.model.training and det.family == "grounding"
    prompt = parse_prompt("person. bicycle. car")
    out = det.detect(frame, prompt)
    assert isinstance(out, Detections) and 0 < len(out) <= 100
    h, w = frame.shape[:2]
    assert np.all(out.boxes[:, [0, 2]] >= 0) and np.all(out.boxes[:, [0, 2]] <= w)
    assert np.all(out.boxes[:, [1, 3]] >= 0) and np.all(out.boxes[:, [1, 3]] <= h)
    assert np.all(out.boxes[:, 2] > out.boxes[:, 0]) and np.all(out.boxes[:, 3] > out.boxes[:, 1])
    assert np.all(out.scores > 0.3) and np.all(np.diff(out.scores) <= 0)
    assert set(out.class_ids.tolist()) <= {0, 1, 2}
    assert out.labels == [prompt.classes[i] for i in out.class_ids]
    again = det.detect(frame, "Person. bicycle, car")  # a string prompt is parsed the same way
    np.testing.assert_array_equal(again.boxes, out.boxes)
    np.testing.assert_array_equal(again.class_ids, out.class_ids)
    capped = _detector(tiny_dir, max_detections=3).detect(frame, prompt)
    np.testing.assert_array_equal(capped.scores, out.scores[:3])


def test_class_ids_come_from_token_positions(tiny_dir: Path) -> None:
    det = _detector(tiny_dir, box_threshold=0.35, text_threshold=0.25)
    prompt = parse_prompt("car. race car. traffic light")
    # [CLS] car . race car . traffic light . [SEP]  -> positions: car 1; race car 3,4; traffic light 6,7
    text = det.processor.tokenizer.convert_ids_to_tokens(det.plan(prompt)[0].input_ids)
    assert text == ["[CLS]", "car", ".", "race", "car", ".", "traffic", "light", ".", "[SEP]"]
    q = 6
    logits = torch.full((q, 10), -9.0)
    logits[0, 4] = _logit(0.9)  # the "car" inside "race car" -> race car, not car
    logits[1, 1] = _logit(0.8)  # the standalone "car"
    logits[2, 7] = _logit(0.7)  # "light" of "traffic light"
    logits[2, 4] = _logit(0.6)  # weaker "race car" token in the same query: the best class wins
    logits[3, 8] = _logit(0.95)  # only the "." lights: score passes the box threshold, no class -> dropped
    logits[4, 3] = _logit(0.3)  # below the box threshold -> dropped
    logits[5, 9] = _logit(0.5)  # [SEP] 0.5 gives the score; class token 6 at 0.2 < text threshold -> dropped
    logits[5, 6] = _logit(0.2)
    boxes = torch.tensor([[0.5, 0.5, 0.2, 0.2]] * q)
    boxes[1] = torch.tensor([0.25, 0.25, 0.1, 0.1])
    boxes[2] = torch.tensor([0.75, 0.75, 0.1, 0.2])
    _fake_forward(det, logits, boxes)
    image = np.zeros((100, 200, 3), np.uint8)
    out = det.detect(image, prompt)
    assert out.labels == ["race car", "car", "traffic light"]
    np.testing.assert_array_equal(out.class_ids, [1, 0, 2])
    np.testing.assert_allclose(out.scores, [0.9, 0.8, 0.7], rtol=1e-6)
    np.testing.assert_allclose(out.boxes, [[80, 40, 120, 60], [40, 20, 60, 30], [140, 65, 160, 85]], atol=1e-4)


def test_boxes_clipped_and_zero_area_dropped(tiny_dir: Path) -> None:
    det = _detector(tiny_dir)
    logits = torch.full((4, 4), -9.0)
    logits[:, 1] = torch.tensor([_logit(0.9), _logit(0.8), _logit(0.7), _logit(0.6)])
    boxes = torch.tensor([
        [0.0, 0.0, 0.5, 0.5],  # hangs over the top-left corner -> clipped to [0, 0, 25, 12.5]
        [1.0, 0.5, 0.4, 2.0],  # over the right edge and both vertical edges -> [40, 0, 50, 50]
        [1.2, 0.5, 0.2, 0.2],  # entirely right of the frame -> zero width after clipping -> dropped
        [0.5, 0.5, 0.0, 0.3],  # zero width -> dropped
    ])
    _fake_forward(det, logits, boxes)
    out = det.detect(np.zeros((50, 100, 3), np.uint8), "person")
    assert out.labels == ["person", "person"]
    np.testing.assert_allclose(out.boxes, [[0, 0, 25, 12.5], [80, 0, 100, 50]], atol=1e-5)


def _reference_nms(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, thr: float) -> list[int]:
    def iou(a, b):
        iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
        ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
        inter = iw * ih
        union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
        return inter / union if union > 0 else 0.0

    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    keep: list[int] = []
    for i in order:
        if all(classes[j] != classes[i] or iou(boxes[i], boxes[j]) <= thr for j in keep):
            keep.append(i)
    return keep


def test_batched_nms_equals_brute_force() -> None:
    rng = np.random.default_rng(0)
    for trial in range(5):
        n = 60
        xy = rng.uniform(0, 80, (n, 2))
        wh = rng.uniform(5, 40, (n, 2))
        boxes = np.concatenate([xy, xy + wh], 1).astype(np.float32)
        scores = rng.uniform(0, 1, n).astype(np.float32)
        classes = rng.integers(0, 3, n)
        for thr in (0.3, 0.5, 0.7):
            got = batched_nms(torch.from_numpy(boxes), torch.from_numpy(scores), torch.from_numpy(classes), thr)
            assert got.tolist() == _reference_nms(boxes, scores, classes, thr)
    a = torch.tensor([[0.0, 0, 10, 10], [5, 5, 5, 9]])
    np.testing.assert_allclose(box_iou(a, a).numpy(), [[1, 0], [0, 0]])


def test_detector_nms_equals_brute_force_on_a_real_frame(tiny_dir: Path, frame: np.ndarray) -> None:
    prompt = parse_prompt("person. bicycle. car")
    plain = _detector(tiny_dir, box_threshold=0.2, text_threshold=0.2).detect(frame, prompt)
    nms = _detector(tiny_dir, box_threshold=0.2, text_threshold=0.2, nms_iou=0.05).detect(frame, prompt)
    keep = _reference_nms(plain.boxes, plain.scores, plain.class_ids, 0.05)
    assert len(keep) < len(plain)
    np.testing.assert_array_equal(nms.boxes, plain.boxes[keep])
    np.testing.assert_array_equal(nms.class_ids, plain.class_ids[keep])


def test_detector_nms_suppresses_within_a_class_only(tiny_dir: Path) -> None:
    det = _detector(tiny_dir, nms_iou=0.5)
    # [CLS] person . car . [SEP]: person at 1, car at 3
    logits = torch.full((4, 6), -9.0)
    logits[0, 1], logits[1, 1], logits[2, 3], logits[3, 1] = _logit(0.9), _logit(0.8), _logit(0.7), _logit(0.6)
    boxes = torch.tensor([
        [0.50, 0.50, 0.40, 0.40],  # person, best
        [0.52, 0.50, 0.40, 0.40],  # person, IoU 0.90 with the first -> suppressed
        [0.51, 0.50, 0.40, 0.40],  # car on the same spot -> kept (other class)
        [0.80, 0.50, 0.40, 0.40],  # person, IoU 0.14 with the first -> kept
    ])
    _fake_forward(det, logits, boxes)
    out = det.detect(np.zeros((100, 100, 3), np.uint8), "person. car")
    assert out.labels == ["person", "car", "person"]
    np.testing.assert_allclose(out.scores, [0.9, 0.7, 0.6], rtol=1e-6)


def test_long_vocabulary_runs_in_chunks_and_merges(tiny_dir: Path, frame: np.ndarray) -> None:
    det = _detector(tiny_dir, box_threshold=0.2, text_threshold=0.2, max_detections=1000)
    vocab = [w for w in det.processor.tokenizer.get_vocab() if w.isalpha() and w.isascii() and len(w) >= 4]
    prompt = parse_prompt([f"{a} {b}" for a, b in zip(vocab[0:220:2], vocab[1:220:2])])  # 110 classes
    assert len(prompt) == 110 and len(det.processor.tokenizer(prompt.text())["input_ids"]) == 332
    plan = det.plan(prompt)
    assert [len(c.class_indices) for c in plan] == [84, 26]
    assert all(len(c.input_ids) <= 256 for c in plan)
    merged = det.detect(frame, prompt)
    parts = []
    for chunk in plan:
        sub = det.detect(frame, Prompt(tuple(prompt.classes[k] for k in chunk.class_indices)))
        parts.append((sub, np.asarray(chunk.class_indices)[sub.class_ids]))
    boxes = np.concatenate([p.boxes for p, _ in parts])
    scores = np.concatenate([p.scores for p, _ in parts])
    ids = np.concatenate([g for _, g in parts])
    order = np.argsort(-scores, kind="stable")
    assert len(merged) == len(order) > 0
    np.testing.assert_array_equal(merged.scores, scores[order])
    np.testing.assert_array_equal(merged.boxes, boxes[order])
    np.testing.assert_array_equal(merged.class_ids, ids[order])
    assert merged.class_ids.min() < 84 <= merged.class_ids.max()  # both chunks contribute
    assert merged.labels == [prompt.classes[i] for i in merged.class_ids]


def test_input_resolution_follows_config(tiny_dir: Path) -> None:
    image = np.zeros((480, 640, 3), np.uint8)
    small = _detector(tiny_dir, shortest_edge=240, longest_edge=320).image_inputs(image)
    assert tuple(small["pixel_values"].shape) == (1, 3, 240, 320)
    full = _detector(tiny_dir, shortest_edge=800, longest_edge=1333).image_inputs(image)
    assert tuple(full["pixel_values"].shape) == (1, 3, 800, 1066)
    wide = _detector(tiny_dir, shortest_edge=800, longest_edge=1333).image_inputs(np.zeros((200, 1000, 3), np.uint8))
    assert tuple(wide["pixel_values"].shape) == (1, 3, 267, 1333)  # the longest edge caps it: 200*1333/1000


def test_bf16_autocast_on_cpu_runs(tiny_dir: Path, frame: np.ndarray) -> None:
    det = Detector.from_pretrained(str(tiny_dir), DetectorConfig(shortest_edge=96, longest_edge=128),
                                   device="cpu", dtype="bf16")
    assert det.autocast_dtype is torch.bfloat16
    assert next(det.model.parameters()).dtype is torch.float32  # weights stay fp32 under autocast
    out = det.detect(frame, "person. car")
    assert out.boxes.dtype == np.float32 and np.isfinite(out.boxes).all() and np.isfinite(out.scores).all()


def test_device_and_dtype_errors(tiny_dir: Path) -> None:
    with pytest.raises(ConfigError, match="fp16 needs a CUDA device"):
        Detector.from_pretrained(str(tiny_dir), device="cpu", dtype="fp16")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA is not available"):
            Detector.from_pretrained(str(tiny_dir), device="cuda")
    with pytest.raises(ConfigError, match="box threshold"):
        Detector.from_pretrained(str(tiny_dir), DetectorConfig(box_threshold=2.0))


@pytest.mark.parametrize("image, match", [
    (np.zeros((10, 10), np.uint8), r"H x W x 3 RGB, got shape \(10, 10\)"),
    (np.zeros((10, 10, 4), np.uint8), r"H x W x 3 RGB, got shape \(10, 10, 4\)"),
    (np.zeros((0, 10, 3), np.uint8), r"H x W x 3 RGB, got shape \(0, 10, 3\)"),
    (np.zeros((10, 10, 3), np.float32), "uint8 RGB, got dtype float32"),
    ([[0, 0, 0]], "numpy array, got list"),
])
def test_bad_image_is_a_model_error(tiny_dir: Path, image, match: str) -> None:
    with pytest.raises(ModelError, match=match):
        _detector(tiny_dir).detect(image, "person")


def test_input_too_small_for_the_queries_is_a_model_error(tiny_dir: Path) -> None:
    det = _detector(tiny_dir, shortest_edge=32, longest_edge=32)  # levels 4x4, 2x2, 1x1, 1x1: 22 tokens < 30
    with pytest.raises(ModelError, match=r"detector input 32x32 is too small for this model \(22 image tokens, "
                                         r"30 queries, coarsest level 1x1\)"):
        det.detect(np.zeros((64, 64, 3), np.uint8), "person")
    det = _detector(tiny_dir, shortest_edge=48, longest_edge=160)  # 48x144: 6x18 + 3x9 + 2x5 + 1x3 = 148 tokens
    assert isinstance(det.detect(np.zeros((100, 300, 3), np.uint8), "person"), Detections)


def test_bad_prompt_is_a_prompt_error(tiny_dir: Path) -> None:
    det = _detector(tiny_dir)
    with pytest.raises(PromptError, match="names no class"):
        det.detect(np.zeros((32, 32, 3), np.uint8), " . , ")


def test_unsupported_model_type_is_a_model_error() -> None:
    model = torch.nn.Linear(1, 1)
    model.config = SimpleNamespace(model_type="detr")
    with pytest.raises(ModelError, match="model type 'detr'"):
        Detector(model, None, DetectorConfig(model="facebook/detr-resnet-50"), torch.device("cpu"), None)


def test_prompt_plan_is_cached_per_prompt(tiny_dir: Path) -> None:
    det = _detector(tiny_dir)
    a = det.plan(parse_prompt("person. car"))
    assert det.plan(parse_prompt("person, car")) is a
    b = det.plan(parse_prompt("dog"))
    assert b is not a and b[0].text == sentence(["dog"])[0]
