"""A mask as ONE polygon, the way Ultralytics' YOLO segmentation labels need it (holes and parts included).

Why one polygon: a YOLO segmentation label line is ``class x1 y1 x2 y2 ...``, one line per object, so an object
made of several parts, or with holes, has to be a single ring. Ultralytics' own converter
(``ultralytics.data.converter.merge_multi_segment``, used for COCO objects with several polygons) joins the
parts by walking out along a zero-width "bridge" from the nearest point of one part to the nearest point of
the next and back again. We do the same for every contour of the mask, outer boundaries *and* holes
(``cv2.RETR_CCOMP``): Ultralytics and supervision rasterise a label with ``cv2.fillPoly``, whose even-odd
filling leaves a hole traced by such a ring empty, and a bridge walked there and back adds no area.

Rasterisation tolerance (what round-trip tests check): filling the polygon at the image's size gives the
mask back exactly except on the polygon's own outline, i.e. pixels that ``cv2.polylines`` draws for the
written polygon (boundary pixels of thin or diagonal features and the 1-pixel bridges, which ``fillPoly``
paints as part of the edge). Every interior pixel is exact.

Vertices are the pixel coordinates of boundary pixels (``cv2.CHAIN_APPROX_SIMPLE``, which drops only points
on straight runs, so the filled result is unchanged); :func:`yolo_line` normalises them as ``x / W``, ``y / H``
with 6 decimals, Ultralytics' converter convention.
"""

from __future__ import annotations

import cv2
import numpy as np


def mask_contours(mask: np.ndarray) -> list[np.ndarray]:
    """Outer boundaries and holes of a boolean mask as N x 2 int32 (x, y) rings, largest first."""
    contours, _ = cv2.findContours(np.ascontiguousarray(mask, dtype=np.uint8), cv2.RETR_CCOMP,
                                   cv2.CHAIN_APPROX_SIMPLE)
    rings = [c.reshape(-1, 2).astype(np.int32) for c in contours if len(c)]
    rings.sort(key=lambda r: -len(r))
    return rings


def join_rings(rings: list[np.ndarray]) -> np.ndarray:
    """One ring visiting every ring of ``rings``: each is spliced in at its point nearest to the ring built so
    far, entered and left along the same bridge (see the module docstring)."""
    if not rings:
        return np.zeros((0, 2), np.int32)
    from scipy.spatial import cKDTree  # here: scipy.spatial costs ~0.6 s, paid by every CLI start otherwise

    out = rings[0]
    for ring in rings[1:]:
        dist, nearest = cKDTree(out).query(ring)
        j = int(np.argmin(dist))
        i = int(nearest[j])
        loop = np.concatenate([ring[j:], ring[:j + 1]])  # around the ring, back to where it was entered
        out = np.concatenate([out[:i + 1], loop, out[i:]])
    return out


def mask_polygon(mask: np.ndarray) -> np.ndarray:
    """The mask as one N x 2 int32 (x, y) ring (empty when the mask is)."""
    return join_rings(mask_contours(mask))


def polygon_points(polygon: np.ndarray) -> np.ndarray:
    """A ring with at least 3 vertices, as YOLO requires: a 1- or 2-vertex ring (a single pixel, a straight
    1-pixel line) repeats its last vertex, which fills the same pixels."""
    if 0 < len(polygon) < 3:
        polygon = np.concatenate([polygon, np.repeat(polygon[-1:], 3 - len(polygon), axis=0)])
    return polygon


def yolo_line(class_id: int, mask: np.ndarray) -> str:
    """``class x1 y1 ...`` for one object, coordinates normalised by the mask's width and height."""
    h, w = mask.shape
    poly = polygon_points(mask_polygon(mask))
    coords = " ".join(f"{x / w:.6f} {y / h:.6f}" for x, y in poly.tolist())
    return f"{class_id} {coords}"


def fill_polygon(polygon: np.ndarray, height: int, width: int) -> np.ndarray:
    """The pixels ``cv2.fillPoly`` fills for an integer (x, y) ring: what YOLO readers decode."""
    out = np.zeros((height, width), np.uint8)
    if len(polygon):
        cv2.fillPoly(out, [np.asarray(polygon, np.int32)], 1)
    return out.astype(bool)


def polygon_outline(polygon: np.ndarray, height: int, width: int) -> np.ndarray:
    """The pixels of a ring's own edges (the rasterisation tolerance of :mod:`this module <.polygons>`)."""
    out = np.zeros((height, width), np.uint8)
    if len(polygon):
        cv2.polylines(out, [np.asarray(polygon, np.int32)], True, 1, thickness=1)
    return out.astype(bool)
