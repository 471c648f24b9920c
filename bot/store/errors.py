"""The store's own errors."""

from __future__ import annotations

__all__ = ["Conflict", "NotFound", "SchemaTooNew", "StoreError"]


class StoreError(Exception):
    """Base of the store's own errors."""


class SchemaTooNew(StoreError):
    """The database was written by a newer framechain than this one."""


class NotFound(StoreError, LookupError):
    """No session or segment with that id."""


class Conflict(StoreError):
    """The row is not in a state that allows the change (e.g. approving a segment twice)."""
