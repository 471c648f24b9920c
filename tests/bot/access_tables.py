"""What the authorization tables of both platforms share: who is who, which configurations they
run under, who each lets in, and a snapshot of everything a bot keeps (rows and files), so a case
can say that nothing changed."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

#: Platform user ids stand for these actors on both platforms (Discord ids are assigned, see there).
OWNER, OTHER, ADMIN, STRANGER = "owner", "other", "admin", "stranger"
ACTORS = (OWNER, OTHER, ADMIN, STRANGER)

#: The configurations, by what they let in: nothing configured (closed: admins only), a user
#: allowlist (owner and other), the place (a Telegram group, a Discord role or guild), open.
CLOSED, USERS, PLACE, OPEN = "closed", "users", "place", "open"
CONFIGS = (CLOSED, USERS, PLACE, OPEN)

#: Who each configuration lets in where the session is (a group / a guild)...
LET_IN_THERE = {
    CLOSED: {ADMIN},
    USERS: {OWNER, OTHER, ADMIN},
    PLACE: {OWNER, OTHER, ADMIN, STRANGER},
    OPEN: {OWNER, OTHER, ADMIN, STRANGER},
}
#: ... and in a private chat with the bot (Telegram: a group allowlist does not reach there).
LET_IN_PRIVATELY = {
    CLOSED: {ADMIN},
    USERS: {OWNER, OTHER, ADMIN},
    PLACE: {ADMIN},
    OPEN: {OWNER, OTHER, ADMIN, STRANGER},
}
#: Who may act on a session once let in: its owner and the admins (the core's rule); its
#: prompts are its owner's alone.
MAY_ACT = {OWNER, ADMIN}
MAY_PROMPT = {OWNER}


def expected_change(config: str, actor: str, action: str, *, private_start: bool) -> bool:
    """The table's answer: does this action by this actor change what the bot keeps?"""
    if action == "start":
        return actor in (LET_IN_PRIVATELY if private_start else LET_IN_THERE)[config]
    return actor in LET_IN_THERE[config] and actor in (MAY_PROMPT if action == "prompt" else MAY_ACT)


def cases() -> list[tuple[str, str, str]]:
    return [(config, actor, action) for config in CONFIGS for actor in ACTORS for action in ACTIONS]


#: start: /start with a picture (a new session of the actor's); the others act on the owner's
#: session: cancel (a command), undo (a review button, on the take being made), settings (a
#: command that changes it, before any take), prompt (a plain message: the first take).
ACTIONS = ("start", "cancel", "undo", "settings", "prompt")
#: The actions that need the owner's session to have a take on the way.
WITH_A_TAKE = {"undo", "cancel", "start"}


def snapshot(data_dir: Path, database: Path) -> dict[str, Any]:
    """Every row of sessions and segments, and every file kept (the database's own aside)."""
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as db:
        sessions = db.execute("SELECT id, owner_id, state, settings FROM sessions ORDER BY id").fetchall()
        segments = db.execute("SELECT id, session_id, status FROM segments ORDER BY id").fetchall()
    files = sorted(
        str(p.relative_to(data_dir))
        for p in data_dir.rglob("*")
        if p.is_file() and not p.name.startswith(database.name)
    )
    return {"sessions": sessions, "segments": segments, "files": files}
