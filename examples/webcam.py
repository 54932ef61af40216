"""Live tracking from a webcam or a network stream, drawn in a window.

    python examples/webcam.py 0 "person. cup."            # camera index
    python examples/webcam.py rtsp://host/stream "car."    # any stream URL PyAV can open

Live mode keeps only the newest frame, so a slow model drops frames instead of falling behind; the count of
dropped frames is printed at the end. Press q to quit. Needs an OpenCV build with GUI (opencv-python).
"""

from __future__ import annotations

import argparse

import cv2

from gsam2_video import Tracker
from gsam2_video.drawing import annotate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", help="camera index or stream URL")
    parser.add_argument("prompt")
    parser.add_argument("--detector", default="IDEA-Research/grounding-dino-tiny")
    parser.add_argument("--sam2", default="facebook/sam2.1-hiera-tiny")
    args = parser.parse_args()

    tracker = Tracker.from_pretrained(detector=args.detector, sam2=args.sam2, device="auto")
    with tracker.track(args.source, args.prompt, mode="live", keep_images=True) as run:
        for result in run:
            cv2.imshow("gsam2-video", annotate(result.image, result)[:, :, ::-1])
            if cv2.waitKey(1) & 0xFF == ord("q"):
                break
    print(f"frames: {run.stats.frames_emitted}, dropped by the source: "
          f"{run.source.stats.get('frames_dropped', 0)}")


if __name__ == "__main__":
    main()
