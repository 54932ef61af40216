"""Annotate an RGB frame with a FrameResult: coloured masks, outlines, boxes and "id label score" text.

Shared by the video sink and a live display window so both show the same picture. Colours depend only on
the track id (never on the frame or on how many tracks are live), so an object keeps its colour for the
whole video: hues step by the golden ratio, which puts consecutive ids far apart on the colour wheel, with
saturation and brightness alternating to separate ids whose hues come round close again.

Why it is built from the label map (H x W, track id per pixel) and the tracks' tight boxes, not from
per-track full-frame masks: every step then touches only the pixels inside the boxes, so the cost follows
the objects' area instead of (number of objects x frame size). Per track, inside its box: the pixels equal to
its id are blended with its colour (one ``cv2.transform`` computes ``(1 - alpha) * pixel + alpha * colour``,
``cv2.copyTo`` keeps it where the id matches); then, lowest score first so the best track ends on top,
its outline = its pixels with a 4-neighbour of another id (the frame border counting as background),
widened to the line thickness by a square max filter. Boxes and captions touch a few small rectangles.
All of these are OpenCV calls that release the GIL. :mod:`gsam2_video.drawing_torch` draws the same picture
with whole-frame tensor ops (colour lookup table by id, rank map for the outlines), so on a GPU the overlay is
built on the device before the frame's single copy to the host.
"""

from __future__ import annotations

import colorsys
from collections.abc import Sequence

import cv2
import numpy as np

from .labelmap import resolved_label_map, track_boxes
from .types import FrameResult

_GOLDEN = 0.618033988749895
_FONT = cv2.FONT_HERSHEY_SIMPLEX
_CROSS = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))


def track_color(track_id: int) -> tuple[int, int, int]:
    """RGB colour of a track id; the same id always gets the same colour, 0 (background) is black."""
    if track_id <= 0:
        return (0, 0, 0)
    hue = (track_id * _GOLDEN) % 1.0
    sat = 0.85 if track_id % 2 else 0.6
    val = 1.0 if (track_id // 2) % 2 == 0 else 0.8
    r, g, b = colorsys.hsv_to_rgb(hue, sat, val)
    return (round(r * 255), round(g * 255), round(b * 255))


def label_text(track_id: int, class_name: str, score: float) -> str:
    """The caption drawn next to a track, e.g. ``"3 person 0.87"``."""
    return f"{track_id} {class_name} {score:.2f}".replace("  ", " ")


def line_thickness(height: int, width: int) -> int:
    """Outline, box and text stroke width in pixels: 1 px per 360 px of the shorter side (3 px at 1080p)."""
    return max(1, round(min(height, width) / 360))


def font_scale(height: int, width: int) -> float:
    """OpenCV font scale for captions, proportional to the shorter side."""
    return max(0.35, min(height, width) / 900)


def outline_kernel_size(thickness: int) -> int:
    """Side of the square max filter that widens the 1-px label edges to ``thickness`` (odd, centred)."""
    return 2 * (max(1, thickness) // 2) + 1


def drawing_order(scores: Sequence[float] | np.ndarray) -> list[int]:
    """Indices of the tracks in the order their outlines, boxes and captions are drawn: lowest score first,
    so the best track ends on top (stable: equal scores keep the given order)."""
    return np.argsort(np.asarray(scores, dtype=np.float64), kind="stable").tolist()


def overlay(image: np.ndarray, labels: np.ndarray, track_ids: np.ndarray, scores: np.ndarray, *,
            alpha: float = 0.5, thickness: int = 1, outlines: bool = True,
            boxes_xywh: np.ndarray | None = None) -> np.ndarray:
    """A new image: ``image`` with every labelled pixel blended with its track colour (opacity ``alpha``) and,
    with ``outlines``, each region's edges drawn opaque ``thickness`` px wide. No boxes or text.

    ``labels`` is the H x W label map (track id per pixel, 0 background). ``boxes_xywh`` are the tracks'
    tight boxes in it (:func:`gsam2_video.labelmap.track_boxes`; computed when not given): all work happens
    inside them, blends first, then outlines lowest score first so the best track's outline is on top.
    """
    out = np.array(image, dtype=np.uint8, copy=True, order="C")
    ids = np.asarray(track_ids, np.int64).reshape(-1)
    if len(ids) == 0:
        return out
    lab = np.ascontiguousarray(labels)
    if lab.dtype not in (np.uint8, np.uint16, np.int32):
        lab = lab.astype(np.int32)
    if boxes_xywh is None:
        boxes_xywh, _ = track_boxes(lab, ids)
    boxes = np.asarray(boxes_xywh, np.int64).reshape(-1, 4).tolist()
    k = outline_kernel_size(thickness) if outlines else 1
    pad = k // 2 + 1 if outlines else 0
    height, width = lab.shape
    keep = 1.0 - alpha
    windows: list[tuple[int, int, int, int, np.ndarray, tuple[int, int, int]] | None] = []
    for tid, (x, y, w, h) in zip(ids.tolist(), boxes):
        if w <= 0 or h <= 0:
            windows.append(None)
            continue
        # the track's pixels in its box plus the margin its outline needs, found once for both passes
        y0, y1, x0, x1 = max(0, y - pad), min(height, y + h + pad), max(0, x - pad), min(width, x + w + pad)
        mine = (lab[y0:y1, x0:x1] == tid).view(np.uint8)
        r, g, b = track_color(tid)
        windows.append((y0, y1, x0, x1, mine, (r, g, b)))
        region = out[y:y + h, x:x + w]
        mix = np.array([[keep, 0, 0, alpha * r], [0, keep, 0, alpha * g], [0, 0, keep, alpha * b]], np.float32)
        cv2.copyTo(cv2.transform(region, mix), mine[y - y0:y - y0 + h, x - x0:x - x0 + w], region)
    if not outlines:
        return out
    widen = np.ones((k, k), np.uint8) if k > 1 else None
    for i in drawing_order(scores):
        window = windows[i]
        if window is None:
            continue
        y0, y1, x0, x1, mine, (r, g, b) = window
        edge = cv2.subtract(mine, cv2.erode(mine, _CROSS, borderType=cv2.BORDER_CONSTANT, borderValue=0))
        if widen is not None:
            edge = cv2.dilate(edge, widen)
        sub = out[y0:y1, x0:x1]
        solid = np.array([[0, 0, 0, r], [0, 0, 0, g], [0, 0, 0, b]], np.float32)
        cv2.copyTo(cv2.transform(sub, solid), edge, sub)  # a constant through transform: the fastest fill
    return out


def draw_boxes_and_captions(out: np.ndarray, result: FrameResult, boxes_xywh: np.ndarray, *, boxes: bool = True,
                            captions: bool = True) -> None:
    """Draw each track's box and caption on ``out`` in place, lowest score first (the best on top).

    A track is drawn when it has a box or at least one pixel; without a box its caption goes to the top-left
    corner of its pixels. ``boxes_xywh`` are the tight boxes of the tracks' pixels (zero width: none).
    """
    n = len(result)
    if n == 0 or not (boxes or captions):
        return
    thick = line_thickness(result.height, result.width)
    scale = font_scale(result.height, result.width)
    order = drawing_order(result.scores)
    xyxy = np.rint(np.asarray(result.boxes, np.float64)).astype(np.int64)
    xyxy[:, 0::2] = np.clip(xyxy[:, 0::2], 0, result.width - 1)
    xyxy[:, 1::2] = np.clip(xyxy[:, 1::2], 0, result.height - 1)
    for k in order:
        tid = int(result.track_ids[k])
        color = track_color(tid)
        x1, y1, x2, y2 = (int(v) for v in xyxy[k])
        has_box = x2 > x1 and y2 > y1
        if not has_box:
            px, py, pw, _ = (int(v) for v in boxes_xywh[k])
            if pw <= 0:
                continue
            y1, x1 = py, px
        if boxes and has_box:
            cv2.rectangle(out, (x1, y1), (x2, y2), color, thick)
        if captions:
            _caption(out, label_text(tid, result.class_names[k], float(result.scores[k])), x1, y1, color, scale,
                     thick)


#: mask opacity of the default look (the one the pipeline's device overlay is built with)
DEFAULT_ALPHA = 0.5


def annotate(image: np.ndarray | None, result: FrameResult, *, alpha: float = DEFAULT_ALPHA,
             outlines: bool = True, boxes: bool = True, labels: bool = True, label_map: np.ndarray | None = None,
             boxes_xywh: np.ndarray | None = None) -> np.ndarray:
    """A new H x W x 3 uint8 RGB image: ``image`` with ``result`` drawn on it (``image`` is not modified).

    Masks are blended with their track colour at opacity ``alpha``; outlines, boxes and captions are drawn
    in the same colour, line width and text size scaled to the frame size. ``label_map`` (the result's
    H x W label map) and ``boxes_xywh`` (its tracks' tight boxes, in the result's track order) save recomputing
    them when the caller already has them (the video sink's shared view).

    When the pipeline built the masks' overlay on the GPU (``result.overlay``) and the default look is asked
    for, only boxes and captions are drawn here, on a copy of it; ``image`` may then be None.
    """
    if result.overlay is not None and alpha == DEFAULT_ALPHA and outlines:
        out = np.array(result.overlay, dtype=np.uint8, copy=True, order="C")
        if boxes_xywh is None:
            lab = label_map if label_map is not None else resolved_label_map(result)
            boxes_xywh, _ = track_boxes(lab, result.track_ids, result.boxes)
        draw_boxes_and_captions(out, result, boxes_xywh, boxes=boxes, captions=labels)
        return out
    if image is None:
        raise ValueError(f"annotate(): frame {result.frame_index} carries neither an image nor an overlay")
    img = np.asarray(image)
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise ValueError(f"annotate() needs an H x W x 3 uint8 RGB image, got {img.shape} {img.dtype}")
    if img.shape[:2] != (result.height, result.width):
        raise ValueError(f"annotate(): image is {img.shape[1]}x{img.shape[0]} but frame {result.frame_index} "
                         f"is {result.width}x{result.height}")
    if len(result) == 0:
        return np.array(img, copy=True, order="C")
    if label_map is None:
        label_map = resolved_label_map(result)  # the pipeline's own map; masks painted by score otherwise
    if boxes_xywh is None:
        boxes_xywh, _ = track_boxes(label_map, result.track_ids, result.boxes)
    out = overlay(img, label_map, result.track_ids, result.scores, alpha=alpha,
                  thickness=line_thickness(result.height, result.width), outlines=outlines, boxes_xywh=boxes_xywh)
    draw_boxes_and_captions(out, result, boxes_xywh, boxes=boxes, captions=labels)
    return out


def _caption(img: np.ndarray, text: str, x: int, y: int, color: tuple[int, ...], scale: float,
             thick: int) -> None:
    """Text on a filled box in the track colour, above (x, y) or just inside when there is no room."""
    (tw, th), base = cv2.getTextSize(text, _FONT, scale, thick)
    pad = max(1, thick)
    top = y - th - base - 2 * pad
    if top < 0:
        top = y
    x = max(0, min(x, img.shape[1] - tw - 2 * pad))
    cv2.rectangle(img, (x, top), (x + tw + 2 * pad, top + th + base + 2 * pad), color, -1)
    luminance = 0.299 * color[0] + 0.587 * color[1] + 0.114 * color[2]
    ink = (0, 0, 0) if luminance > 140 else (255, 255, 255)
    cv2.putText(img, text, (x + pad, top + pad + th), _FONT, scale, ink, thick, cv2.LINE_AA)
