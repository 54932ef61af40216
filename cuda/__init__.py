"""CUDA kernel sources of gsam2-video, installed as the data package ``gsam2_video._cuda``.

Nothing to import: the ``.cu``/``.cuh``/``.h`` files are read by ``gsam2_video.kernels.sources``.
"""
