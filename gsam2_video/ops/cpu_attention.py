"""SAM 2 memory attention on CPUs with bf16 hardware: eager attention, one block of query rows at a time.

Why: at SAM 2's real input size the memory attention (64 x 64 image tokens attending to up to 7 x 4096
memory tokens plus object pointers) is most of a CPU run, and under bf16 autocast torch's CPU SDPA kernel
is no faster than in fp32 (measured by ``benchmarks/attention.py``, figures in ``benchmarks/README.md``),
while a plain bf16 matmul runs on the CPU's bf16 dot-product units. This computes exactly what transformers'
eager attention computes in bf16 (QK^T in bf16, softmax in fp32, cast back, AV in bf16) in blocks of query
rows, so the score matrix never exceeds ``rows x keys`` and stays in cache-friendly pieces.

It is used only where it was measured to win: CPU tensors in bf16, no attention mask other than a
per-key additive bias (B x 1 x 1 x keys: the padding mask ``models.sam2_memory`` passes when objects with
different memory lengths share one call), no dropout, not causal, at least ``MIN_KEYS`` keys, and only in
SAM 2's memory attention (``Sam2VideoRoPEAttention``);
everything else goes to transformers' SDPA path unchanged. fp32 runs never take the blocked path, so the
parity tests' exact path is untouched.
"""

from __future__ import annotations

import logging
from typing import Any

import torch

log = logging.getLogger("gsam2_video")

#: the name this function is registered under in transformers' AttentionInterface
ATTENTION_NAME = "gsam2_cpu_bf16_memory"
#: below this many keys SDPA is as fast or faster (``benchmarks/attention.py``; figures in benchmarks/README.md)
MIN_KEYS = 256
#: query rows per block: the score block is rows x keys
BLOCK_ROWS = 256


def eager_attention_blocks(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, scaling: float,
                           block_rows: int = BLOCK_ROWS, bias: torch.Tensor | None = None) -> torch.Tensor:
    """softmax(Q K^T * scaling + bias) V for B x H x L x D tensors, computed ``block_rows`` query rows at a time.

    The arithmetic per row is transformers' ``eager_attention_forward``: the product in the inputs' dtype,
    the additive mask (``bias``, broadcast to B x H x rows x keys) added, the softmax in fp32, the weights
    cast back to the value dtype before the second product.
    """
    out = torch.empty((*query.shape[:-1], value.shape[-1]), dtype=value.dtype, device=query.device)
    key_t = key.transpose(-1, -2)
    for start in range(0, query.shape[-2], block_rows):
        rows = slice(start, start + block_rows)
        scores = torch.matmul(query[..., rows, :], key_t) * scaling
        if bias is not None:
            scores = scores + bias
        weights = torch.softmax(scores, dim=-1, dtype=torch.float32).to(value.dtype)
        torch.matmul(weights, value, out=out[..., rows, :])
    return out


def wins_here(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor,
              attention_mask: torch.Tensor | None, dropout: float, is_causal: bool | None) -> bool:
    """Whether this call is one the blocked path was measured to speed up (see the module docstring)."""
    from transformers.models.sam2_video.modeling_sam2_video import Sam2VideoRoPEAttention

    return (isinstance(module, Sam2VideoRoPEAttention) and query.device.type == "cpu"
            and query.dtype == torch.bfloat16 and key.dtype == torch.bfloat16
            and (attention_mask is None or is_key_bias(attention_mask, query, key))
            and not dropout and not is_causal and key.shape[-2] >= MIN_KEYS)


def is_key_bias(mask: torch.Tensor, query: torch.Tensor, key: torch.Tensor) -> bool:
    """Whether ``mask`` is an additive per-key bias (B x 1 x 1 x keys, the query dtype)."""
    return (mask.dtype == query.dtype and mask.dim() == 4 and mask.shape[1] == mask.shape[2] == 1
            and mask.shape[0] == query.shape[0] and mask.shape[3] == key.shape[-2])


def memory_attention_forward(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                             attention_mask: torch.Tensor | None, dropout: float = 0.0, scaling: float | None = None,
                             is_causal: bool | None = None, **kwargs: Any) -> tuple[torch.Tensor, None]:
    """An AttentionInterface function: the blocked path where it wins, transformers' SDPA path otherwise."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    if not wins_here(module, query, key, attention_mask, dropout, is_causal):
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      is_causal=is_causal, **kwargs)
    scale = query.shape[-1] ** -0.5 if scaling is None else scaling
    out = eager_attention_blocks(query, key, value, scale, bias=attention_mask)
    return out.transpose(1, 2).contiguous(), None  # B x L x H x D, as transformers' attention functions return


def use_blocked_memory_attention(model: Any) -> bool:
    """Route ``model`` (a Sam2VideoModel) to ``memory_attention_forward`` through transformers' public
    attention-function registry; sub-models (vision encoder, mask decoder) keep their implementation.

    Returns False, leaving the model on SDPA, when the installed transformers cannot switch one model's
    attention function this way (per-sub-config ``set_attn_implementation`` is recent): the blocked path
    is only a speed-up, so an older transformers costs speed, not correctness.
    """
    try:
        from transformers import AttentionInterface

        keep = {name: getattr(model.config, name)._attn_implementation for name in model.config.sub_configs
                if getattr(model.config, name, None) is not None}
        AttentionInterface.register(ATTENTION_NAME, memory_attention_forward)  # idempotent: same key and function
        model.set_attn_implementation({"": ATTENTION_NAME, **keep})
    except (ImportError, AttributeError, TypeError, ValueError, KeyError) as exc:
        log.info("SAM 2 memory attention stays on SDPA (this transformers cannot switch it: %s)", exc)
        return False
    return model.config._attn_implementation == ATTENTION_NAME
