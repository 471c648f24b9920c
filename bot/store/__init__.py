"""The SQLite store: sessions and their segments. All of framechain's SQL lives in this package.

- :mod:`bot.store.rows`: the platforms, statuses and row dataclasses, and their conversion
- :mod:`bot.store.errors`: the store's errors
- :mod:`bot.store.migrations`: the schema, as numbered migrations tracked with ``user_version``
- :mod:`bot.store.connection`: opening the file and sharing its connection between tasks
- :mod:`bot.store.store`: :class:`Store`, the queries
- :mod:`bot.store.quota_queries`: the queries behind the quotas (GPU time, counts), part of the Store
- :mod:`bot.store.admin_queries`: bans and bot-wide flags (the admin commands), part of the Store

Everything a caller needs is importable from ``bot.store``.
"""

from __future__ import annotations

from bot.store.admin_queries import Ban, Flag
from bot.store.connection import create_database_at_version
from bot.store.errors import Conflict, DatabaseUnusable, DiskFull, NotFound, SchemaTooNew, StoreBusy, StoreError
from bot.store.migrations import MIGRATIONS
from bot.store.rows import OVER, PENDING, UNSET, Platform, SegmentRow, SegmentStatus, SessionRow, SessionState
from bot.store.store import Store

__all__ = [
    "MIGRATIONS",
    "OVER",
    "PENDING",
    "UNSET",
    "Ban",
    "Conflict",
    "DatabaseUnusable",
    "DiskFull",
    "Flag",
    "NotFound",
    "Platform",
    "SchemaTooNew",
    "SegmentRow",
    "SegmentStatus",
    "SessionRow",
    "SessionState",
    "Store",
    "StoreBusy",
    "StoreError",
    "create_database_at_version",
]
