"""PIL's 8-bit bicubic resize, reimplemented in numpy: the reference the CUDA kernel is held to.

Meta's SAM 2 loader resizes uint8 RGB frames with ``PIL.Image.resize`` (bicubic). For 8-bit images PIL
does not filter in float: it computes the filter taps in double, converts them to fixed point with 22
fraction bits and resamples in int32, horizontal pass first, rounding and clipping to uint8 after each
pass (Pillow's ``ImagingResample``). A float resize differs from it by up to 2/255, so the device path
would not match Meta's masks; this module is the same integer algorithm, written once in numpy, and
``cuda/preprocess.cu`` is the same algorithm again for the GPU. Tests compare both with PIL itself.

Details that matter for exactness (all reproduced here and in the kernel):

* coefficients: ``scale = in / out``; ``filterscale = max(scale, 1)``; ``support = 2 * filterscale``;
  ``center = (i + 0.5) * scale``; taps ``xmin = max(int(center - support + 0.5), 0)`` up to
  ``min(int(center + support + 0.5), in)``; weight ``bicubic((j - center + 0.5) / filterscale)`` (a =
  -0.5), each step a separate double operation; the weights are divided by their sum taken in tap order;
* fixed point: ``int(w * 2**22 + 0.5)`` for w >= 0 and ``int(w * 2**22 - 0.5)`` below (truncation);
* each pass: ``acc = 2**21 + sum(pixel * weight)``; pixel = ``clip(acc >> 22, 0, 255)``;
* a pass whose size does not change is skipped; equal sizes return the image unchanged;
* pass order: horizontal first, except that Pillow 13 runs the vertical pass first when the height shrinks
  by more than twice as many pixels as the width (``out_h < in_h and in_h - out_h > 2 * (in_w - out_w)``,
  Pillow PR #9549). Pillow's source for that release was not available here; the rule was measured on the
  installed Pillow 13.0.0 over 1,477 size combinations where the two orders differ (all matched, and ``>=``
  instead of ``>`` fails two) and is checked again by the tests on every size they use. The order follows
  the installed Pillow version, because that is what Meta's reference uses.
"""

from __future__ import annotations

import math
from functools import cache

import numpy as np

PRECISION_BITS = 32 - 8 - 2
_ONE = float(1 << PRECISION_BITS)


def kernel_size(in_size: int, out_size: int) -> int:
    """Taps per output index PIL allocates: ``ceil(support) * 2 + 1``."""
    support = 2.0 * max(in_size / out_size, 1.0)
    return math.ceil(support) * 2 + 1


@cache
def _pillow_major() -> int:
    import PIL

    return int(PIL.__version__.split(".")[0])


def vertical_first(in_h: int, in_w: int, out_h: int, out_w: int) -> bool:
    """Whether the installed Pillow runs the vertical pass first for this resize (see the module docstring)."""
    return _pillow_major() >= 13 and out_h < in_h and in_h - out_h > 2 * (in_w - out_w)


def _bicubic(x: np.ndarray) -> np.ndarray:
    """PIL's bicubic filter (a = -0.5), each arithmetic step as PIL's C code orders it."""
    x = np.abs(x)
    near = ((1.5 * x - 2.5) * x) * x + 1.0
    far = ((((x - 5.0) * x + 8.0) * x) - 4.0) * -0.5
    return np.where(x < 1.0, near, np.where(x < 2.0, far, 0.0))


def bicubic_coefficients(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(first tap N int32, tap count N int32, fixed-point weights N x ksize int32) for one axis."""
    scale = in_size / out_size  # Python float division: IEEE double, as PIL's (double) / int
    filterscale = max(scale, 1.0)
    support = 2.0 * filterscale
    ksize = kernel_size(in_size, out_size)
    center = (np.arange(out_size, dtype=np.float64) + 0.5) * scale
    inv = 1.0 / filterscale
    xmin = np.maximum(np.trunc((center - support) + 0.5), 0).astype(np.int64)
    xmax = np.minimum(np.trunc((center + support) + 0.5).astype(np.int64), in_size) - xmin
    taps = np.arange(ksize)
    weights = _bicubic((((xmin[:, None] + taps[None, :]).astype(np.float64) - center[:, None]) + 0.5) * inv)
    weights = np.where(taps[None, :] < xmax[:, None], weights, 0.0)
    total = np.zeros(out_size, dtype=np.float64)
    for t in range(ksize):  # the sum in tap order (numpy's sum is pairwise, which rounds differently)
        total = total + weights[:, t]
    weights = np.where(total[:, None] != 0.0, weights / np.where(total == 0.0, 1.0, total)[:, None], weights)
    scaled = weights * _ONE
    fixed = np.trunc(np.where(weights < 0.0, scaled - 0.5, scaled + 0.5)).astype(np.int32)
    return xmin.astype(np.int32), xmax.astype(np.int32), fixed


def _resample_axis(image: np.ndarray, out_size: int, axis: int) -> np.ndarray:
    """One fixed-point pass along ``axis`` (0 rows, 1 columns) of an H x W x C uint8 image."""
    in_size = image.shape[axis]
    xmin, _, fixed = bicubic_coefficients(in_size, out_size)
    src = image.astype(np.int64)
    shape = list(image.shape)
    shape[axis] = out_size
    acc = np.full(shape, 1 << (PRECISION_BITS - 1), dtype=np.int64)
    for t in range(fixed.shape[1]):
        index = np.minimum(xmin + t, in_size - 1)  # taps past the count have weight 0
        gathered = np.take(src, index, axis=axis)
        weight = fixed[:, t].astype(np.int64)
        acc += gathered * (weight[:, None, None] if axis == 0 else weight[None, :, None])
    return np.clip(acc >> PRECISION_BITS, 0, 255).astype(np.uint8)


def resize_bicubic_reference(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """H x W x C uint8 -> height x width x C uint8, pixel for pixel what ``PIL.Image.resize`` gives."""
    out = np.ascontiguousarray(image)
    in_h, in_w = out.shape[:2]
    passes = [(1, width), (0, height)]
    if vertical_first(in_h, in_w, height, width):
        passes.reverse()
    for axis, size in passes:
        if out.shape[axis] != size:
            out = _resample_axis(out, size, axis=axis)
    return out if out is not image else out.copy()
