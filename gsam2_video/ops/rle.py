"""COCO run-length encoding of every track of a frame, straight from its label map.

tracks.json (YouTube-VIS) and mots.txt store one COCO RLE per visible track per frame. The pipeline already
holds the frame as one H x W label map (track id per pixel), so instead of building a binary mask per track
and encoding each (K passes over the frame, and K full-size masks copied to the host on a GPU), the label
map is scanned once in COCO's column-major order for the positions where the label changes. Each change
ends a run of the old label and starts one of the new: the run lengths of track ``i`` are the gaps between
the changes that involve ``i``. Only those few changes (with the labels on each side) leave the device.

* CUDA tensors with CuPy: ``cuda/rle.cu`` flags the changes in one pass, torch compacts them on the device,
  and one small copy brings them to the host;
* other devices (or CUDA without CuPy): the same scan in torch on the device;
* CPU: numpy, comparing each pixel with its column-major predecessor through two
  contiguous slices (no transposed copy); with each track's box given (what the writers have), only the
  boxes are read and their runs placed in the full column-major scan by arithmetic;
* then pycocotools compresses the run lengths (``frPyObjects``), so the result is byte-identical to
  ``pycocotools.mask.encode(np.asfortranarray(labels == i))``: the form every COCO reader expects.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import torch
from pycocotools import mask as mask_utils

from ..errors import ModelError
from ._dispatch import dispatch

OP = "rle"  # the name kernel records count this op under
_LABEL_DTYPES = (torch.uint8, torch.uint16, torch.int16, torch.int32, torch.int64)


def _check_labels(labels: torch.Tensor | np.ndarray) -> torch.Tensor:
    if isinstance(labels, np.ndarray):
        labels = torch.from_numpy(np.ascontiguousarray(labels))
    if not isinstance(labels, torch.Tensor) or labels.dim() != 2 or labels.dtype not in _LABEL_DTYPES:
        got = f"{labels.dtype} {tuple(labels.shape)}" if isinstance(labels, torch.Tensor) else type(labels).__name__
        raise ModelError(f"label map must be an H x W integer tensor (uint8/uint16/int32), got {got}")
    return labels


def changes_reference(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(positions, label before, label after) of every column-major label change, positions ascending.

    Position 0 is always listed, with -1 before it: the run of whatever label the first pixel has starts
    there. In column-major order pixel (y, x) follows (y - 1, x) and (0, x) follows (H - 1, x - 1).
    """
    h, w = labels.shape
    if h * w == 0:
        empty = np.zeros(0, np.int64)
        return empty, empty, empty
    flat = np.ascontiguousarray(labels).reshape(-1)
    idx = np.flatnonzero(flat[w:] != flat[:-w]) + w  # row-major index of a pixel differing from the one above
    ys, xs = np.divmod(idx, w)
    (wx,) = np.nonzero(labels[0, 1:] != labels[h - 1, :-1])  # change at (0, wx + 1)
    pos = np.concatenate([[0], xs * h + ys, (wx + 1) * h]).astype(np.int64)
    before = np.concatenate([[-1], flat[idx - w], labels[h - 1, wx]]).astype(np.int64)
    after = np.concatenate([[labels[0, 0]], flat[idx], labels[0, wx + 1]]).astype(np.int64)
    order = np.argsort(pos, kind="stable")
    return pos[order], before[order], after[order]


def run_lengths_from_changes(pos: np.ndarray, before: np.ndarray, after: np.ndarray, pixels: int,
                             ids: np.ndarray) -> list[list[int]]:
    """COCO run lengths (starting with a possibly empty background run) of ``labels == i`` for each id."""
    keys = np.concatenate([before, after])
    at = np.concatenate([pos, pos])
    keep = np.isin(keys, ids)
    keys, at = keys[keep], at[keep]
    order = np.lexsort((at, keys))  # by id, then position
    keys, at = keys[order], at[order]
    lo = np.searchsorted(keys, ids, side="left")
    hi = np.searchsorted(keys, ids, side="right")
    return [np.diff(np.concatenate([[0], at[a:b], [pixels]])).tolist() for a, b in zip(lo, hi)]


def change_flags_reference(labels: torch.Tensor) -> torch.Tensor:
    """H*W uint8, 1 where the column-major label changes (and at 0): what ``cuda/rle.cu`` computes.

    Torch on the labels' device: the path for CUDA label maps without the kernel, and the kernel's oracle.
    """
    col = labels.t().reshape(-1)
    if col.dtype == torch.uint16:
        col = col.view(torch.int16)
    flags = torch.ones(col.shape, dtype=torch.uint8, device=labels.device)
    flags[1:] = (col[1:] != col[:-1]).to(torch.uint8)
    return flags


def _sides(labels: torch.Tensor, pos: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(label before, label after) each column-major position in ``pos`` (int64 on the labels' device; the
    label "before" position 0 is the pixel itself, callers mark it)."""
    h, w = labels.shape
    flat = labels.reshape(-1)
    if flat.dtype == torch.uint16:  # gather on the bit pattern (index ops on uint16 are sparse in torch)
        flat = flat.view(torch.int16)
    after = flat[(pos % h) * w + pos // h].to(torch.int64)
    prev = (pos - 1).clamp_min(0)
    before = flat[(prev % h) * w + prev // h].to(torch.int64)
    if labels.dtype == torch.uint16:
        after, before = after & 0xFFFF, before & 0xFFFF
    return before, after


def changes_on_device(labels: torch.Tensor, flags: torch.Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Compact column-major change flags (H*W uint8, from the kernel) into host arrays, one copy.

    The gathers run on the labels' device; only (K, 3) int64 travels, K = number of changes.
    """
    pos = torch.nonzero(flags).squeeze(1)  # ascending
    before, after = _sides(labels, pos)
    before = torch.where(pos == 0, torch.full_like(before, -1), before)
    host = torch.stack([pos, before, after]).cpu().numpy()
    return host[0], host[1], host[2]


def label_changes_packed(labels: torch.Tensor, capacity: int) -> torch.Tensor:
    """The column-major label changes of ``labels`` as one int32 tensor on its device, without a host sync:
    ``[count, pos[capacity], before[capacity], after[capacity]]`` (what :func:`unpack_changes` reads).

    Why fixed capacity: the number of changes is only known on the device, and asking the host for it
    would be a synchronisation per frame. ``nonzero_static`` fills a buffer of known size instead, so the
    changes can ride in the frame's single device-to-host copy beside the label map; ``count`` above
    ``capacity`` means the buffer overflowed (the caller encodes that frame from the host label map and
    grows the capacity). Flags come from ``cuda/rle.cu`` on CUDA with CuPy, from the torch reference
    elsewhere.
    """
    labels = _check_labels(labels)
    h, w = labels.shape
    if capacity < 1:
        raise ModelError(f"label change capacity must be >= 1, got {capacity}")
    out = torch.zeros(1 + 3 * capacity, dtype=torch.int32, device=labels.device)
    if h * w == 0:
        return out
    if dispatch(OP, labels):
        from ..kernels.rle import label_changes_cuda

        flags = label_changes_cuda(labels)
    else:
        flags = change_flags_reference(labels)
    pos = torch.nonzero_static(flags, size=capacity, fill_value=0).reshape(-1)
    before, after = _sides(labels, pos)
    out[0] = flags.sum(dtype=torch.int32)
    out[1:1 + capacity] = pos.to(torch.int32)
    out[1 + capacity:1 + 2 * capacity] = before
    out[1 + 2 * capacity:] = after
    return out


def unpack_changes(packed: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Host side of :func:`label_changes_packed`: (positions, label before, label after) as
    :func:`changes_reference` gives them, or None when the device buffer overflowed."""
    capacity = (len(packed) - 1) // 3
    count = int(packed[0])
    if count > capacity:
        return None
    pos = packed[1:1 + count].astype(np.int64)
    before = packed[1 + capacity:1 + capacity + count].astype(np.int64)
    after = packed[1 + 2 * capacity:1 + 2 * capacity + count].astype(np.int64)
    if count:
        before[0] = -1  # position 0 starts the first run; nothing precedes it
    return pos, before, after


def rle_from_changes(changes: tuple[np.ndarray, np.ndarray, np.ndarray], track_ids: Sequence[int] | np.ndarray,
                     height: int, width: int) -> list[dict]:
    """COCO RLE of each id from a label map's column-major changes (:func:`unpack_changes`), byte-identical
    to encoding ``labels == i``; host work proportional to the number of changes, not to the frame."""
    ids = _ids(track_ids)
    if len(ids) == 0:
        return []
    runs = run_lengths_from_changes(*changes, height * width, ids)
    return mask_utils.frPyObjects([{"size": [height, width], "counts": r} for r in runs], height, width)


def _ids(track_ids: Sequence[int] | np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(track_ids, torch.Tensor):
        track_ids = track_ids.detach().cpu().numpy()
    ids = np.asarray(track_ids, dtype=np.int64).reshape(-1)
    if len(np.unique(ids)) != len(ids):
        raise ModelError(f"track ids for RLE must be unique, got {ids.tolist()}")
    return ids


def rle_from_label_map(labels: torch.Tensor | np.ndarray,
                       track_ids: Sequence[int] | np.ndarray | torch.Tensor,
                       boxes_xywh: np.ndarray | None = None) -> list[dict]:
    """COCO RLE of ``labels == i`` for each id, in the order given: ``[{"size": [H, W], "counts": bytes}]``.

    Byte-identical to ``pycocotools.mask.encode(np.asfortranarray(labels == i))``; an id absent from the
    map gets the all-background RLE. ``labels`` is an H x W uint8/uint16/int32 tensor (any device) or
    numpy array; only run arrays reach the host from a CUDA label map. ``boxes_xywh`` (K x 4, each id's
    tight, non-empty box) lets a host label map be encoded from the boxes alone (box-sized work per id,
    no full-frame scan): what the writers do with the frame's host copy.
    """
    labels = _check_labels(labels)
    ids = _ids(track_ids)
    if len(ids) == 0:
        return []
    h, w = labels.shape
    if h * w and dispatch(OP, labels):
        from ..kernels.rle import label_changes_cuda

        pos, before, after = changes_on_device(labels, label_changes_cuda(labels))
    elif h * w and labels.device.type != "cpu":  # no kernel: the same scan in torch, still on the device
        pos, before, after = changes_on_device(labels, change_flags_reference(labels))
    elif boxes_xywh is not None:
        host = labels.detach().numpy()
        runs = [_box_runs(_box_transposed(host, x0, y0, bw, bh), tid, h, w, x0, y0)
                for tid, (x0, y0, bw, bh) in zip(ids.tolist(), np.asarray(boxes_xywh, np.int64).reshape(-1, 4).tolist())]
        return mask_utils.frPyObjects([{"size": [h, w], "counts": r} for r in runs], h, w)
    else:
        pos, before, after = changes_reference(labels.detach().numpy())
    runs = run_lengths_from_changes(pos, before, after, h * w, ids)
    return mask_utils.frPyObjects([{"size": [h, w], "counts": r} for r in runs], h, w)


def _box_transposed(labels: np.ndarray, x0: int, y0: int, bw: int, bh: int) -> np.ndarray:
    """The box's labels transposed (bw x bh, C-contiguous: the box in column-major scan order)."""
    box = labels[y0:y0 + bh, x0:x0 + bw]
    if box.dtype in (np.uint8, np.uint16, np.int32):
        return cv2.transpose(np.ascontiguousarray(box))  # OpenCV's blocked transpose where it has the dtype
    return np.ascontiguousarray(box.T)


def _box_runs(box_t: np.ndarray, tid: int, h: int, w: int, x0: int, y0: int) -> list[int]:
    """Uncompressed COCO counts of the mask ``label == tid`` of an H x W label map that holds no ``tid``
    outside one box; ``box_t`` is the box's labels transposed (bw x bh, C-contiguous: the column-major scan
    of the box), its corner at x0, y0.

    Foreground runs are found in the box alone and placed in the full column-major scan by arithmetic: a run
    may continue into the next column only when the box spans the full height; otherwise every column is
    closed by one background sentinel so no run crosses it. Work is proportional to the box, not to H.
    """
    bw, bh = box_t.shape
    step = bh if bh == h else bh + 1
    flat = np.zeros((bw, step), bool)
    np.equal(box_t, tid, out=flat[:, :bh])
    flat = flat.reshape(-1)
    edges = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    if flat[0]:
        edges = np.concatenate(([0], edges))
    if flat[-1]:
        edges = np.concatenate((edges, [flat.size]))
    col, row = np.divmod(edges, step)
    pos = (x0 + col) * h + y0 + row  # run starts and ends (alternating) in the full column-major scan
    runs = np.diff(np.concatenate(([0], pos, [h * w]))).tolist()
    if runs[-1] == 0:
        runs.pop()  # the mask ends on the frame's last pixel: no trailing background run
    return runs
