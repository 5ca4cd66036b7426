"""Atomic file output: write a temporary file beside the target, then rename it over."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

from nscompile.errors import InputError


def write_atomic(path: str | Path, data: str | bytes) -> None:
    """Write `data` to `path` so that readers see the old file or the whole new one, never half."""
    target = Path(path)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent or ".")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file the usual permissions
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def open_atomic(path: str | Path) -> Iterator[TextIO]:
    """A text file to write in pieces that appears at `path` whole, or not at all."""
    target = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent or ".")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def check_writable(path: str | Path, *, directory: bool = False) -> None:
    """InputError now, before any work, when `path` (a file, or a directory to create) cannot
    be written: its folder is missing or not ours, or `path` is the wrong kind of thing.

    A file's folder must exist. A run directory's missing parents are created later (like
    `mkdir -p`); the nearest folder that exists must then be writable.
    """
    target = Path(path)
    if target.is_dir() and not directory:
        raise InputError(f"cannot write {target}: it is a directory")
    if target.exists() and not target.is_dir() and directory:
        raise InputError(f"cannot write the run directory {target}: a file is in the way")
    folder = target.parent if str(target.parent) else Path(".")
    if not directory and not folder.is_dir():
        raise InputError(f"cannot write {target}: the folder {folder} does not exist")
    while not folder.exists():
        folder = folder.parent
    if not folder.is_dir():
        raise InputError(f"cannot write {target}: {folder} is not a folder")
    try:
        fd, probe = tempfile.mkstemp(prefix=".nscompile-probe.", dir=folder)
    except OSError as error:
        raise InputError(
            f"cannot write {target}: no new file can be made in {folder} "
            f"({error.strerror or error})"
        ) from None
    os.close(fd)
    Path(probe).unlink(missing_ok=True)
