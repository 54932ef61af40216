"""Input builders shared by the op and kernel tests (random and edge cases)."""

from __future__ import annotations

import torch


def level_inputs(shapes: list[tuple[int, int]], batch: int, queries: int, heads: int, dim: int, points: int,
                 seed: int = 0, spread: float = 0.3) -> tuple[torch.Tensor, ...]:
    """Random deformable-attention inputs; locations spill ``spread`` outside [0, 1] on both sides."""
    g = torch.Generator().manual_seed(seed)
    ss = torch.tensor(shapes, dtype=torch.int64)
    areas = ss[:, 0] * ss[:, 1]
    starts = torch.cat([torch.zeros(1, dtype=torch.int64), areas.cumsum(0)[:-1]])
    tokens = int(areas.sum())
    levels = len(shapes)
    value = torch.randn(batch, tokens, heads, dim, generator=g)
    loc = torch.rand(batch, queries, heads, levels, points, 2, generator=g) * (1 + 2 * spread) - spread
    weights = torch.rand(batch, queries, heads, levels, points, generator=g).softmax(-1)
    return value, ss, starts, loc, weights


def mask_batch(n: int, h: int, w: int, density: float = 0.5, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, h, w, generator=g) < density


def blob_masks(n: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    """Masks made of a few random rectangles (realistic runs and components, unlike pixel noise)."""
    g = torch.Generator().manual_seed(seed)
    out = torch.zeros(n, h, w, dtype=torch.bool)
    for i in range(n):
        for _ in range(int(torch.randint(1, 5, (1,), generator=g))):
            y0, x0 = int(torch.randint(0, h, (1,), generator=g)), int(torch.randint(0, w, (1,), generator=g))
            y1 = y0 + int(torch.randint(1, h - y0 + 1, (1,), generator=g))
            x1 = x0 + int(torch.randint(1, w - x0 + 1, (1,), generator=g))
            out[i, y0:y1, x0:x1] = True
    return out
