"""The data dir's disk: free space before work that writes (a segment, a join), and whether the
folder can be written at all at start-up. Each check returns the sentence to show, or None.

The free-space function is injectable (``FreeSpace``) so a full disk can be tested without one.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path

from shared.config import Config

#: Bytes free on the file system holding a path.
FreeSpace = Callable[[Path], int]

MB = 1_000_000


class StartupProblem(Exception):
    """The data folder cannot be used; the message says why (start-up stops)."""


def free_bytes(path: Path) -> int:
    """Free bytes for an unprivileged writer on the file system holding ``path`` (or the nearest
    folder above it that exists)."""
    while not path.exists() and path.parent != path:
        path = path.parent
    return shutil.disk_usage(path).free


def _size(n: int) -> str:
    return f"{n / 1e9:.1f} GB" if n >= 1e9 else f"{n / MB:.0f} MB"


class DiskSpace:
    """Free-space checks on ``config.data_dir``, against ``storage.min_free_mb``."""

    def __init__(self, config: Config, free_space: FreeSpace = free_bytes) -> None:
        self.config = config
        self.free_space = free_space

    @property
    def reserve(self) -> int:
        return self.config.storage.min_free_mb * MB

    def _short(self, needed: int) -> tuple[int, int] | None:
        """(free, needed) when fewer than ``needed`` bytes are free, else None."""
        try:
            free = self.free_space(self.config.data_dir)
        except OSError:
            return None  # cannot tell: let the work try (its own errors are reported)
        return (free, needed) if free < needed else None

    def job_problem(self) -> str | None:
        """Why a new segment should not be queued now, or None."""
        short = self._short(self.reserve)
        if short is None:
            return None
        return f"only {_size(short[0])} free on the server's disk, {_size(short[1])} needed for a segment"

    def join_problem(self, masters: Iterable[Path]) -> str | None:
        """Why the join of ``masters`` should not start now, or None: the final (and a copy made
        to fit an upload limit) are each about as large as the masters together."""
        total = 0
        for master in masters:
            with contextlib.suppress(OSError):
                total += master.stat().st_size
        short = self._short(self.reserve + 2 * total)
        if short is None:
            return None
        return f"only {_size(short[0])} free on the server's disk, {_size(short[1])} needed to join the video"


def admin_note(problem: str, data_dir: Path) -> str:
    """What the admins are told when the disk runs low."""
    return f"⚠ framechain: the disk of {data_dir} is running low ({problem}). Free some space or prune old sessions."


def is_disk_full(exc: BaseException) -> bool:
    """An error that means the disk (or the database's quota) is full."""
    if isinstance(exc, OSError) and exc.errno == 28:  # ENOSPC
        return True
    if isinstance(exc, sqlite3.OperationalError) and "disk is full" in str(exc):
        return True
    # ffmpeg and other child processes only say it in words.
    return "No space left on device" in str(exc)


def writable_problem(folder: Path) -> str | None:
    """Why framechain cannot work in ``folder`` (create it, write and remove a file), or None.

    Tried for real rather than with os.access: a read-only mount or a full disk only shows when
    writing."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return f"the data folder {folder} cannot be created: {exc.strerror or exc}"
    if not folder.is_dir():
        return f"the data folder {folder} is not a folder"
    probe = folder / f".write-test-{uuid.uuid4().hex}"
    try:
        with open(probe, "wb") as fh:
            fh.write(b"framechain")
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as exc:
        reason = "the disk is full" if exc.errno == 28 else (exc.strerror or str(exc))
        return (
            f"the data folder {folder} is not writable ({reason}); "
            "framechain needs to write its database and media there"
        )
    finally:
        with contextlib.suppress(OSError):
            probe.unlink()
    return None
