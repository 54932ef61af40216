"""Live-run options and outputs: stream timeouts, ``--jsonl`` results, ``--stream-out`` re-encoding and the
``--preview`` MJPEG page. Each output is an ordinary :class:`~gsam2_video.sinks.Sink`, so it runs on the
writer thread and is closed, like every other output, however the run ends."""
