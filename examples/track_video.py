"""Track text-specified objects in a video file and save palette masks and a supervision-annotated copy.

    python examples/track_video.py VIDEO "person. car." [--detector ID|PATH] [--sam2 ID|PATH]

Prints one line per keyframe with the live track ids; writes masks/00000.png ... into ./example_out.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from gsam2_video import Tracker
from gsam2_video.sinks.davis import davis_palette


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("video")
    parser.add_argument("prompt")
    parser.add_argument("--detector", default="IDEA-Research/grounding-dino-tiny")
    parser.add_argument("--sam2", default="facebook/sam2.1-hiera-tiny")
    parser.add_argument("--max-frames", type=int, default=None)
    parser.add_argument("--out", type=Path, default=Path("example_out"))
    args = parser.parse_args()

    tracker = Tracker.from_pretrained(detector=args.detector, sam2=args.sam2, device="auto")
    (args.out / "masks").mkdir(parents=True, exist_ok=True)
    with tracker.track(args.video, args.prompt, detect_every=10, max_frames=args.max_frames) as run:
        for result in run:
            labels = result.label_map(np.uint8)  # track id per pixel, 0 = background
            png = Image.fromarray(labels, mode="P")
            png.putpalette(davis_palette())
            png.save(args.out / "masks" / f"{result.frame_index:05d}.png")
            if result.is_keyframe:
                tracks = ", ".join(f"{t}:{n}" for t, n in zip(result.track_ids, result.class_names))
                print(f"frame {result.frame_index}: {tracks or 'no objects'}")
    print(f"{run.stats.frames_emitted} frames -> {args.out}/masks")


if __name__ == "__main__":
    main()
