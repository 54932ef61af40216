"""Which video encoder writes ``video.mp4``: NVENC on an NVIDIA GPU, software otherwise.

``--video-codec`` names a codec (``h264``, ``hevc``, ``av1``), ``auto`` (= h264, the format every player
reads) or one encoder by its FFmpeg name (``libx264``, ``h264_nvenc``, ...). A codec tries its encoders in
order and takes the first that this FFmpeg build (the one inside PyAV) has and that opens:

=======  =====================================================
h264     h264_nvenc, libx264
hevc     hevc_nvenc, libx265
av1      av1_nvenc, libsvtav1, libaom-av1
=======  =====================================================

Why probe NVENC by opening it: FFmpeg lists the NVENC encoders whenever it was built with them, but they
open only where an NVIDIA driver and a GPU with an NVENC engine exist (data-centre chips such as the H100
have none). Opening a small encoder once at start-up (a few ms; NVENC session start on a GPU, up to a few
hundred) answers exactly the question that matters, without asking torch. When the GPU encoder cannot be
used the software one is taken and the choice is logged on one line; when no encoder of the requested codec
is usable the run stops before any frame with one line saying what was tried.

Quality and speed settings: ``crf`` is x264's constant-quality scale (0-51, default 23), passed as ``crf`` to
libx264/libx265/libsvtav1/libaom-av1 and as NVENC's constant-quality ``cq`` (VBR, no bitrate cap).
``preset`` is x264's speed name; NVENC gets the matching p1-p7 preset, SVT-AV1 a numeric one.
``threads`` (0 = the encoder decides, usually one per core) sets the software encoders' thread count.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction

from ..errors import ConfigError

log = logging.getLogger(__name__)

CODECS: dict[str, tuple[str, ...]] = {
    "h264": ("h264_nvenc", "libx264"),
    "hevc": ("hevc_nvenc", "libx265"),
    "av1": ("av1_nvenc", "libsvtav1", "libaom-av1"),
}
#: what ``--video-codec`` accepts: auto, a codec, or one of the encoders above by name
CODEC_CHOICES: tuple[str, ...] = ("auto", *CODECS, *(e for names in CODECS.values() for e in names))
NVENC = frozenset(e for names in CODECS.values() for e in names if e.endswith("_nvenc"))

_NVENC_PRESETS = {"ultrafast": "p1", "superfast": "p1", "veryfast": "p2", "faster": "p3", "fast": "p4",
                  "medium": "p4", "slow": "p5", "slower": "p6", "veryslow": "p7", "placebo": "p7"}
_SVT_PRESETS = {"ultrafast": "12", "superfast": "11", "veryfast": "10", "faster": "9", "fast": "8",
                "medium": "7", "slow": "6", "slower": "5", "veryslow": "4", "placebo": "3"}


@dataclass(frozen=True)
class Encoder:
    """The encoder chosen for a run and the options it is opened with."""

    name: str  # FFmpeg encoder name, e.g. "libx264"
    codec: str  # "h264", "hevc" or "av1"
    hardware: bool
    options: dict[str, str] = field(default_factory=dict)
    threads: int = 0


def encoder_in_build(name: str) -> bool:
    """True when the FFmpeg inside PyAV has an encoder called ``name``."""
    import av

    try:
        av.codec.Codec(name, "w")
    except (av.codec.codec.UnknownCodecError, ValueError):
        return False
    return True


def encoder_opens(name: str) -> bool:
    """True when ``name`` opens for a small yuv420p picture (NVENC: a driver and an NVENC engine exist)."""
    import av

    try:
        ctx = av.codec.CodecContext.create(name, "w")
        ctx.width, ctx.height, ctx.pix_fmt = 256, 144, "yuv420p"
        ctx.time_base = Fraction(1, 25)
        ctx.open()
    except (av.FFmpegError, OSError, ValueError) as err:
        log.debug("encoder %s does not open: %s", name, err)
        return False
    return True


def _codec_of(name: str) -> str:
    return next(codec for codec, names in CODECS.items() if name in names)


def encoder_options(name: str, crf: int, preset: str) -> dict[str, str]:
    """FFmpeg options for ``name`` from x264-style ``crf`` and ``preset``."""
    if name in NVENC:
        return {"preset": _NVENC_PRESETS.get(preset, "p4"), "rc": "vbr", "cq": str(crf), "b": "0"}
    if name == "libsvtav1":
        return {"crf": str(crf), "preset": _SVT_PRESETS.get(preset, "10")}
    if name == "libaom-av1":
        return {"crf": str(crf), "cpu-used": "8", "row-mt": "1"}
    if name == "libx265":
        return {"crf": str(crf), "preset": preset, "x265-params": "log-level=error"}
    return {"crf": str(crf), "preset": preset}


def choose_encoder(choice: str = "auto", *, crf: int = 23, preset: str = "veryfast", threads: int = 0,
                   in_build: Callable[[str], bool] = encoder_in_build,
                   opens: Callable[[str], bool] = encoder_opens) -> Encoder:
    """The encoder for ``--video-codec choice`` (see the module docstring); ConfigError in one line when none
    of its encoders is usable. ``in_build`` / ``opens`` are the checks (replaceable in tests)."""
    key = choice.strip().lower()
    if key not in CODEC_CHOICES:
        raise ConfigError(f"--video-codec: unknown codec {choice!r}; choose from {', '.join(CODEC_CHOICES)}")
    if threads < 0:
        raise ConfigError(f"video encoder threads must be >= 0 (0 = automatic), got {threads}")
    explicit = key not in ("auto", *CODECS)
    candidates = (key,) if explicit else CODECS["h264" if key == "auto" else key]
    tried: list[str] = []
    for name in candidates:
        if not in_build(name):
            tried.append(f"{name} (not in this FFmpeg build)")
            continue
        if name in NVENC and not opens(name):
            tried.append(f"{name} (no usable NVIDIA GPU/driver)")
            continue
        if tried:
            log.info("video encoder: %s (%s)", name, "; ".join(tried))
        return Encoder(name, _codec_of(name), name in NVENC, encoder_options(name, crf, preset), threads)
    import av

    raise ConfigError(f"--video-codec {choice}: no usable encoder in PyAV {av.__version__}'s FFmpeg; tried "
                      f"{', '.join(tried)}" + ("" if explicit or key == "h264" else "; try --video-codec h264"))
