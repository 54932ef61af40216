"""``gsam2-video``: the top-level parser and the entry point; each command is a sibling module.

Layout (why): every command lives in its own module of this package with the same two functions,
``add_parser(subparsers) -> ArgumentParser`` and ``run(args) -> int`` (the exit code); the options they
share are defined once in :mod:`.options`. This module only builds the parser from :data:`COMMANDS`,
configures logging and turns errors a user can fix into one line. The command modules never import this
module (only :mod:`.options`), so each imports alone and there is no cycle.

Adding a command: write ``gsam2_video/cli/<name>.py`` with ``add_parser`` and
``run`` as above, then add ``"<name>"`` to :data:`COMMANDS`.

Errors a user can fix (bad source, bad option, missing weights) print one line and exit 2; Ctrl-C
finishes the frames already done and closes every output properly (exit 130).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence

from ..errors import Gsam2Error
from .options import DEPRECATIONS

log = logging.getLogger("gsam2_video")

# command modules of this package, in the order ``--help`` lists them
COMMANDS: tuple[str, ...] = ("track", "dataset", "eval")


def build_parser() -> argparse.ArgumentParser:
    """The ``gsam2-video`` parser with every command of :data:`COMMANDS` registered."""
    from .. import __version__

    parser = argparse.ArgumentParser(
        prog="gsam2-video",
        description="Track text-specified objects through video (Grounding DINO + SAM 2).")
    parser.add_argument("--version", action="version", version=f"gsam2-video {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{" + ",".join(COMMANDS) + "}")
    for name in COMMANDS:
        module = importlib.import_module(f"{__name__}.{name}")
        module.add_parser(sub).set_defaults(run=module.run)
    return parser


def _configure_logging(verbose: bool) -> None:
    """Our warnings as ``gsam2-video: WARNING: ...``; the libraries' chatter (weight-loading bars, hub
    retries) only with --verbose."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("gsam2-video: %(levelname)s: %(message)s"))
    log.handlers[:] = [handler]
    log.setLevel(logging.DEBUG if verbose else logging.WARNING)
    log.propagate = False
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING)
    if verbose:
        return
    if "transformers" not in sys.modules:
        # importing transformers costs seconds; a typo must be reported before that, so the libraries read
        # their quiet settings from the environment when the models load (a user's own setting wins)
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        return
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` (default ``sys.argv[1:]``), run the command and return its exit code."""
    args = build_parser().parse_args(argv)
    _configure_logging(args.verbose)
    for note in getattr(args, DEPRECATIONS, ()):
        log.warning(note)
    previous = _stop_on_sigterm()
    try:
        return args.run(args)
    except Gsam2Error as exc:
        print(f"gsam2-video: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("gsam2-video: interrupted", file=sys.stderr)
        return 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _stop_on_sigterm() -> signal.Handlers | None:
    """Make SIGTERM (``kill``, ``docker stop``, systemd, a job scheduler's time limit) stop a run the way
    Ctrl-C does: every output closed and complete for the frames done, run.json written, exit 130. With the
    default handler the process would die at once and leave its files under their temporary names.

    Only from the main thread and only over the default handler (an embedding program's own wins); returns
    the handler to restore, or None when nothing was installed.
    """
    if threading.current_thread() is not threading.main_thread():
        return None
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return None
    signal.signal(signal.SIGTERM, _interrupt)
    return signal.SIG_DFL
