"""Plug any detector into the tracker: here, ground-truth boxes from a MOT-format file (re-labelling).

    python examples/custom_detector.py VIDEO GT.txt [--sam2 ID|PATH] [--max-frames N] [--out DIR]

The tracker asks a detector for one thing: ``detect(image, prompt, frame_index=...)`` returning
``gsam2_video.Detections`` (xyxy pixel boxes, scores in [0, 1], class ids indexing ``prompt.classes``); see
``gsam2_video.protocols.Detector``. Any object with that method works, no base class needed. This one reads
MOT-challenge ground truth (``frame,id,x,y,w,h,...``, frames counted from 1) and returns the boxes of the frame
it is asked about, so SAM 2 turns annotated boxes into per-frame masks with consistent track ids.

Other detectors fit the same shape, for example:

* OWLv2 needs no adapter: ``Tracker.from_pretrained(detector="google/owlv2-base-patch16-ensemble")``;
* a YOLO model (ultralytics): in ``detect``, run ``model(image[..., ::-1], verbose=False)[0]`` and return
  ``Detections(r.boxes.xyxy.cpu().numpy(), r.boxes.conf.cpu().numpy(), class ids mapped to the prompt)``.

Ground truth has no confidence, so every box scores 1.0: each one confirms its track at once
(``confirm_score``) and the low-score stage never applies.
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

from gsam2_video import Detections, Tracker
from gsam2_video.prompts import Prompt


class GroundTruthDetector:
    """Replays MOT-format boxes by frame index; every box is class 0 (the prompt's first class)."""

    def __init__(self, boxes: dict[int, np.ndarray]) -> None:
        self.boxes = boxes  # frame index (0-based) -> N x 4 xyxy

    @classmethod
    def from_mot(cls, path: Path) -> GroundTruthDetector:
        """Read ``frame,id,x,y,w,h,...`` rows (frames from 1); rows with non-positive size are skipped."""
        by_frame: dict[int, list[list[float]]] = defaultdict(list)
        for n, line in enumerate(Path(path).read_text().splitlines(), 1):
            if not line.strip():
                continue
            try:
                f, _tid, x, y, w, h = (float(v) for v in line.split(",")[:6])
            except ValueError:
                raise ValueError(f"{path}:{n}: expected frame,id,x,y,w,h,... got {line!r}") from None
            if w > 0 and h > 0:
                by_frame[int(f) - 1].append([x, y, x + w, y + h])
        return cls({f: np.asarray(b, np.float32) for f, b in by_frame.items()})

    def detect(self, image: np.ndarray, prompt: Prompt, frame_index: int | None = None) -> Detections:
        boxes = self.boxes.get(int(frame_index) if frame_index is not None else -1)
        if boxes is None or not len(boxes):
            return Detections.empty()
        h, w = image.shape[:2]
        boxes = np.clip(boxes, 0, [w, h, w, h])
        n = len(boxes)
        return Detections(boxes, np.ones(n, np.float32), np.zeros(n, np.int64), [prompt.classes[0]] * n)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("video")
    parser.add_argument("gt", type=Path, help="MOT-format ground truth: frame,id,x,y,w,h,...")
    parser.add_argument("--prompt", default="person.", help="class name the boxes get (default person.)")
    parser.add_argument("--sam2", default="facebook/sam2.1-hiera-tiny")
    parser.add_argument("--max-frames", type=int, default=None)
    parser.add_argument("--out", type=Path, default=Path("example_out"))
    args = parser.parse_args()
    try:
        detector = GroundTruthDetector.from_mot(args.gt)
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    from gsam2_video.models.propagator import Sam2Propagator

    tracker = Tracker(detector, Sam2Propagator.from_pretrained(args.sam2, device="auto"))
    args.out.mkdir(parents=True, exist_ok=True)
    with tracker.track(args.video, args.prompt, max_frames=args.max_frames) as run:
        for result in run:
            np.save(args.out / f"{result.frame_index:05d}.npy", result.label_map(np.uint16))
    print(f"{run.stats.frames_emitted} frames, {run.stats.tracks_created} tracks -> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
