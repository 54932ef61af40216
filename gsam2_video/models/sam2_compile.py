"""``--compile``: torch.compile of SAM 2's image encoder and of the batched memory attention.

Why these two: they are the per-frame networks whose shapes can be made static. The image encoder always
sees one image_size x image_size frame; the memory attention sees one batch of all tracked objects, and
with ``sam2_memory.Buckets`` (which the session uses whenever ``PropagatorConfig.compile`` is set) its
shapes only change when the object count crosses a power of two. Both are compiled with ``dynamic=False``,
so each shape gets a specialised graph (on CUDA: fused kernels, fewer launches) instead of a dynamic one.
The SAM heads (prompt encoder, mask decoder) stay eager: their batch follows the number of objects.

The image encoder is compiled in place (``nn.Module.compile``): ``Sam2VideoModel.get_image_features``
calls it, so every user of the model gets the compiled encoder. The first frame (and each new shape)
pays the compile time: about a minute at SAM 2's real size on a CPU; far less on a GPU with a warm cache.
"""

from __future__ import annotations

import torch
from torch import nn

from .sam2_memory import AttentionCore, masked_memory_attention


def compile_sam2(model: nn.Module) -> AttentionCore:
    """Compile ``model.vision_encoder`` in place (once per model) and return a compiled memory-attention core
    to pass as ``core`` to ``sam2_memory.attend_objects``."""
    if getattr(model.vision_encoder, "_compiled_call_impl", None) is None:
        model.vision_encoder.compile(dynamic=False)
    return torch.compile(masked_memory_attention, dynamic=False)


__all__ = ["compile_sam2"]
