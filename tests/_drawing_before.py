"""The annotate() of release 0.x before the label-map rewrite, kept verbatim as the oracle the new drawing is
compared with (tests/test_drawing.py) and the "before" of benchmarks/writers.py. Not used by the package.
"""

from __future__ import annotations

import colorsys

import cv2
import numpy as np

from gsam2_video.types import FrameResult

_GOLDEN = 0.618033988749895
_FONT = cv2.FONT_HERSHEY_SIMPLEX


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


def annotate(image: np.ndarray, result: FrameResult, *, alpha: float = 0.5, outlines: bool = True,
             boxes: bool = True, labels: bool = True) -> np.ndarray:
    """A new H x W x 3 uint8 RGB image: ``image`` with ``result`` drawn on it (``image`` is not modified).

    Masks are blended with their track colour at opacity ``alpha``; outlines, boxes and captions are drawn
    in the same colour, line width and text size scaled to the frame size.
    """
    img = np.asarray(image)
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise ValueError(f"annotate() needs an H x W x 3 uint8 RGB image, got {img.shape} {img.dtype}")
    if img.shape[:2] != (result.height, result.width):
        raise ValueError(f"annotate(): image is {img.shape[1]}x{img.shape[0]} but frame {result.frame_index} "
                         f"is {result.width}x{result.height}")
    out = np.ascontiguousarray(img.copy())
    n = len(result)
    if n == 0:
        return out
    colors = np.array([track_color(int(t)) for t in result.track_ids], dtype=np.float32)
    extents = [_extent(m) for m in result.masks]  # work inside each mask's box, not the whole frame
    # paint lowest score first so where masks overlap the most confident track is on top
    order = np.argsort(result.scores, kind="stable")
    owner = np.zeros((result.height, result.width), dtype=np.int32)
    for k in order:
        if extents[k] is not None:
            y0, y1, x0, x1 = extents[k]
            owner[y0:y1, x0:x1][result.masks[k, y0:y1, x0:x1]] = k + 1
    present = [e for e in extents if e is not None]
    if present:
        y0, y1 = min(e[0] for e in present), max(e[1] for e in present)
        x0, x1 = min(e[2] for e in present), max(e[3] for e in present)
        region, own = out[y0:y1, x0:x1], owner[y0:y1, x0:x1]
        fg = own > 0
        lut = np.concatenate([np.zeros((1, 3), np.float32), colors])
        blended = (1.0 - alpha) * region[fg].astype(np.float32) + alpha * lut[own[fg]]
        region[fg] = np.clip(np.rint(blended), 0, 255).astype(np.uint8)

    short = min(result.height, result.width)
    thick = max(1, round(short / 360))
    font_scale = max(0.35, short / 900)
    for k in order:
        color = tuple(int(c) for c in colors[k])
        extent = extents[k]
        if outlines and extent is not None:
            y0, y1, x0, x1 = extent
            crop = np.ascontiguousarray(result.masks[k, y0:y1, x0:x1], dtype=np.uint8)
            contours, _ = cv2.findContours(crop, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE, offset=(x0, y0))
            cv2.drawContours(out, contours, -1, color, thick)
        x1, y1, x2, y2 = (round(float(v)) for v in result.boxes[k])
        x1, x2 = np.clip([x1, x2], 0, result.width - 1)
        y1, y2 = np.clip([y1, y2], 0, result.height - 1)
        has_box = x2 > x1 and y2 > y1
        if not (extent is not None or has_box):
            continue
        if boxes and has_box:
            cv2.rectangle(out, (int(x1), int(y1)), (int(x2), int(y2)), color, thick)
        if labels:
            if not has_box:  # place the caption at the mask's top-left corner
                y1, x1 = extent[0], extent[2]
            _caption(out, label_text(int(result.track_ids[k]), result.class_names[k], float(result.scores[k])),
                     int(x1), int(y1), color, font_scale, thick)
    return out


def _extent(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """``(y0, y1, x0, x1)`` half-open bounds of a mask's pixels, None for an empty mask."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask[rows[0]:rows[-1] + 1].any(axis=0))
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


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
