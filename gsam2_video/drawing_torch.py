"""The drawing overlay (mask blend + outlines) on torch tensors, for building it on the GPU.

Why: with video output on, the pipeline would otherwise copy the frame to the host and blend there. Built on
the device right after the label map is composed, the overlay costs a few elementwise kernels and the host
receives the finished picture in the frame's single copy; only boxes and captions (a few small rectangles,
:func:`gsam2_video.drawing.draw_boxes_and_captions`) are drawn on the host afterwards.

Same picture as :func:`gsam2_video.drawing.overlay` (tested equal on CPU tensors, up to one grey level where
float rounding of the blend differs): colours from :func:`~gsam2_video.drawing.track_color`, pixel blend
``rint((1 - alpha) * image + alpha * colour)``, outlines = label pixels whose 4-neighbourhood holds another id
(the frame border counts as background), widened by a square max filter of
:func:`~gsam2_video.drawing.outline_kernel_size`, the higher-scoring track on top where outlines meet.

No host synchronisation: the colour and rank tables are built from the track ids the host already knows
(a few bytes, copied from pinned memory without blocking); scores may be a device tensor.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from .drawing import outline_kernel_size, track_color
from .upload import upload_small


def overlay_torch(image: torch.Tensor, labels: torch.Tensor, track_ids: Sequence[int],
                  scores: torch.Tensor | Sequence[float], *, alpha: float = 0.5, thickness: int = 1,
                  outlines: bool = True) -> torch.Tensor:
    """``image`` (H x W x 3 uint8 RGB) with the tracks of ``labels`` (H x W integer label map, same device)
    blended in and outlined; a new H x W x 3 uint8 tensor on the same device.

    ``track_ids`` (host ints) and ``scores`` (one per track, host or device) list the tracks in the frame;
    label values not among them are left undrawn.
    """
    if image.dtype != torch.uint8 or image.dim() != 3 or image.shape[2] != 3:
        raise ValueError(f"overlay_torch() needs an H x W x 3 uint8 image, got {tuple(image.shape)} {image.dtype}")
    if labels.shape != image.shape[:2]:
        raise ValueError(f"overlay_torch(): labels are {tuple(labels.shape)}, image is {tuple(image.shape[:2])}")
    ids = [int(t) for t in track_ids]
    if not ids:
        return image.clone()
    device = image.device
    size = max(ids) + 1
    palette = upload_small(torch.tensor([track_color(t) for t in ids], dtype=torch.uint8), device)
    id_index = upload_small(torch.tensor(ids, dtype=torch.long), device)
    score_t = (scores.to(device) if isinstance(scores, torch.Tensor)
               else upload_small(torch.tensor(list(scores), dtype=torch.float32), device)).reshape(-1)
    if score_t.numel() != len(ids):
        raise ValueError(f"overlay_torch(): {len(ids)} track ids but {score_t.numel()} scores")
    colors = torch.zeros(size, 3, dtype=torch.uint8, device=device)
    colors[id_index] = palette
    present = torch.zeros(size, dtype=torch.bool, device=device)
    present[id_index] = True
    lab = labels.long()
    lab = torch.where((lab > 0) & (lab < size), lab, torch.zeros_like(lab))
    lab = torch.where(present[lab], lab, torch.zeros_like(lab))  # ids not in the frame: background
    known = lab > 0
    paint = colors[lab]
    blended = ((1.0 - alpha) * image.float() + alpha * paint.float()).round_().clamp_(0, 255).to(torch.uint8)
    out = torch.where(known[..., None], blended, image)
    if not outlines:
        return out
    order = torch.argsort(score_t.float(), stable=True)
    ranks = torch.empty(len(ids), dtype=torch.long, device=device)
    ranks[order] = torch.arange(1, len(ids) + 1, device=device)
    rank_of_id = torch.zeros(size, dtype=torch.long, device=device)
    rank_of_id[id_index] = ranks
    rank_colors = torch.zeros(len(ids) + 1, 3, dtype=torch.uint8, device=device)
    rank_colors[ranks] = palette
    border = F.pad(lab[None], (1, 1, 1, 1))[0]  # outside the frame is background
    edge = known & ((border[:-2, 1:-1] != lab) | (border[2:, 1:-1] != lab)
                    | (border[1:-1, :-2] != lab) | (border[1:-1, 2:] != lab))
    edge_rank = torch.where(edge, rank_of_id[lab], torch.zeros_like(lab))
    k = outline_kernel_size(thickness)
    if k > 1:  # ranks are small integers: exact in float32
        edge_rank = F.max_pool2d(edge_rank[None, None].float(), k, stride=1, padding=k // 2)[0, 0].long()
    return torch.where((edge_rank > 0)[..., None], rank_colors[edge_rank], out)

