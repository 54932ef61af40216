"""Error types whose message is the one line a user sees.

The CLI catches :class:`Gsam2Error` and prints ``str(err)`` without a traceback, so every message must name
the thing that failed (a source, a model id, an option) and what to do about it.
"""

from __future__ import annotations


class Gsam2Error(Exception):
    """Base for errors that are the user's to fix; printed as one line by the CLI."""


class SourceError(Gsam2Error):
    """A frame source cannot be opened or read."""


class ModelError(Gsam2Error):
    """A model cannot be loaded or was called with inputs it cannot take."""


class ConfigError(Gsam2Error):
    """An option value is invalid."""


class OutputError(Gsam2Error):
    """An output cannot be written."""


class PromptError(Gsam2Error):
    """A text prompt names no usable class."""
