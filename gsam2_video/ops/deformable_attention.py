"""Multi-scale deformable attention (Deformable DETR / Grounding DINO), forward only.

transformers runs this with one ``grid_sample`` per level, which materialises every sampled value
(batch x heads x channels x queries x levels x points) before the weighted sum: that tensor is what makes
the encoder's 22k-query self-attention heavy. The CUDA kernel in ``cuda/msda.cu`` samples and accumulates
in registers instead. This module is the torch reference both are held to: the exact sampling rule of
``grid_sample(mode="bilinear", padding_mode="zeros", align_corners=False)`` on ``2 * location - 1``, i.e. a
location ``u`` in [0, 1] maps to pixel coordinate ``u * size - 0.5`` and taps outside the map read zero.
Half and bfloat16 inputs are computed in float32 and the result is cast back (fp32 accumulation).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import ModelError
from ._dispatch import dispatch, record_call

OP = "deformable_attention"  # the name kernel records count this op under


def _check(value: torch.Tensor, spatial_shapes: torch.Tensor, level_start_index: torch.Tensor,
           sampling_locations: torch.Tensor, attention_weights: torch.Tensor) -> None:
    if value.dim() != 4:
        raise ModelError(f"deformable attention value must be B x S x heads x channels, got {tuple(value.shape)}")
    b, s, h, _ = value.shape
    if sampling_locations.dim() != 6 or sampling_locations.shape[-1] != 2:
        raise ModelError("deformable attention sampling locations must be B x Q x heads x levels x points x 2, "
                         f"got {tuple(sampling_locations.shape)}")
    _, q, h2, lv, p, _ = sampling_locations.shape
    if sampling_locations.shape[0] != b or h2 != h:
        raise ModelError(f"deformable attention locations {tuple(sampling_locations.shape)} do not match "
                         f"value {tuple(value.shape)} in batch or heads")
    if tuple(attention_weights.shape) != (b, q, h, lv, p):
        raise ModelError(f"deformable attention weights must be {(b, q, h, lv, p)}, "
                         f"got {tuple(attention_weights.shape)}")
    if tuple(spatial_shapes.shape) != (lv, 2) or tuple(level_start_index.shape) != (lv,):
        raise ModelError(f"deformable attention needs {lv} spatial shapes (levels x 2) and level starts, got "
                         f"{tuple(spatial_shapes.shape)} and {tuple(level_start_index.shape)}")
    if spatial_shapes.device.type != "cpu":
        return  # the token count check would synchronise the GPU on every call
    if int((spatial_shapes[:, 0] * spatial_shapes[:, 1]).sum()) != s:
        raise ModelError(f"deformable attention spatial shapes cover "
                         f"{int((spatial_shapes[:, 0] * spatial_shapes[:, 1]).sum())} tokens but value has {s}")


def multi_scale_deformable_attention_reference(
    value: torch.Tensor,
    spatial_shapes: torch.Tensor,
    level_start_index: torch.Tensor,
    sampling_locations: torch.Tensor,
    attention_weights: torch.Tensor,
) -> torch.Tensor:
    """Torch reference: B x S x heads x D values -> B x Q x (heads * D), computed in float32."""
    b, _, heads, dim = value.shape
    _, q, _, levels, points, _ = sampling_locations.shape
    v = value.float()
    grid = sampling_locations.float() * 2 - 1  # grid_sample's [-1, 1] convention
    shapes = [(int(hh), int(ww)) for hh, ww in spatial_shapes.tolist()]
    starts = [int(x) for x in level_start_index.tolist()]
    # per level: (B*heads, D, Hl, Wl) sampled at (B*heads, Q, P, 2) -> (B*heads, D, Q, P)
    sampled = []
    for lvl, (hh, ww) in enumerate(shapes):
        v_l = v[:, starts[lvl]:starts[lvl] + hh * ww]  # B x HW x heads x D
        v_l = v_l.permute(0, 2, 3, 1).reshape(b * heads, dim, hh, ww)
        g_l = grid[:, :, :, lvl].transpose(1, 2).reshape(b * heads, q, points, 2)
        sampled.append(F.grid_sample(v_l, g_l, mode="bilinear", padding_mode="zeros", align_corners=False))
    stacked = torch.stack(sampled, dim=3).reshape(b * heads, dim, q, levels * points)
    w = attention_weights.float().transpose(1, 2).reshape(b * heads, 1, q, levels * points)
    out = (stacked * w).sum(-1)  # (B*heads, D, Q)
    out = out.reshape(b, heads * dim, q).transpose(1, 2).contiguous()
    return out.to(value.dtype)


def multi_scale_deformable_attention(
    value: torch.Tensor,
    spatial_shapes: torch.Tensor,
    level_start_index: torch.Tensor,
    sampling_locations: torch.Tensor,
    attention_weights: torch.Tensor,
) -> torch.Tensor:
    """Deformable attention forward; CUDA kernel on CUDA tensors with CuPy, torch reference otherwise.

    value: B x S x heads x D (fp32/fp16/bf16); spatial_shapes: levels x 2 (H, W) int64; level_start_index:
    levels int64; sampling_locations: B x Q x heads x levels x points x 2 in [0, 1] (x, y); attention_weights:
    B x Q x heads x levels x points. Returns B x Q x (heads * D) in value's dtype.
    """
    _check(value, spatial_shapes, level_start_index, sampling_locations, attention_weights)
    if value.dtype not in (torch.float32, torch.float16, torch.bfloat16):
        record_call(OP, kernel=False)
    elif dispatch(OP, value, sampling_locations, attention_weights):
        from ..kernels.deformable_attention import multi_scale_deformable_attention_cuda

        return multi_scale_deformable_attention_cuda(value, spatial_shapes, level_start_index,
                                                     sampling_locations, attention_weights)
    return multi_scale_deformable_attention_reference(value, spatial_shapes, level_start_index,
                                                      sampling_locations, attention_weights)
