"""Blocked bf16 memory attention (ops.cpu_attention): same numbers as transformers' eager attention, used
only where it was measured to win, and wired into the propagator only for bf16 runs on CPU."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.models.sam2_video.modeling_sam2_video import Sam2VideoRoPEAttention, eager_attention_forward

from gsam2_video.config import PropagatorConfig
from gsam2_video.models.propagator import Sam2Propagator
from gsam2_video.ops import cpu_attention
from gsam2_video.ops.cpu_attention import ATTENTION_NAME, eager_attention_blocks, memory_attention_forward

BOX = (30.0, 20.0, 150.0, 200.0)


def qkv(b: int, h: int, lq: int, lk: int, d: int, dtype: torch.dtype, seed: int = 0) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(b, h, n, d, generator=g).to(dtype) for n in (lq, lk, lk))


class _Stub(torch.nn.Module):
    """What transformers' eager function reads from its module."""

    num_key_value_groups = 1
    training = False


@pytest.fixture(scope="module")
def rope_module(tiny_models: dict[str, Path]) -> torch.nn.Module:
    from transformers import Sam2VideoModel

    model = Sam2VideoModel.from_pretrained(str(tiny_models["sam2"]))
    module = model.memory_attention.layers[0].cross_attn_image
    assert isinstance(module, Sam2VideoRoPEAttention)
    return module


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
@pytest.mark.parametrize("lq, block", [(300, 128), (256, 256), (5, 256)])
def test_blocks_equal_transformers_eager_attention(dtype: torch.dtype, lq: int, block: int) -> None:
    """Row blocks change nothing per row: the result is transformers' eager attention (to the last bit in
    fp32, within one bf16 rounding in bf16), and close to fp32 SDPA."""
    q, k, v = qkv(3, 2, lq, 700, 64, dtype)
    scale = 64 ** -0.5
    ours = eager_attention_blocks(q, k, v, scale, block_rows=block)
    ref, _ = eager_attention_forward(_Stub(), q, k, v, None, scaling=scale)  # B x L x H x D
    ref = ref.transpose(1, 2)
    assert ours.dtype == dtype and ours.shape == ref.shape
    tol = {"rtol": 0, "atol": 1e-6} if dtype == torch.float32 else {"rtol": 2 ** -7, "atol": 2 ** -12}
    torch.testing.assert_close(ours, ref, **tol)
    exact = F.scaled_dot_product_attention(q.float(), k.float(), v.float())
    assert float((ours.float() - exact).abs().max()) < (1e-5 if dtype == torch.float32 else 2e-2)


def test_forward_takes_the_blocked_path_only_where_it_wins(rope_module: torch.nn.Module,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[int, ...]] = []
    real = cpu_attention.eager_attention_blocks

    def spy(q: torch.Tensor, *a: object, **kw: object) -> torch.Tensor:
        calls.append(tuple(q.shape))
        return real(q, *a, **kw)

    monkeypatch.setattr(cpu_attention, "eager_attention_blocks", spy)
    many = cpu_attention.MIN_KEYS + 40
    q, k, v = qkv(2, 1, 64, many, 32, torch.bfloat16)
    out, weights = memory_attention_forward(rope_module, q, k, v, None, scaling=0.2)
    assert calls == [(2, 1, 64, 32)] and weights is None
    assert out.shape == (2, 64, 1, 32) and out.is_contiguous()  # B x L x H x D like every attention function
    expected, _ = sdpa_attention_forward(rope_module, q, k, v, None, scaling=0.2)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-2)  # two bf16 roundings of outputs ~0.05

    def untouched(module: torch.nn.Module, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                  mask: torch.Tensor | None = None, **kw: object) -> None:
        out, _ = memory_attention_forward(module, q, k, v, mask, scaling=0.2, **kw)
        ref, _ = sdpa_attention_forward(module, q, k, v, mask, scaling=0.2, **kw)
        assert torch.equal(out, ref)  # the SDPA path itself, not a look-alike

    untouched(rope_module, *qkv(2, 1, 64, many, 32, torch.float32))  # fp32: the parity path
    untouched(rope_module, *qkv(2, 1, 64, cpu_attention.MIN_KEYS - 1, 32, torch.bfloat16))  # too few keys
    untouched(rope_module, *qkv(1, 1, 8, many, 32, torch.bfloat16), torch.zeros(1, 1, 8, many, dtype=torch.bfloat16))
    untouched(_Stub(), *qkv(1, 1, 8, many, 32, torch.bfloat16))  # not SAM 2's memory attention
    assert len(calls) == 1


def _run(prop: Sam2Propagator, frames: list[np.ndarray], n: int) -> list[np.ndarray]:
    h, w = frames[0].shape[:2]
    prop.reset(h, w)
    masks = []
    for i, frame in enumerate(frames[:n]):
        feats = prop.encode(frame, i)
        prop.propagate(feats)
        if i == 0:
            prop.add_object(1, feats, box=BOX)
        masks.append((prop.commit(feats).logits[0] > 0).numpy())
    return masks


def test_propagator_uses_it_for_bf16_on_cpu_only(tiny_models: dict[str, Path], tree_frames: list[np.ndarray],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """fp32 sessions keep SDPA everywhere; a bf16 session routes only the memory attention, and its masks
    match the same bf16 session on SDPA."""
    sam = str(tiny_models["sam2"])
    fp32 = Sam2Propagator.from_pretrained(sam, PropagatorConfig(), device="cpu", dtype="fp32")
    assert fp32.model.config._attn_implementation == "sdpa"
    monkeypatch.setattr(cpu_attention, "MIN_KEYS", 0)  # the tiny model's memories are shorter than the cut-off
    bf16 = Sam2Propagator.from_pretrained(sam, PropagatorConfig(), device="cpu", dtype="bf16")
    cfg = bf16.model.config
    assert cfg._attn_implementation == ATTENTION_NAME
    assert cfg.vision_config._attn_implementation == cfg.mask_decoder_config._attn_implementation == "sdpa"
    calls: list[int] = []
    real = cpu_attention.eager_attention_blocks
    monkeypatch.setattr(cpu_attention, "eager_attention_blocks", lambda *a, **kw: calls.append(1) or real(*a, **kw))
    blocked = _run(bf16, tree_frames, 8)
    expected_calls = 7 * 2 * bf16.model.config.memory_attention_num_layers  # self + cross, 7 tracked frames
    assert len(calls) == expected_calls
    _run(fp32, tree_frames, 4)
    assert len(calls) == expected_calls  # fp32 never enters it, even with no key cut-off
    monkeypatch.setattr(cpu_attention, "MIN_KEYS", 1 << 30)  # same session, SDPA everywhere
    reference = _run(bf16, tree_frames, 8)
    for a, b in zip(blocked, reference):
        union = np.logical_or(a, b).sum()
        assert union == 0 or np.logical_and(a, b).sum() / union > 0.97


def test_an_older_transformers_only_costs_speed(tiny_models: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """If the model cannot switch its attention function, the session runs on SDPA instead of failing."""
    from transformers import Sam2VideoModel

    from gsam2_video.ops.cpu_attention import use_blocked_memory_attention

    model = Sam2VideoModel.from_pretrained(str(tiny_models["sam2"]))

    def refuse(*args: object, **kwargs: object) -> None:
        raise TypeError("set_attn_implementation() takes a str")

    monkeypatch.setattr(model, "set_attn_implementation", refuse)
    assert use_blocked_memory_attention(model) is False
    assert model.config._attn_implementation == "sdpa"
    prop = Sam2Propagator(model, PropagatorConfig(), device="cpu", dtype="bf16")
    assert prop.model.config._attn_implementation == "sdpa"
