"""Pixel normalisation: every source hands out RGB uint8 H x W x 3, C-contiguous.

Colour order is settled here, once: decoders that produce BGR (OpenCV) say so and are flipped here; nothing
downstream ever guesses. Gray frames are repeated to three channels, alpha is dropped (frames are treated as
opaque, as video is), deeper integer types are rescaled to 8 bits with rounding, float images are read as
0..1 intensities.
"""

from __future__ import annotations

import numpy as np


def to_uint8(image: np.ndarray) -> np.ndarray:
    """Rescale any supported depth to uint8 (uint16 by /257 with rounding, so 65535 -> 255 and 257 -> 1)."""
    if image.dtype == np.uint8:
        return image
    if image.dtype == np.uint16:
        return ((image.astype(np.uint32) + 128) // 257).astype(np.uint8)
    if image.dtype == np.bool_:
        return image.astype(np.uint8) * 255
    if np.issubdtype(image.dtype, np.floating):
        return np.clip(np.rint(np.nan_to_num(image.astype(np.float64)) * 255.0), 0, 255).astype(np.uint8)
    if image.dtype == np.int8:
        return (image.astype(np.int16) + 128).astype(np.uint8)
    if np.issubdtype(image.dtype, np.integer):
        info = np.iinfo(image.dtype)
        scaled = (image.astype(np.float64) - info.min) * (255.0 / (float(info.max) - info.min))
        return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
    raise ValueError(f"unsupported pixel type {image.dtype}")


def to_rgb(image: np.ndarray, order: str = "RGB") -> np.ndarray:
    """Return ``image`` as RGB uint8 H x W x 3, C-contiguous.

    ``order`` names the channel order of a 3/4-channel input: "RGB"/"RGBA" or "BGR"/"BGRA" (OpenCV).
    Accepted shapes: H x W, H x W x 1 (gray), H x W x 2 (gray + alpha), H x W x 3, H x W x 4.
    """
    order = order.upper()
    if order not in ("RGB", "RGBA", "BGR", "BGRA"):
        raise ValueError(f"unknown channel order {order!r}")
    img = np.asarray(image)
    if img.ndim == 2:
        img = img[:, :, None]
    if img.ndim != 3 or img.shape[2] not in (1, 2, 3, 4):
        raise ValueError(f"cannot read an image of shape {tuple(np.shape(image))} as a frame")
    img = to_uint8(img)
    channels = img.shape[2]
    if channels <= 2:  # gray or gray + alpha
        out = np.repeat(img[:, :, :1], 3, axis=2)
    else:
        out = img[:, :, :3]
        if order.startswith("BGR"):
            out = out[:, :, ::-1]
    return np.ascontiguousarray(out)
