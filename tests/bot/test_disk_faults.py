"""Running low on disk (the free-space function injected), a full database, a busy one: each is
said plainly to the user and the admins, before anything fails half-way."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from bot.conversation.service import DISK_FULL, STORE_BUSY
from bot.disk import DiskSpace
from bot.ports import Action, ChatRef
from bot.store import PENDING, SessionState, Store, StoreBusy
from shared.config import load_config
from tests.bot.service_harness import picture_bytes, running_bot, write_config

CHAT = ChatRef("telegram", "100", "")
OWNER = "7"
ADMIN = ChatRef("telegram", "4242", "")  # a Telegram admin's private chat has their user id
ADMINS = "[telegram]\nadmin_ids = [4242]\n"


class Disk:
    """The data dir's free space, as the test sets it."""

    def __init__(self, free: int) -> None:
        self.free = free

    def __call__(self, path: Path) -> int:
        return self.free


def test_thresholds_come_from_the_configuration(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path, extra="[storage]\nmin_free_mb = 300\n"), env={})
    masters = [tmp_path / "a.mp4"]
    masters[0].write_bytes(b"x" * 50_000_000)
    assert DiskSpace(config, Disk(301_000_000)).job_problem() is None
    assert "299 MB free" in (DiskSpace(config, Disk(299_000_000)).job_problem() or "")
    # A join needs the reserve plus twice what it joins.
    assert DiskSpace(config, Disk(401_000_000)).join_problem(masters) is None
    assert "needed to join" in (DiskSpace(config, Disk(399_000_000)).join_problem(masters) or "")


async def test_a_low_disk_refuses_a_new_segment_and_tells_user_and_admins(tmp_path: Path) -> None:
    disk = Disk(100_000_000)  # under the default 500 MB reserve
    extra = f"[storage]\nmin_free_mb = 500\n{ADMINS}"
    path = tmp_path / "c.toml"
    path.write_text(write_config(tmp_path).read_text().replace("[workers]", extra + "[workers]"))
    async with running_bot(path, free_space=disk) as bot:
        await bot.service.start(CHAT, OWNER, picture_bytes(), "the sun rises")
        texts = bot.chat.texts(CHAT)
        assert any("can't start a new segment" in t and "100 MB free" in t for t in texts), texts
        row = await bot.store.find_active_session("telegram", "100", "", OWNER)
        assert row is not None and row.state is SessionState.AWAITING_PROMPT  # the picture is kept
        assert await bot.store.list_segments(row.id, PENDING) == []  # nothing queued
        [alert] = bot.chat.texts(ADMIN)
        assert "running low" in alert and str(bot.config.data_dir) in alert
        # Said to the admins once, not on every refused prompt.
        await bot.service.text(CHAT, OWNER, "again")
        assert len(bot.chat.texts(ADMIN)) == 1
        # Space freed: the same prompt goes through.
        disk.free = 10**12
        await bot.service.text(CHAT, OWNER, "the sun rises")
        await bot.chat.wait_for("segment", 1)


async def test_a_low_disk_stops_the_join_before_it_starts(tmp_path: Path) -> None:
    disk = Disk(10**12)
    path = tmp_path / "c.toml"
    path.write_text(write_config(tmp_path).read_text().replace("[workers]", ADMINS + "[workers]"))
    async with running_bot(path, free_space=disk) as bot:
        await bot.service.start(CHAT, OWNER, picture_bytes(), "the sun rises")
        [sent] = await bot.chat.wait_for("segment", 1)
        disk.free = 1_000_000
        await bot.service.control(CHAT, OWNER, sent.post.segment_id, Action.APPROVE_FINISH)
        for _ in range(200):
            if any("joining the video failed" in t for t in bot.chat.texts(CHAT)):
                break
            await asyncio.sleep(0.02)
        failed = [t for t in bot.chat.texts(CHAT) if "joining the video failed" in t]
        assert failed and "1 MB free" in failed[0] and "admins have been told" in failed[0]
        assert list((bot.config.data_dir / "sessions").glob("*/final.mp4")) == []
        assert any("running low" in t for t in bot.chat.texts(ADMIN))
        row = await bot.store.find_active_session("telegram", "100", "", OWNER)
        assert row is not None and row.state is SessionState.AWAITING_PROMPT
        disk.free = 10**12
        await bot.service.command(CHAT, OWNER, "finish")
        await bot.chat.wait_for("final", 1)


async def test_a_full_database_is_answered_plainly(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(write_config(tmp_path).read_text().replace("[workers]", ADMINS + "[workers]"))
    async with running_bot(path) as bot:
        # SQLite's own page limit makes the database "full" for real: "database or disk is full".
        [[pages]] = await bot.store._sql.all("PRAGMA page_count")
        await bot.store._sql.all(f"PRAGMA max_page_count = {pages}")
        for i in range(30):  # fill what room the last page had
            other = ChatRef("telegram", str(200 + i), "")
            await bot.service.start(other, str(i), picture_bytes(), None)
            if DISK_FULL in bot.chat.texts(other):
                break
        assert DISK_FULL in bot.chat.texts(other)
        assert any("full" in t for t in bot.chat.texts(ADMIN))


async def test_a_busy_database_is_a_store_error_and_answered(tmp_path: Path) -> None:
    path = tmp_path / "fc.db"
    async with Store.open(path, busy_timeout=0.2) as store:
        holder = sqlite3.connect(path, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        try:
            with pytest.raises(StoreBusy, match="locked"):
                await store.create_session(platform="telegram", chat_id="1", thread_id="", owner_id="2", settings={})
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        # Once released, the same write goes through.
        await store.create_session(platform="telegram", chat_id="1", thread_id="", owner_id="2", settings={})


async def test_a_user_action_on_a_busy_database_gets_a_sentence(tmp_path: Path) -> None:
    from bot.service import ConversationService
    from tests.bot.fake_chat import FakeChat

    config = load_config(write_config(tmp_path), env={})
    async with Store.open(config.database_path, busy_timeout=0.2) as store:
        service = ConversationService(store, config)
        chat = FakeChat()
        service.add_port(chat)
        holder = sqlite3.connect(config.database_path, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        try:
            await service.start(CHAT, OWNER, picture_bytes(), None)
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        assert chat.texts(CHAT) == [STORE_BUSY]
        await service.close()
