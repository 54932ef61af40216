"""SAM 2 frame preprocessing, reproducing Meta's reference exactly (and needing no torchvision).

Meta's video predictor loads each frame with PIL, resizes the uint8 RGB image to ``image_size x
image_size`` with PIL's default filter (bicubic), divides by 255 in float64, stores float32 and normalises
with the ImageNet mean/std in float32. transformers' Sam2 processors resize with bilinear+antialias and
need torchvision; the masks differ visibly between the two, so the propagator uses this function instead.
The same operations in the same order give bit-identical pixel values to ``sam2.utils.misc``.

On a CUDA device :func:`preprocess_frame_tensor` uploads the uint8 frame (a quarter of the float tensor's
bytes) and runs the same computation as CUDA kernels (``cuda/preprocess.cu``: PIL's integer bicubic
resize reimplemented, then the normalisation with the same roundings), so the encoder sees the same pixels
on CUDA as on CPU and parity with Meta holds on both. Everywhere else it is the PIL path below.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from ..errors import ModelError
from ..ops._dispatch import route

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


def _host_frame(image: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(image, torch.Tensor):
        image = image.detach().cpu().numpy()
    return check_frame(image)


def _device_frame(image: np.ndarray | torch.Tensor, device: torch.device) -> torch.Tensor:
    """The uint8 H x W x 3 frame on ``device``: host frames go through pinned memory, copied asynchronously."""
    if isinstance(image, torch.Tensor) and image.device == device:
        if image.dtype != torch.uint8 or image.dim() != 3 or image.shape[2] != 3:
            raise ModelError(f"SAM 2 frame must be an H x W x 3 uint8 tensor, got {image.dtype} "
                             f"{tuple(image.shape)}")
        return image.contiguous()
    host = torch.from_numpy(np.ascontiguousarray(_host_frame(image)))
    return host.pin_memory().to(device, non_blocking=True)


def preprocess_frame_tensor(image: np.ndarray | torch.Tensor, image_size: int,
                            device: torch.device | str) -> torch.Tensor:
    """1 x 3 x image_size x image_size float32 on ``device``: :func:`preprocess_frame`, on the GPU there.

    ``image`` is an H x W x 3 RGB uint8 numpy array or torch tensor (possibly already on ``device``). On a
    CUDA device with CuPy the kernels compute it (equal to the CPU path: the resized pixels exactly, the
    normalised values to the bit in the emulation tests); otherwise the frame takes the PIL path on the
    host and the result is copied to ``device`` (on CPU: exactly what ``preprocess_frame`` returns).
    """
    device = torch.device(device)
    if route("preprocess", device.type == "cuda"):
        from ..kernels.preprocess import normalize_cuda, resize_bicubic_cuda

        if device.index is None:  # "cuda" means the current device; tensors always name theirs
            device = torch.device("cuda", torch.cuda.current_device())
        frame = _device_frame(image, device)
        resized = resize_bicubic_cuda(frame, image_size, image_size)
        return normalize_cuda(resized, IMAGENET_MEAN, IMAGENET_STD).unsqueeze(0)
    return preprocess_frame(_host_frame(image), image_size).unsqueeze(0).to(device)
