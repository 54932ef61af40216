"""Launch the multi-scale deformable attention kernel (``cuda/msda.cu``).

Picks the storage variant from the value dtype and the widest channel pack (up to 16 bytes) that the head
size and the value pointer's alignment allow. Locations and weights are handed over as fp32 (they are
small next to the value tensor); accumulation is fp32 in the kernel.
"""

from __future__ import annotations

import numpy as np
import torch

from ..errors import ModelError
from .runtime import BLOCK, Runner, cuda_runner, grid_for

_TAGS = {torch.float32: "f32", torch.float16: "f16", torch.bfloat16: "bf16"}


def channel_pack(channels: int, dtype: torch.dtype, *pointers: int) -> int:
    """Widest pack V (channels per thread) with V | channels, V * itemsize <= 16 and aligned pointers."""
    size = torch.empty((), dtype=dtype).element_size()
    for v in (8, 4, 2, 1):
        if v * size <= 16 and channels % v == 0 and all(p % (v * size) == 0 for p in pointers):
            return v
    return 1


def multi_scale_deformable_attention_cuda(
    value: torch.Tensor,
    spatial_shapes: torch.Tensor,
    level_start_index: torch.Tensor,
    sampling_locations: torch.Tensor,
    attention_weights: torch.Tensor,
    runner: Runner | None = None,
) -> torch.Tensor:
    """Kernel version of ``ops.multi_scale_deformable_attention`` (inputs already validated by the op)."""
    if value.dtype not in _TAGS:
        raise ModelError(f"deformable attention kernel supports fp32/fp16/bf16 values, got {value.dtype}")
    runner = runner or cuda_runner(value.device)
    dev = value.device
    b, s, heads, dim = value.shape
    _, q, _, levels, points, _ = sampling_locations.shape
    value = value.contiguous()
    shapes = spatial_shapes.to(device=dev, dtype=torch.int64).contiguous()
    starts = level_start_index.to(device=dev, dtype=torch.int64).contiguous()
    loc = sampling_locations.to(torch.float32).contiguous()
    attn = attention_weights.to(torch.float32).contiguous()
    out = torch.empty((b, q, heads * dim), dtype=value.dtype, device=dev)
    if out.numel() == 0:
        return out
    v = channel_pack(dim, value.dtype, value.data_ptr(), out.data_ptr())
    total = b * q * heads * (dim // v)
    runner.launch("msda.cu", f"msda_forward_{_TAGS[value.dtype]}_v{v}", grid_for(total), (BLOCK, 1, 1),
                  (value, shapes, starts, loc, attn, out, np.int32(b), np.int32(s), np.int32(heads),
                   np.int32(dim), np.int32(q), np.int32(levels), np.int32(points)))
    return out
