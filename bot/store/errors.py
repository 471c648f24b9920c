"""The store's own errors."""

from __future__ import annotations

__all__ = ["Conflict", "DatabaseUnusable", "DiskFull", "NotFound", "SchemaTooNew", "StoreBusy", "StoreError"]


class StoreError(Exception):
    """Base of the store's own errors."""


class SchemaTooNew(StoreError):
    """The database was written by a newer framechain than this one."""


class NotFound(StoreError, LookupError):
    """No session or segment with that id."""


class Conflict(StoreError):
    """The row is not in a state that allows the change (e.g. approving a segment twice)."""


class DatabaseUnusable(StoreError):
    """The database cannot be opened or used: damaged, read-only, not a file. The message says
    which, and what to do; the file is left exactly as it was."""


class DiskFull(StoreError):
    """A write failed because the disk holding the database is full."""


class StoreBusy(StoreError):
    """Another connection held the database locked for longer than the busy timeout."""
