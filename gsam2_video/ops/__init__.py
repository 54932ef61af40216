"""Mask, attention and frame ops with a torch reference (the CPU path and the test oracle).

Each op dispatches to a CuPy/CUDA kernel from ``gsam2_video.kernels`` when its inputs are CUDA tensors and
CuPy is installed; ``GSAM2_FORCE_TORCH=1`` forces the reference everywhere. ``kernel_record()`` opened
around a run counts which ops ran on kernels and which on torch (for run.json).
"""

from __future__ import annotations

from ._dispatch import KernelRecord, kernel_record
from .connected_components import connected_components
from .deformable_attention import multi_scale_deformable_attention
from .mask_iou import mask_coverage_matrix, mask_iou_matrix
from .rle import rle_from_label_map

__all__ = [
    "KernelRecord", "connected_components", "kernel_record", "mask_coverage_matrix", "mask_iou_matrix",
    "multi_scale_deformable_attention", "rle_from_label_map",
]
