"""Mask and attention ops with a torch reference (the CPU path and the test oracle).

Each op dispatches to a CuPy/CUDA kernel from ``gsam2_video.kernels`` when its inputs are CUDA tensors and
CuPy is installed; ``GSAM2_FORCE_TORCH=1`` forces the reference everywhere.
"""

from __future__ import annotations

from .connected_components import connected_components
from .mask_iou import mask_coverage_matrix, mask_iou_matrix

__all__ = ["connected_components", "mask_coverage_matrix", "mask_iou_matrix"]
