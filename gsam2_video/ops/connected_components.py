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

The CPU path labels each image with OpenCV (a C loop per image, never a Python loop over pixels) and
canonicalises the numbering with vectorised torch ops.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

from ._checks import check_masks
from ._dispatch import use_kernel


def canonical_relabel(labels: torch.Tensor) -> torch.Tensor:
    """Renumber nonzero labels of each image (B x P) to 1..K by first occurrence in raster order."""
    b, p = labels.shape
    lab = labels.to(torch.int64)
    top = int(lab.max()) if lab.numel() else 0
    if top == 0:
        return labels.to(torch.int32)
    first = torch.full((b, top + 1), p, dtype=torch.int64, device=labels.device)
    pos = torch.arange(p, device=labels.device).expand(b, p)
    first.scatter_reduce_(1, lab, pos, reduce="amin")
    first[:, 0] = -1  # background sorts first and keeps rank 0
    first = torch.where(first == p, torch.full_like(first, p + 1), first)  # unused numbers sort last
    rank = torch.empty_like(first)
    rank.scatter_(1, first.argsort(dim=1), torch.arange(top + 1, device=labels.device).expand(b, top + 1))
    return rank.gather(1, lab).to(torch.int32)


def component_areas(labels: torch.Tensor) -> torch.Tensor:
    """Per-pixel area of the pixel's component for labels shaped B x P (0 on background)."""
    b, p = labels.shape
    lab = labels.to(torch.int64)
    top = int(lab.max()) if lab.numel() else 0
    counts = torch.zeros((b, top + 1), dtype=torch.int64, device=labels.device)
    counts.scatter_add_(1, lab, torch.ones_like(lab))
    counts[:, 0] = 0
    return counts.gather(1, lab).to(torch.int32)


def connected_components_reference(masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Torch/OpenCV reference for :func:`connected_components` on a B x H x W bool tensor."""
    b, h, w = masks.shape
    if b == 0 or h == 0 or w == 0:
        empty = torch.zeros((b, h, w), dtype=torch.int32, device=masks.device)
        return empty, empty.clone()
    planes = masks.detach().to("cpu", torch.uint8).numpy()
    raw = np.empty((b, h, w), dtype=np.int32)
    for i in range(b):  # one OpenCV call per mask; the pixel loop is in C
        cv2.connectedComponents(planes[i], raw[i], 8, cv2.CV_32S)
    labels = canonical_relabel(torch.from_numpy(raw).reshape(b, h * w))
    areas = component_areas(labels)
    return labels.reshape(b, h, w).to(masks.device), areas.reshape(b, h, w).to(masks.device)


def connected_components(masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Label 8-connected foreground components of ``masks`` (... x H x W, bool or uint8).

    Returns ``(labels, areas)``, both int32 with the input's shape: labels 1..K per image in raster order of
    each component's first pixel (0 = background), areas = pixel count of the pixel's component (0 = bg).
    Leading dimensions are flattened into a batch, so SAM 2's N x 1 x H x W layout works as is.
    """
    masks = check_masks("masks", masks, ndim=None)
    shape = masks.shape
    flat = masks.reshape(-1, shape[-2], shape[-1])
    if use_kernel(flat) and flat.numel():
        from ..kernels.connected_components import connected_components_cuda

        labels, areas = connected_components_cuda(flat)
    else:
        labels, areas = connected_components_reference(flat)
    return labels.reshape(shape), areas.reshape(shape)
