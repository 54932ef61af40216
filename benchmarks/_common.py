"""Helpers shared by the benchmark scripts: machine description, memory probes, random models, frames.

Why one module: every benchmark must print the exact command that produced its JSON, describe the machine
(including its load, since the CPU is shared), measure peak RSS in a fresh process and build the same
random-weight models the same way. Models are saved once per (kind, size, seed) under a cache folder
(``$GSAM2_BENCH_CACHE`` or /tmp/gsam2_bench_models) and loaded back through the package's own loaders,
so the code path is the one users hit with a hub id.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
# the package, and tests/ for the test-side model builders (random_detector, random_sam2, sam2_reference):
# benchmarks build their random-weight models exactly as the tests do, from one place
for _path in (REPO, REPO / "tests"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

VIDEOS = Path(os.environ.get("GSAM2_DATA", REPO.parent / "shared" / "data")) / "videos"
SIZES = ("tiny", "reduced", "real")


def cache_root() -> Path:
    root = Path(os.environ.get("GSAM2_BENCH_CACHE", "/tmp/gsam2_bench_models"))
    root.mkdir(parents=True, exist_ok=True)
    return root


def command_line() -> str:
    """The command that produced this output, runnable from the repository root."""
    script = os.path.relpath(os.path.abspath(sys.argv[0]), REPO)
    return f"cd {REPO} && {shlex.join([sys.executable, script, *sys.argv[1:]])}"


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def machine() -> dict[str, Any]:
    """CPU, cores, memory, software versions and the current load (the cores are shared)."""
    model = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem_gib = round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    import transformers

    return {
        "cpu": model, "logical_cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
        "memory_gib": mem_gib, "python": platform.python_version(), "torch": torch.__version__,
        "transformers": transformers.__version__, "load_average_1_5_15": load_average(),
    }


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def current_rss_mib() -> float:
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return float("nan")


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def run_child(script: Path, args: Sequence[str], env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run ``script args`` in a fresh interpreter (clean peak RSS) and parse the JSON on its last stdout line."""
    proc = subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, check=False,
                          env={**os.environ, **(env or {})}, cwd=REPO)
    if proc.returncode != 0:
        raise RuntimeError(f"{script.name} {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def emit(result: dict[str, Any]) -> None:
    """Print the result as JSON with the command and the machine description."""
    out = {"command": command_line(), "machine": machine(), **result}
    print(json.dumps(out, indent=2, default=_jsonable))


def _jsonable(x: Any) -> Any:
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (np.floating,)):
        return float(x)
    if isinstance(x, Path):
        return str(x)
    raise TypeError(type(x).__name__)


# ------------------------------------------------------------------------------------------------ models
def detector_config(size: str) -> Any:
    from random_detector import real_size_grounding_dino_config, tiny_grounding_dino_config

    if size == "tiny":
        return tiny_grounding_dino_config()
    if size in ("reduced", "real"):  # the detector has no reduced variant: its input size is set at run time
        return real_size_grounding_dino_config()
    raise ValueError(f"unknown size {size!r}")


def sam2_image_size(size: str) -> int:
    return {"tiny": 128, "reduced": 256, "real": 1024}[size]


def detector_dir(size: str, seed: int = 0) -> Path:
    """A saved random Grounding DINO (tiny, or grounding-dino-tiny's real shapes for reduced / real)."""
    from random_detector import save_random_detector

    kind = "tiny" if size == "tiny" else "real"
    out = cache_root() / f"detector-{kind}-seed{seed}"
    if not (out / "config.json").is_file():
        save_random_detector(out, detector_config(size), seed=seed)
    return out


def sam2_dir(size: str, seed: int = 0) -> Path:
    """A saved random transformers SAM 2 video model (tiny = test config; reduced/real = hiera-tiny shapes)."""
    from random_sam2 import real_size_sam2_config, save_random_sam2, tiny_sam2_config

    out = cache_root() / f"sam2-{size}-seed{seed}"
    if not (out / "config.json").is_file():
        config = tiny_sam2_config() if size == "tiny" else real_size_sam2_config(sam2_image_size(size))
        save_random_sam2(out, config, seed=seed)
    return out


def meta_checkpoint(image_size: int, seed: int = 0) -> Path:
    """Meta's hiera-tiny SAM 2.1 with seeded random weights (Meta's init plus noise), saved as a Meta .pt.

    Both the Grounded-SAM-2 baseline (Meta's code) and our tracker (through the converter) load this file,
    so the two run the same weights.
    """
    out = cache_root() / f"meta-sam2.1-tiny-{image_size}-seed{seed}.pt"
    if not out.is_file():
        from sam2_reference import build_meta_predictor

        model = build_meta_predictor("tiny", image_size=image_size, seed=seed, weight_noise=0.05)
        torch.save({"model": model.state_dict()}, out)
    return out


def meta_video_predictor(image_size: int, seed: int = 0, fill_hole_area: int = 8) -> Any:
    """Meta's SAM2VideoPredictor at ``image_size`` carrying the weights of :func:`meta_checkpoint`."""
    from sam2_reference import build_meta_predictor

    ckpt = meta_checkpoint(image_size, seed)
    model = build_meta_predictor("tiny", image_size=image_size, seed=seed, fill_hole_area=fill_hole_area)
    model.load_state_dict(torch.load(ckpt, map_location="cpu", weights_only=True)["model"])
    return model.eval()


def our_propagator_from_meta(image_size: int, seed: int = 0, dtype: str = "fp32") -> Any:
    """Our propagator on the converted weights of :func:`meta_checkpoint` (same numbers as the baseline)."""
    from gsam2_video.config import PropagatorConfig
    from gsam2_video.models.convert import model_from_meta_state_dict, read_meta_checkpoint
    from gsam2_video.models.propagator import Sam2Propagator

    ckpt = meta_checkpoint(image_size, seed)
    model = model_from_meta_state_dict(read_meta_checkpoint(ckpt), image_size=image_size)
    return Sam2Propagator(model, PropagatorConfig(model=str(ckpt)), device="cpu", dtype=dtype)


# ------------------------------------------------------------------------------------------------ frames
def read_frames(video: Path, count: int, start: int = 0) -> list[np.ndarray]:
    """``count`` RGB frames from ``start`` (PyAV), held in memory."""
    import av

    frames: list[np.ndarray] = []
    with av.open(str(video)) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i >= start:
                frames.append(frame.to_ndarray(format="rgb24"))
            if len(frames) == count:
                break
    return frames


class LoopedSource:
    """A file-like (offline) frame source that replays a few decoded frames ``total`` times over.

    Lets a benchmark run 1500 frames of a real clip while holding only ``len(frames)`` decoded frames, so
    the source itself adds the same memory at every video length.
    """

    def __init__(self, frames: Sequence[np.ndarray], total: int, name: str = "looped") -> None:
        from gsam2_video.types import VideoInfo

        h, w = frames[0].shape[:2]
        self.frames = list(frames)
        self.total = total
        self.info = VideoInfo(name=name, uri=name, width=w, height=h, fps=25.0, frame_count=total,
                              is_live=False)

    def __iter__(self) -> Iterator[Any]:
        from gsam2_video.types import Frame

        n = len(self.frames)
        for i in range(self.total):
            # ping-pong through the clip so motion stays continuous at the loop point
            j = i % (2 * n - 2) if n > 1 else 0
            j = j if j < n else 2 * n - 2 - j
            yield Frame(index=i, timestamp=i / 25.0, image=self.frames[j])

    def __enter__(self) -> LoopedSource:  # noqa: PYI034 - typing.Self needs Python 3.11
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        pass


# ------------------------------------------------------------------------------------------------ timing
class ForwardTimer:
    """Wall time spent inside chosen modules' forward calls (forward hooks; nested calls counted once)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self._depth = 0
        self._t0 = 0.0
        self._handles: list[Any] = []

    def watch(self, name: str, module: torch.nn.Module) -> None:
        def pre(_m: Any, _a: Any) -> None:
            if self._depth == 0:
                self._t0 = time.perf_counter()
            self._depth += 1

        def post(_m: Any, _a: Any, _o: Any) -> None:
            self._depth -= 1
            if self._depth == 0:
                self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - self._t0
                self.calls[name] = self.calls.get(name, 0) + 1

        self._handles.append(module.register_forward_pre_hook(pre))
        self._handles.append(module.register_forward_hook(post))

    def watch_sam2(self, model: torch.nn.Module, prefix: str = "sam2") -> None:
        """Every network of a transformers Sam2VideoModel that the propagator calls."""
        for name in ("vision_encoder", "prompt_encoder", "mask_decoder", "memory_attention", "memory_encoder",
                     "mask_downsample", "object_pointer_proj"):
            self.watch(f"{prefix}.{name}", getattr(model, name))
        # the mask decoder's high-resolution feature projections run on every frame from get_image_features,
        # outside the mask decoder's forward (inside it, nesting counts them once)
        for name in ("conv_s0", "conv_s1"):
            if hasattr(model.mask_decoder, name):
                self.watch(f"{prefix}.mask_decoder.{name}", getattr(model.mask_decoder, name))

    @property
    def total(self) -> float:
        return sum(self.seconds.values())

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()


def mask_iou(a: np.ndarray | torch.Tensor, b: np.ndarray | torch.Tensor) -> float:
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)
