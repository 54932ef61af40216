"""SAM 2's image-encoder position encodings, computed once per feature shape instead of on every frame.

Why: the vision neck of transformers' SAM 2 rebuilds a sine position encoding for each of its four FPN
levels on every frame. The encoding depends only on the level's shape, device and dtype, but transformers
memoises it with an LRU cache of size one, which four alternating shapes always miss: every frame pays a
few dozen kernel launches and a full-resolution sin/cos pass for tensors that never change. Here each
shape's encoding is kept for the life of the model (one tensor per FPN level, at the autocast precision),
bit-identical to the recomputed ones. Launches saved, time saved and bytes kept at SAM 2's real size:
benchmarks/README.md, "SAM 2's position encodings".

The cache is per model instance (no module-level state) and bypassed while torch.compile traces the
encoder (``--compile``), where inductor fuses the computation instead. The cached tensors are shared by
every frame, so nothing downstream may modify them in place; tests/test_position_cache.py checks that
they still equal fresh ones after a tracking run.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

#: distinct (shape, device, dtype) keys kept per encoder: four FPN levels at one precision, with room to spare
MAX_ENTRIES = 16


class CachedPositionEncoding(nn.Module):
    """Wraps transformers' ``Sam2SinePositionEmbedding`` (same call signature) and keeps its outputs by shape."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self._cache: dict[tuple[Any, ...], torch.Tensor] = {}

    def forward(self, shape: torch.Size, device: torch.device | str, dtype: torch.dtype,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        if mask is not None or torch.compiler.is_compiling():
            return self.inner(shape, device, dtype, mask)
        key = (tuple(shape), torch.device(device), dtype)
        hit = self._cache.get(key)
        if hit is None:
            if len(self._cache) >= MAX_ENTRIES:
                self._cache.clear()
            hit = self._cache[key] = self.inner(shape, device, dtype)
        return hit

    @property
    def cached_bytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self._cache.values())


def cache_position_encodings(model: nn.Module) -> CachedPositionEncoding | None:
    """Install the cache on ``model``'s vision neck (a ``Sam2VideoModel``); returns it, or None when the
    model has no such neck (then nothing changes). Installing twice keeps the first cache."""
    neck = getattr(getattr(model, "vision_encoder", None), "neck", None)
    inner = getattr(neck, "position_encoding", None)
    if neck is None or inner is None:
        return None
    if isinstance(inner, CachedPositionEncoding):
        return inner
    cached = CachedPositionEncoding(inner)
    neck.position_encoding = cached
    return cached


__all__ = ["CachedPositionEncoding", "cache_position_encodings"]
