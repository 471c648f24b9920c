"""The tasks the service starts and does not await (progress edits and deletions, the retry
loop), kept so that a shutdown can wait for them or cancel them."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any


class BackgroundTasks:
    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, work: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        task = asyncio.create_task(work, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def named(self, name: str) -> list[asyncio.Task[Any]]:
        return [t for t in self._tasks if t.get_name() == name]

    def unfinished(self) -> list[asyncio.Task[Any]]:
        return [t for t in self._tasks if not t.done()]

    def all(self) -> list[asyncio.Task[Any]]:
        return list(self._tasks)
