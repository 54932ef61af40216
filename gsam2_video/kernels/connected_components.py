"""Launch the connected-component labelling kernels (``cuda/connected_components.cu``).

init -> merge (union-find) -> compress -> count roots and areas -> per-image prefix sum of the root flags
(torch.cumsum on the same stream) -> finalize labels 1..K and per-pixel areas.
"""

from __future__ import annotations

import numpy as np
import torch

from .runtime import BLOCK, Runner, cuda_runner, grid_for


def connected_components_cuda(masks: torch.Tensor, runner: Runner | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Kernel version of ``ops.connected_components`` for a B x H x W bool tensor."""
    runner = runner or cuda_runner(masks.device)
    b, h, w = masks.shape
    img = masks.contiguous().view(torch.uint8)
    opts = {"dtype": torch.int32, "device": masks.device}
    label = torch.empty((b, h, w), **opts)
    roots = torch.empty((b, h, w), **opts)
    area = torch.zeros((b, h, w), **opts)
    out_label = torch.empty((b, h, w), **opts)
    out_area = torch.empty((b, h, w), **opts)
    if img.numel() == 0:
        return out_label, out_area
    dims = (np.int32(b), np.int32(h), np.int32(w))
    grid, block = grid_for(img.numel()), (BLOCK, 1, 1)
    src = "connected_components.cu"
    runner.launch(src, "ccl_init", grid, block, (label, *dims))
    runner.launch(src, "ccl_merge", grid, block, (img, label, *dims))
    runner.launch(src, "ccl_compress", grid, block, (img, label, *dims))
    runner.launch(src, "ccl_count", grid, block, (img, label, roots, area, *dims))
    rank = torch.cumsum(roots.view(b, h * w), dim=1, dtype=torch.int32).view(b, h, w).contiguous()
    runner.launch(src, "ccl_finalize", grid, block, (img, label, rank, area, out_label, out_area, *dims))
    return out_label, out_area
