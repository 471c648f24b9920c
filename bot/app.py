"""bootstrap: builds the store, the dispatcher and the chat adapters, and runs them until stopped."""

from __future__ import annotations

import asyncio
import logging

from bot.store import Store
from shared.config import Config

log = logging.getLogger("framechain")


async def serve(config: Config, stop: asyncio.Event) -> None:
    """Run until ``stop`` is set (SIGINT/SIGTERM), then close everything in reverse order."""
    config.data_dir.mkdir(parents=True, exist_ok=True)
    async with Store.open(config.database_path) as store:
        log.info("store open: %s (schema %d)", store.path, store.schema_version)
        await stop.wait()
        log.info("shutting down")
