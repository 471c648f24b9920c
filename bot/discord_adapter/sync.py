"""Slash-command sync that happens only when the commands changed.

Discord limits how many commands an application may create per day, so syncing on every start
is wasteful. The payload that would be sent (global and per-guild), with the application id, is
hashed; the hash of the last successful sync is kept in a small file in the data dir.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import discord
from discord import app_commands

log = logging.getLogger("framechain.discord")


def command_payload(
    tree: app_commands.CommandTree[Any], application_id: int, guild_ids: Sequence[int]
) -> dict[str, Any]:
    """What ``tree.sync()`` would send, for every scope framechain syncs."""
    return {
        "application_id": str(application_id),
        "global": [command.to_dict(tree) for command in tree.get_commands()],
        "guilds": {
            str(guild_id): [command.to_dict(tree) for command in tree.get_commands(guild=discord.Object(guild_id))]
            for guild_id in sorted(set(guild_ids))
        },
    }


def payload_hash(payload: dict[str, Any]) -> str:
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


async def sync_commands(
    tree: app_commands.CommandTree[Any], *, application_id: int, guild_ids: Sequence[int], hash_file: Path
) -> bool:
    """Sync the global scope and each guild if the payload changed since the last sync.

    Returns whether anything was sent. The global scope is synced in guild mode too, so commands
    left there by an earlier global configuration disappear (an empty list clears them).
    """
    digest = payload_hash(command_payload(tree, application_id, guild_ids))
    try:
        if hash_file.read_text().strip() == digest:
            log.info("slash commands unchanged; not syncing")
            return False
    except FileNotFoundError:
        pass
    await tree.sync()
    for guild_id in sorted(set(guild_ids)):
        await tree.sync(guild=discord.Object(guild_id))
    hash_file.parent.mkdir(parents=True, exist_ok=True)
    partial = hash_file.with_name(hash_file.name + ".tmp")
    partial.write_text(digest + "\n")
    os.replace(partial, hash_file)
    log.info("slash commands synced (%s)", f"guilds {sorted(set(guild_ids))}" if guild_ids else "global")
    return True
