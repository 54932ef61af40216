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


def clip_label_maps(videos_dir, ids: tuple[int, ...], frames_per_clip: int = 1) -> list:
    """H x W label maps cut from the shared clips' real frames: grey-level bands become track ids.

    Real images give irregular regions, holes and ragged borders (long and short runs in every column), so
    the RLE of each id is a realistic stress case. ``ids[0]`` is background; dtype follows the largest id.
    """
    import av
    import numpy as np

    top = max(ids)
    dtype = np.uint8 if top <= 0xFF else np.uint16 if top <= 0xFFFF else np.int32
    table = np.asarray(ids, dtype=dtype)
    maps = []
    for path in sorted(videos_dir.iterdir()):
        with av.open(str(path)) as container:
            for _, frame in zip(range(frames_per_clip), container.decode(video=0)):
                grey = frame.to_ndarray(format="gray")
                maps.append(table[(grey.astype(np.int64) * len(ids)) // 256])
    return maps
