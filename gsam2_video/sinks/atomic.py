"""Atomic output files and folders: nothing under a final name until it is complete.

Why: a run can be interrupted at any frame (Ctrl-C, crash, out of disk). Every output is first written under a
hidden temporary name in the *same* directory (so the final ``os.replace`` is a same-filesystem rename, which
POSIX makes atomic) and only renamed into place when its writer finishes. A temporary name starts with ``.``
and contains ``.partial`` so neither a person nor a glob like ``*.json`` mistakes it for a finished file.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO

from ..errors import OutputError

PARTIAL_TAG = ".partial"


def _reason(err: OSError) -> str:
    return err.strerror or str(err)


def prepare_output_dir(path: str | os.PathLike[str]) -> Path:
    """Create ``path`` if needed and prove it is a writable directory; OutputError (one line) otherwise."""
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise OutputError(f"output directory {out} is a file, not a directory")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputError(f"output directory {out} cannot be created: {_reason(err)}") from err
    try:
        fd, probe = tempfile.mkstemp(prefix=".write-probe", suffix=PARTIAL_TAG, dir=out)
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise OutputError(f"output directory {out} is not writable: {_reason(err)}") from err
    return out


def partial_path(final: Path) -> Path:
    """A fresh hidden temporary path next to ``final`` (same directory, so the rename is atomic)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=PARTIAL_TAG, dir=final.parent)
    os.close(fd)
    return Path(tmp)


def fsync_path(path: Path) -> None:
    """Flush a finished file's data to disk before it is renamed into place."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_quietly(path: Path | None) -> None:
    """Delete a temporary file or folder; used on abort, where a second error must not mask the first."""
    if path is None:
        return
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    except OSError:
        pass


class AtomicFile:
    """A text or binary file written under a temporary name and renamed to ``final`` by :meth:`commit`."""

    def __init__(self, final: str | os.PathLike[str], mode: str = "w") -> None:
        if mode not in ("w", "wb"):
            raise ValueError("AtomicFile mode must be 'w' or 'wb'")
        self.final = Path(final)
        try:
            self.tmp: Path | None = partial_path(self.final)
            self._fh: IO | None = open(  # noqa: SIM115 - held open until commit()/discard()
                self.tmp, mode, encoding=None if "b" in mode else "utf-8",
                newline=None if "b" in mode else "\n")
        except OSError as err:
            raise OutputError(f"cannot create {self.final}: {_reason(err)}") from err

    @property
    def handle(self) -> IO:
        if self._fh is None:
            raise OutputError(f"{self.final} is already closed")
        return self._fh

    def write(self, data: str | bytes) -> None:
        self.handle.write(data)

    def commit(self) -> Path:
        """Flush, fsync and rename into place; returns the final path."""
        fh = self.handle
        try:
            fh.flush()
            os.fsync(fh.fileno())
            fh.close()
            self._fh = None
            assert self.tmp is not None
            os.replace(self.tmp, self.final)
        except OSError as err:
            self.discard()
            raise OutputError(f"cannot write {self.final}: {_reason(err)}") from err
        self.tmp = None
        return self.final

    def discard(self) -> None:
        """Close and delete the temporary file; the final name is never touched."""
        if self._fh is not None:
            try:
                self._fh.close()
            except OSError:
                pass
            self._fh = None
        remove_quietly(self.tmp)
        self.tmp = None


def publish_from_spill(final: Path, spill: AtomicFile, write: Callable[[IO[str], AtomicFile], None]) -> Path:
    """Write ``final`` atomically from a text spill file: ``write(spill_contents, out)`` fills it.

    Writers that stream per-frame records to a spill and assemble the document at close share this: the
    spill is flushed, read back once, and dropped whether or not the final file could be written; a
    failure leaves no file under the final name and raises one OutputError naming it.
    """
    out: AtomicFile | None = None
    try:
        spill.handle.flush()
        assert spill.tmp is not None
        out = AtomicFile(final, "w")
        with open(spill.tmp, encoding="utf-8") as src:
            write(src, out)
    except (OSError, ValueError) as err:
        if out is not None:
            out.discard()
        spill.discard()
        raise OutputError(f"cannot write {final}: {err}") from err
    spill.discard()
    return out.commit()


def write_bytes_atomic(final: str | os.PathLike[str], data: bytes) -> Path:
    """Write a whole file in one go, atomically."""
    f = AtomicFile(final, "wb")
    try:
        f.write(data)
    except OSError as err:
        f.discard()
        raise OutputError(f"cannot write {f.final}: {_reason(err)}") from err
    return f.commit()


def write_text_atomic(final: str | os.PathLike[str], text: str) -> Path:
    """Write a whole UTF-8 text file in one go, atomically."""
    return write_bytes_atomic(final, text.encode("utf-8"))


def make_partial_dir(final: Path) -> Path:
    """A fresh hidden temporary folder next to ``final``."""
    try:
        return Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=PARTIAL_TAG, dir=final.parent))
    except OSError as err:
        raise OutputError(f"cannot create a temporary folder for {final}: {_reason(err)}") from err


def replace_dir(tmp: Path, final: Path) -> Path:
    """Move a finished temporary folder to ``final``, replacing an older folder of that name.

    A non-empty folder cannot be the target of ``os.replace``, so an existing one is first renamed aside
    (itself an atomic step), the new one renamed into place, then the old one deleted.
    """
    old: Path | None = None
    try:
        if final.is_symlink() or final.is_file():
            final.unlink()
        elif final.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{final.name}.old.", suffix=PARTIAL_TAG, dir=final.parent))
            os.replace(final, old / final.name)
        os.replace(tmp, final)
    except OSError as err:
        raise OutputError(f"cannot move finished {final.name} into {final.parent}: {_reason(err)}") from err
    remove_quietly(old)
    return final
