"""Turn per-object mask logits into the non-overlapping masks and boxes a FrameResult carries.

SAM 2 predicts each object independently, so two objects can claim the same pixel. Every output format the
field uses (DAVIS palette PNGs, MOTS) needs one owner per pixel; like SAM 2's own non-overlap constraint we
give a contested pixel to the object with the highest logit.
"""

from __future__ import annotations

import torch


def non_overlapping_masks(logits: torch.Tensor, threshold: float = 0.0) -> torch.Tensor:
    """N x H x W logits -> N x H x W bool masks where each pixel belongs to at most one object."""
    if logits.ndim != 3:
        raise ValueError(f"expected N x H x W logits, got shape {tuple(logits.shape)}")
    fg = logits > threshold
    n, h, w = logits.shape
    if n <= 1:
        return fg
    contested = fg.sum(dim=0, dtype=torch.uint8 if n < 256 else torch.int32) > 1  # int64 sums: 17x slower
    count = int(contested.sum())
    if not count:
        return fg
    # Only contested pixels need a winner. Few of them (the usual case): gather and argmax just those. Many
    # (objects overlapping a lot): gathering costs ~16x more per pixel than a running maximum over whole
    # contiguous frames (46 vs 4.9 ms for 2 objects at 768x576), so keep a per-pixel winner instead. Both
    # give a pixel to its highest logit, ties to the lower index (argmax's rule); a pixel only one object
    # claims keeps it either way, since every other object's logit there is at most the threshold.
    if count * 16 < h * w:
        ys, xs = torch.nonzero(contested, as_tuple=True)
        winner = logits[:, ys, xs].argmax(dim=0)
        fg[:, ys, xs] &= torch.arange(n, device=logits.device).view(-1, 1) == winner.view(1, -1)
        return fg
    best = logits[0].clone()
    owner = torch.zeros((h, w), dtype=torch.int32, device=logits.device)
    for i in range(1, n):
        owner.masked_fill_(logits[i] > best, i)
        torch.maximum(best, logits[i], out=best)
    fg &= owner.unsqueeze(0) == torch.arange(n, dtype=owner.dtype, device=logits.device).view(-1, 1, 1)
    return fg


def masks_to_boxes(masks: torch.Tensor) -> torch.Tensor:
    """N x H x W bool -> N x 4 float32 tight xyxy boxes (pixel edges: x2 = last column + 1); empty -> zeros."""
    n, h, w = masks.shape
    if n == 0:
        return torch.zeros((0, 4), dtype=torch.float32, device=masks.device)
    rows = masks.any(dim=2)  # N x H
    cols = masks.any(dim=1)  # N x W
    present = rows.any(dim=1)
    ys = torch.arange(h, device=masks.device)
    xs = torch.arange(w, device=masks.device)
    big = torch.iinfo(torch.int64).max
    y1 = torch.where(rows, ys, big).min(dim=1).values
    y2 = torch.where(rows, ys, -1).max(dim=1).values + 1
    x1 = torch.where(cols, xs, big).min(dim=1).values
    x2 = torch.where(cols, xs, -1).max(dim=1).values + 1
    boxes = torch.stack([x1, y1, x2, y2], dim=1).to(torch.float32)
    return torch.where(present[:, None], boxes, torch.zeros_like(boxes))
