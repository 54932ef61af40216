"""Swap transformers' MultiScaleDeformableAttention for the CUDA kernel inside a Grounding DINO model.

transformers' Grounding DINO computes deformable attention with grid_sample (its custom-kernel hook needs
a hub download or a compiled extension). ``patch_grounding_dino`` wraps every such submodule: when the call
runs on CUDA tensors, CuPy is present, no gradient is needed and ``GSAM2_FORCE_TORCH`` is unset, the
wrapper runs ``cuda/msda.cu``; otherwise it calls the original module, so CPU runs are unchanged.
Modules are recognised by class name and forward signature, which keeps the patch working across the
transformers models that share this module (Deformable DETR, Grounding DINO, ...).
"""

from __future__ import annotations

import inspect

import torch
from torch import nn

from ..ops._dispatch import dispatch, record_call
from ..ops.deformable_attention import OP
from .runtime import Runner

_TARGET = "MultiScaleDeformableAttention"
_PARAMS = ("value", "value_spatial_shapes", "value_spatial_shapes_list", "level_start_index",
           "sampling_locations", "attention_weights", "im2col_step")
_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


class KernelDeformableAttention(nn.Module):
    """Drop-in for transformers' MultiScaleDeformableAttention that runs the CUDA kernel when it can.

    ``runner`` exists for verification: with a host-emulation runner the kernel path also runs on CPU.
    """

    def __init__(self, original: nn.Module, runner: Runner | None = None) -> None:
        super().__init__()
        self.original = original
        self.runner = runner

    def _kernel_applies(self, value: torch.Tensor, locations: torch.Tensor, weights: torch.Tensor) -> bool:
        if value.dtype not in _DTYPES or (
                torch.is_grad_enabled() and any(t.requires_grad for t in (value, locations, weights))):
            record_call(OP, kernel=False)  # forward-only kernel: keep autograd on the torch path
            return False
        if self.runner is not None:
            record_call(OP, kernel=True)
            return True
        return dispatch(OP, value, locations, weights)

    def forward(self, value: torch.Tensor, value_spatial_shapes: torch.Tensor,
                value_spatial_shapes_list: list[tuple[int, int]], level_start_index: torch.Tensor,
                sampling_locations: torch.Tensor, attention_weights: torch.Tensor,
                im2col_step: int = 64) -> torch.Tensor:
        if self._kernel_applies(value, sampling_locations, attention_weights):
            from .deformable_attention import multi_scale_deformable_attention_cuda

            return multi_scale_deformable_attention_cuda(value, value_spatial_shapes, level_start_index,
                                                         sampling_locations, attention_weights,
                                                         runner=self.runner)
        return self.original(value, value_spatial_shapes, value_spatial_shapes_list, level_start_index,
                             sampling_locations, attention_weights, im2col_step)


def _is_target(module: nn.Module) -> bool:
    if type(module).__name__ != _TARGET or isinstance(module, KernelDeformableAttention):
        return False
    try:
        params = tuple(inspect.signature(module.forward).parameters)
    except (TypeError, ValueError):
        return False
    return params == _PARAMS


def patch_grounding_dino(model: nn.Module, runner: Runner | None = None) -> int:
    """Wrap every deformable-attention submodule of ``model``; return how many were wrapped by this call.

    Safe to call more than once (already wrapped modules are skipped) and on CPU models (the wrapper then
    keeps the torch path). The kernel is used per call, whenever the inputs are CUDA tensors.
    """
    patched = 0
    for parent in list(model.modules()):
        if isinstance(parent, KernelDeformableAttention):
            continue  # its child is the wrapped original
        for name, child in list(parent.named_children()):
            if _is_target(child):
                setattr(parent, name, KernelDeformableAttention(child, runner))
                patched += 1
    return patched
