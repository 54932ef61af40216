"""SAM 2 memory attention for every tracked object in one call: per-object memories padded, padding masked.

Why: transformers' ``Sam2VideoMemoryAttention`` takes one memory tensor for the whole batch, so only
objects whose memories sit at the same temporal positions can share a call. Objects born on different
frames never do (their conditioning pointers have different temporal offsets), and ten such objects cost
ten calls per frame (about 2,600 aten ops instead of about 530) with shapes that change from frame to
frame, which rules out CUDA graphs and ``torch.compile``.

Here each object's memory tokens (mask memories of its conditioning and recent frames, then its object
pointers) are laid out in fixed slots: ``M`` mask-memory slots of ``h*w`` tokens and ``P`` pointer slots
(each split into ``C / mem_dim`` tokens, as transformers splits them). An object with fewer memories than
slots gets zero tokens there, and an additive ``-inf`` key bias removes them from the softmax, so each
object's row attends exactly its own memories. The forward pass is transformers' own
(``Sam2VideoMemoryAttention.forward`` and its layers) re-stated with that bias threaded into the
cross-attention; every weight, layer norm, projection and RoPE call is the model's own submodule or
transformers' function, so numerics follow transformers, and the attention goes through the attention
function the model is configured with (SDPA, eager, or the blocked bf16 CPU function of
``ops.cpu_attention``), so it keeps working under autocast on CPU and CUDA.

Slots are the live maximum by default (least padding). ``Buckets`` fix them instead (the most any object
can attend under the session's caps, and the batch rounded up to a power of two), so shapes repeat from
frame to frame and a compiled core (``torch.compile(..., dynamic=False)``) is reused.

Nothing here keeps state: the functions take the transformers model and per-object memory lists.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import torch
from torch import nn

from ..upload import upload_small


@dataclass(frozen=True)
class ObjectMemories:
    """What one object attends on the current frame, in SAM 2's order.

    ``masks``: (t_pos, memory features HW x 1 x C_mem); t_pos 0 for conditioning frames, else how many
    frames back. ``pointers``: (temporal offset, object pointer 1 x C). The memory positional encoding
    of a mask memory is the session's ``pos_mem`` plus the model's temporal encoding for its t_pos.
    """

    masks: Sequence[tuple[int, torch.Tensor]]
    pointers: Sequence[tuple[int, torch.Tensor]]


@dataclass(frozen=True)
class Buckets:
    """Fixed slot counts so that shapes repeat (for ``torch.compile`` / CUDA graphs).

    ``mask_slots``/``pointer_slots``: the most memories/pointers one object can attend under the
    session's caps; a session that exceeds them (``prune=False``) falls back to the live maximum.
    The batch is padded to the next power of two (dummy rows attend one zero token and are dropped).
    """

    mask_slots: int
    pointer_slots: int

    def batch(self, n: int) -> int:
        return 1 << max(0, (n - 1).bit_length())


@dataclass
class PackedMemory:
    """Batched memory-attention inputs. ``key_valid`` is None when no object needs padding."""

    memory: torch.Tensor  # B x K x C_mem (K = mask_slots * h*w + pointer tokens)
    pos: torch.Tensor  # B x K x C_mem
    key_valid: torch.Tensor | None  # B x K bool: False on padding
    num_pointer_tokens: int
    num_objects: int  # real rows; rows beyond are batch padding


def pack_memories(model: nn.Module, pos_mem: torch.Tensor, objects: Sequence[ObjectMemories], max_pointers: int,
                  buckets: Buckets | None = None) -> PackedMemory:
    """Lay out every object's memories in common slots (float32; see the module docstring).

    ``model`` is a transformers ``Sam2VideoModel``: its temporal encodings and pointer projection are used
    exactly as ``_prepare_memory_conditioned_features`` / ``_process_object_pointers`` use them.
    ``max_pointers`` normalises pointer offsets (Meta: ``min(num_frames, 16)``).
    """
    from transformers.models.sam2_video.modeling_sam2_video import get_1d_sine_pe

    n = len(objects)
    if n == 0:
        raise ValueError("pack_memories needs at least one object")
    n_mask = [len(o.masks) for o in objects]
    n_ptr = [len(o.pointers) for o in objects]
    if min(n_mask) == 0:
        raise ValueError("every object needs at least one mask memory (an object has none on its prompt frame)")
    m_slots, p_slots, b = max(n_mask), max(n_ptr), n
    if buckets is not None:
        m_slots, p_slots, b = max(m_slots, buckets.mask_slots), max(p_slots, buckets.pointer_slots), buckets.batch(n)
    hw, _, c_mem = objects[0].masks[0][1].shape
    device = pos_mem.device
    zero_mem = objects[0].masks[0][1].new_zeros(hw, 1, c_mem)

    # mask memories, object-major: one cat for every object's slots (padding: zero tokens)
    chunks = [o.masks[j][1] if j < len(o.masks) else zero_mem for o in objects for j in range(m_slots)]
    chunks += [zero_mem] * ((b - n) * m_slots)
    memory = torch.cat(chunks, dim=0).view(b, m_slots * hw, c_mem).float()
    # their positional encodings: the shared spatial one plus each slot's temporal encoding (one lookup)
    t_index = [(o.masks[j][0] - 1) % model.num_maskmem if j < len(o.masks) else 0
               for o in objects for j in range(m_slots)] + [0] * ((b - n) * m_slots)
    # one small host->device copy carries every index this frame needs (no per-object transfers)
    offsets = sorted({d for o in objects for d, _ in o.pointers}) or [0]
    where = {d: i for i, d in enumerate(offsets)}
    p_index = [where[o.pointers[j][0]] if j < len(o.pointers) else 0 for o in objects for j in range(p_slots)]
    p_index += [0] * ((b - n) * p_slots)
    # batch padding rows "hold" one zero memory, so their softmax has a key and stays finite
    meta = torch.tensor(t_index + p_index + offsets + n_mask + [1] * (b - n) + n_ptr + [0] * (b - n),
                        dtype=torch.int64)
    meta = upload_small(meta, device)
    split = [len(t_index), len(p_index), len(offsets), b, b]
    t_idx, p_idx, offs, mask_count, ptr_count = meta.split(split)
    tpos = model.memory_temporal_positional_encoding.reshape(model.num_maskmem, c_mem)[t_idx].float()
    pos = (pos_mem.reshape(1, 1, hw, c_mem).float() + tpos.view(b, m_slots, 1, c_mem)).view(b, m_slots * hw, c_mem)

    # with buckets the mask is always passed, so a compiled core sees one graph per shape, not two
    needs_mask = buckets is not None or min(n_mask) != m_slots or (p_slots > 0 and min(n_ptr) != p_slots)
    valid = None
    if needs_mask:
        slot_ok = torch.arange(m_slots, device=device)[None] < mask_count[:, None]  # B x M
        valid = slot_ok[:, :, None].expand(b, m_slots, hw).reshape(b, m_slots * hw)

    n_ptr_tokens = 0
    if p_slots > 0:
        width = model.hidden_dim
        zero_ptr = pos_mem.new_zeros(1, width, dtype=torch.float32)
        ptr_chunks = [o.pointers[j][1] if j < len(o.pointers) else zero_ptr for o in objects for j in range(p_slots)]
        ptr_chunks += [zero_ptr] * ((b - n) * p_slots)
        pointers = torch.cat(ptr_chunks, dim=0).view(b, p_slots, width).float()
        if model.config.enable_temporal_pos_encoding_for_object_pointers:
            sine = get_1d_sine_pe(offs.float() / float(max_pointers - 1), dim=width)
            table = model.temporal_positional_encoding_projection_layer(sine)  # U x C_mem
            ptr_pos = table[p_idx].view(b, p_slots, model.mem_dim)
        else:
            ptr_pos = pointers.new_zeros(b, p_slots, model.mem_dim)
        splits = width // model.mem_dim if model.mem_dim < width else 1
        if splits > 1:  # as _process_object_pointers: each pointer becomes `splits` tokens, pointer-major
            pointers = pointers.reshape(b, p_slots * splits, model.mem_dim)
            ptr_pos = ptr_pos.repeat_interleave(splits, dim=1)
        memory = torch.cat([memory, pointers], dim=1)
        pos = torch.cat([pos, ptr_pos.float()], dim=1)
        n_ptr_tokens = p_slots * splits
        if valid is not None:
            ptr_ok = torch.arange(p_slots, device=device)[None] < ptr_count[:, None]  # B x P
            valid = torch.cat([valid, ptr_ok[:, :, None].expand(b, p_slots, splits).reshape(b, n_ptr_tokens)], 1)
    return PackedMemory(memory, pos, valid, n_ptr_tokens, n)


def _masked_rope_attention(attn: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                           position_embeddings: tuple[torch.Tensor, torch.Tensor], num_k_exclude_rope: int,
                           bias: torch.Tensor | None) -> torch.Tensor:
    """``Sam2VideoRoPEAttention.forward`` with an additive key bias passed to the attention function."""
    from transformers.models.sam2_video.modeling_sam2_video import (
        ALL_ATTENTION_FUNCTIONS,
        apply_rotary_pos_emb_2d,
        eager_attention_forward,
    )

    batch_size, point_batch_size = query.shape[:2]
    new_shape = (batch_size * point_batch_size, -1, attn.num_attention_heads, attn.head_dim)
    q = attn.q_proj(query).view(*new_shape).transpose(1, 2)
    k = attn.k_proj(key).view(*new_shape).transpose(1, 2)
    v = attn.v_proj(value).view(*new_shape).transpose(1, 2)
    cos, sin = position_embeddings
    q, k = apply_rotary_pos_emb_2d(q, k, cos, sin, repeat_freqs_k=attn.rope_k_repeat,
                                   num_k_exclude_rope=num_k_exclude_rope)
    interface: Callable = ALL_ATTENTION_FUNCTIONS.get_interface(attn.config._attn_implementation,
                                                                eager_attention_forward)
    mask = None if bias is None else bias.to(q.dtype)  # 0 / -inf are exact in every float dtype
    out, _ = interface(attn, q, k, v, attention_mask=mask, dropout=0.0, scaling=attn.scaling, is_causal=False)
    out = out.reshape(batch_size, point_batch_size, -1, attn.num_attention_heads * attn.head_dim).contiguous()
    return attn.o_proj(out)


def masked_memory_attention(memory_attention: nn.Module, current: torch.Tensor, current_pos: torch.Tensor,
                            memory: torch.Tensor, memory_pos: torch.Tensor, key_valid: torch.Tensor | None,
                            num_pointer_tokens: int) -> torch.Tensor:
    """``Sam2VideoMemoryAttention.forward`` for B objects at once, padded keys masked out.

    ``current``/``current_pos``: HW x B x C (or HW x 1 x C, broadcast); ``memory``/``memory_pos``:
    B x K x C_mem; ``key_valid``: B x K bool or None. Returns B x HW x C. Pure tensor code on the model's
    submodules, so it can be ``torch.compile``d.
    """
    b = memory.shape[0]
    output = current + 0.1 * current_pos
    output = output.expand(-1, b, -1).transpose(0, 1)  # batch first: B x HW x C
    keys = memory.unsqueeze(1)  # B x 1 x K x C_mem
    keys_pos = memory_pos.unsqueeze(1)
    bias = None
    if key_valid is not None:
        bias = torch.zeros(key_valid.shape, dtype=torch.float32, device=key_valid.device)
        bias = bias.masked_fill(~key_valid, float("-inf"))[:, None, None, :]  # B x 1 x 1 x K
    rope = memory_attention.rotary_emb(output, memory_attention.position_ids)
    queries = output.unsqueeze(1)  # B x 1 x HW x C
    for layer in memory_attention.layers:
        q = layer.layer_norm1(queries)
        q, _ = layer.self_attn(query=q, key=q, value=q, position_embeddings=rope)
        queries = queries + layer.dropout1(q)
        q = layer.layer_norm2(queries)
        q = _masked_rope_attention(layer.cross_attn_image, q, keys + keys_pos, keys, rope, num_pointer_tokens, bias)
        queries = queries + layer.dropout2(q)
        q = layer.layer_norm3(queries)
        q = layer.linear2(layer.dropout(layer.activation(layer.linear1(q))))
        queries = queries + layer.dropout3(q)
    return memory_attention.layer_norm(queries)[:, 0]


#: signature of ``masked_memory_attention`` (or its compiled version)
AttentionCore = Callable[..., torch.Tensor]


def attend_objects(model: nn.Module, current: torch.Tensor, current_pos: torch.Tensor, pos_mem: torch.Tensor,
                   objects: Sequence[ObjectMemories], max_pointers: int, *,
                   amp: Callable[[], AbstractContextManager] = nullcontext,
                   core: AttentionCore = masked_memory_attention, buckets: Buckets | None = None) -> torch.Tensor:
    """Memory-conditioned features for every object in one memory-attention call: B x C x h x w (float32).

    ``current``/``current_pos``: the frame's top-level features and positional encoding, HW x 1 x C;
    ``amp``: the caller's autocast context (entered for the attention only; the memory layout and pointer
    encodings are computed in float32, as transformers does before its memory-attention call).
    """
    packed = pack_memories(model, pos_mem, objects, max_pointers, buckets)
    with amp():
        fused = core(model.memory_attention, current, current_pos, packed.memory, packed.pos, packed.key_valid,
                     packed.num_pointer_tokens)
    n = packed.num_objects
    h, w = model.backbone_feature_sizes[-1]
    return fused[:n].float().transpose(1, 2).reshape(n, model.hidden_dim, h, w)


__all__ = ["AttentionCore", "Buckets", "ObjectMemories", "PackedMemory", "attend_objects", "masked_memory_attention",
           "pack_memories"]
