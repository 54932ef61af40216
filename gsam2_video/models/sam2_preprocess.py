"""SAM 2 frame preprocessing, reproducing Meta's reference exactly (and needing no torchvision).

Meta's video predictor loads each frame with PIL, resizes the uint8 RGB image to ``image_size x
image_size`` with PIL's default filter (bicubic), divides by 255 in float64, stores float32 and normalises
with the ImageNet mean/std in float32. transformers' Sam2 processors resize with bilinear+antialias and
need torchvision; the masks differ visibly between the two, so the propagator uses this function instead.
The same operations in the same order give bit-identical pixel values to ``sam2.utils.misc``.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from ..errors import ModelError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def check_frame(image: np.ndarray, height: int | None = None, width: int | None = None) -> np.ndarray:
    """Validate an RGB uint8 H x W x 3 frame (and its size when given); one-line ModelError otherwise."""
    if not isinstance(image, np.ndarray):
        raise ModelError(f"SAM 2 frame must be a numpy array, got {type(image).__name__}")
    if image.ndim != 3 or image.shape[2] != 3:
        raise ModelError(f"SAM 2 frame must be H x W x 3 RGB, got shape {tuple(image.shape)}")
    if image.dtype != np.uint8:
        raise ModelError(f"SAM 2 frame must be uint8, got {image.dtype}")
    if height is not None and width is not None and image.shape[:2] != (height, width):
        raise ModelError(f"frame size {image.shape[1]}x{image.shape[0]} differs from the session's "
                         f"{width}x{height}; call reset() for a new video")
    return image


def resize_like_reference(image: np.ndarray, image_size: int) -> np.ndarray:
    """uint8 RGB resized to image_size x image_size with PIL's default (bicubic) filter, as Meta does."""
    pil = Image.fromarray(np.ascontiguousarray(check_frame(image)), mode="RGB")
    return np.asarray(pil.resize((image_size, image_size)))


def preprocess_frame(image: np.ndarray, image_size: int) -> torch.Tensor:
    """The 3 x image_size x image_size float32 tensor Meta's predictor feeds its image encoder."""
    resized = resize_like_reference(image, image_size)
    scaled = torch.from_numpy(resized / 255.0).permute(2, 0, 1).to(torch.float32)  # float64 divide, then f32
    mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float32)[:, None, None]
    std = torch.tensor(IMAGENET_STD, dtype=torch.float32)[:, None, None]
    scaled -= mean
    scaled /= std
    return scaled.contiguous()
