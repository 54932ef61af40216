"""Connected-component labelling with per-pixel component areas, batched over masks.

SAM 2 post-processes every predicted mask: holes (background components) up to ``fill_hole_area`` pixels
are filled and, optionally, foreground specks up to ``max_sprinkle_area`` are removed. Meta's code needs a
compiled ``_C`` extension (``get_connected_components``) for that and silently skips the step when the
build failed. This op returns the same pair of tensors as that extension:

* ``labels`` (int32): 0 on background, components numbered per image,
* ``areas`` (int32): for every foreground pixel the pixel count of its component, 0 on background,

with 8-connectivity as in Meta's kernel. One deliberate difference: Meta's labels are "union-find root
index + 1" (sparse numbers), ours are canonical 1..K ordered by each component's first pixel in raster
order. SAM 2 only tests ``labels > 0`` and reads ``areas``, so its hole-filling logic is unchanged, and
canonical labels let the CUDA kernel be compared with this reference for exact equality.

The CPU path labels each image with scipy.ndimage (a C loop per image, never a Python loop over pixels)
and counts areas with numpy.bincount; other devices without the kernel round-trip through it.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage

from ._checks import check_masks
from ._dispatch import dispatch


def connected_components_reference(masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """CPU reference for :func:`connected_components` on a B x H x W bool tensor.

    scipy's labelling scans in raster order and numbers the final components by their first provisional
    label, which is created at each component's first pixel: exactly the canonical numbering. (The tests
    check that order on every case, and the kernel is compared with this function for exact equality.)
    """
    b, h, w = masks.shape
    labels = np.zeros((b, h, w), dtype=np.int32)
    areas = np.zeros((b, h, w), dtype=np.int32)
    if labels.size == 0:
        return torch.from_numpy(labels).to(masks.device), torch.from_numpy(areas).to(masks.device)
    planes = masks.detach().to("cpu").numpy()
    eight = np.ones((3, 3), dtype=bool)  # 8-connectivity, as Meta's kernel
    for i in range(b):  # one C call per mask; never a Python loop over pixels
        ndimage.label(planes[i], structure=eight, output=labels[i])
        counts = np.bincount(labels[i].ravel()).astype(np.int32)
        counts[0] = 0
        np.take(counts, labels[i], out=areas[i])
    return torch.from_numpy(labels).to(masks.device), torch.from_numpy(areas).to(masks.device)


def connected_components(masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Label 8-connected foreground components of ``masks`` (... x H x W, bool or uint8).

    Returns ``(labels, areas)``, both int32 with the input's shape: labels 1..K per image in raster order of
    each component's first pixel (0 = background), areas = pixel count of the pixel's component (0 = bg).
    Leading dimensions are flattened into a batch, so SAM 2's N x 1 x H x W layout works as is.
    """
    masks = check_masks("masks", masks, ndim=None)
    shape = masks.shape
    flat = masks.reshape(-1, shape[-2], shape[-1])
    if flat.numel() and dispatch("connected_components", flat):
        from ..kernels.connected_components import connected_components_cuda

        labels, areas = connected_components_cuda(flat)
    else:
        labels, areas = connected_components_reference(flat)
    return labels.reshape(shape), areas.reshape(shape)
