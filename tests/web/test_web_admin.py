"""The admin commands and bans in the web chat, against the real server (``framechain run``'s own
bootstrap, web front end only): a web admin's /queue, /gpu, /pause, /ban... answered in the chat
as on Telegram, a token user who is no admin refused, a banned user refused everything (nothing
of theirs written), the local user never banned; and admin alerts reaching web admins."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest
from playwright.async_api import expect

from bot import core_admin
from bot.access import banned_refusal
from bot.conversation.alerts import AdminAlerts
from bot.conversation.chats import Chats
from bot.core_admin import AdminUsage, Target
from bot.web.messages import MessageLog
from bot.web.port import Hub, WebPort
from shared.config import load_config
from tests.bot.service_harness import picture_bytes
from tests.browser import chromium
from tests.web.harness import Client, web_bot, web_config
from tests.web.test_web_access import ALICE, BOB, TOKENS
from tests.web.test_web_chat import WAIT

POST = {"X-Framechain": "1"}


async def texts(client: Client, thread: str) -> list[str]:
    return [str(m["text"]) for m in await client.history(thread) if m["author"] == "bot"]


def written(data_dir: Path) -> set[Path]:
    """The files under the data dir, databases aside (their journals change with every read)."""
    return {p for p in data_dir.rglob("*") if p.is_file() and ".db" not in p.name}


def test_a_web_user_is_named_by_their_tokens_name() -> None:
    assert core_admin.parse_user("web:alice", "telegram", "ban") == Target("web", "alice")
    assert core_admin.parse_user("bob", "web", "ban") == Target("web", "bob")
    assert core_admin.parse_user("007", "web", "unban") == Target("web", "007")  # a name, not a number
    assert core_admin.parse_user("telegram:42", "web", "ban") == Target("telegram", "42")
    with pytest.raises(AdminUsage, match="web:NAME"):
        core_admin.parse_user("bob/../x", "web", "ban")
    refusal = core_admin.ban_refusal(Target("web", "local"), {"web": frozenset({"local"})})
    assert refusal is not None and "admins cannot be banned" in refusal


async def test_admin_commands_in_the_web_chat_and_a_ban(tmp_path: Path) -> None:
    async with (
        web_bot(web_config(tmp_path, tokens=TOKENS)) as bot,
        aiohttp.ClientSession(headers={"Authorization": f"Bearer {ALICE}"}) as alice_http,
        aiohttp.ClientSession(headers={"Authorization": f"Bearer {BOB}"}) as bob_http,
    ):
        alice, bob = Client(bot, alice_http), Client(bot, bob_http)
        desk, own = await alice.new_thread(), await bob.new_thread()
        await alice.send(desk, "/queue")
        await alice.send(desk, "/gpu")
        queue, gpu = (await texts(alice, desk))[-2:]
        assert queue == "Queue: 0 running, 0 waiting. Nothing to do."
        assert gpu.startswith("Workers:\n• device cpu")
        await alice.send(desk, "/pause")
        assert (await texts(alice, desk))[-1].startswith("⏸ Queue paused")
        await alice.send(desk, "/queue")
        assert (await texts(alice, desk))[-1].startswith("Queue (⏸ paused)")
        await alice.send(desk, "/stop 999")
        assert (await texts(alice, desk))[-1] == core_admin.not_a_job_text("999")

        # Bob has a token but is no admin: told so in his own chat, and nothing about the queue.
        for command in ("/queue", "/resume", "/ban alice"):
            await bob.send(own, command)
        assert await texts(bob, own) == [core_admin.NOT_ADMIN] * 3

        await alice.send(desk, "/ban web:alice")
        assert "admins cannot be banned" in (await texts(alice, desk))[-1]
        await alice.send(desk, "/ban bob")
        assert (await texts(alice, desk))[-1] == core_admin.banned_text(Target("web", "bob"), already=False)

        # Banned: every action gets the other platforms' sentence, and nothing is written.
        refusal = banned_refusal("bob")
        before = written(bot.config.data_dir)
        form = aiohttp.FormData(default_to_multipart=True)
        form.add_fields(("thread", own), ("text", "a lighthouse"))
        form.add_field("picture", picture_bytes(96, 96), filename="start.png", content_type="image/png")
        calls = [
            bob_http.post(bot.url + "api/send", data=form, headers=POST),
            bob_http.post(bot.url + "api/press", json={"thread": own, "data": "seg:1:approve"}, headers=POST),
            bob_http.post(bot.url + "api/threads", headers=POST),
            bob_http.get(bot.url + "api/threads"),
            bob_http.get(bot.url + "media/1/0"),
        ]
        for call in calls:
            async with call as response:
                assert response.status == 403
                assert await response.text() == refusal
        async with bob_http.ws_connect(bot.url + "ws") as socket:
            await socket.send_json({"open": own})
            assert await socket.receive_json(timeout=10) == {"type": "refused", "text": refusal}
        assert written(bot.config.data_dir) == before
        async with chromium() as browser:  # the page says it too
            page = await browser.new_page()
            await page.goto(bot.url + f"?token={BOB}")
            await expect(page.locator("#notice")).to_have_text(refusal, timeout=WAIT)

        await alice.send(desk, "/unban web:bob")
        assert (await texts(alice, desk))[-1] == "✅ web:bob is no longer banned."
        assert await texts(bob, own) == [core_admin.NOT_ADMIN] * 3  # his conversation, untouched
        await bob.send(own, "/help")
        assert len(await texts(bob, own)) == 4
        await alice.send(desk, "/resume")
        assert (await texts(alice, desk))[-1].startswith("▶ Queue running again")


async def test_the_local_user_is_an_admin_who_cannot_be_banned(tmp_path: Path) -> None:
    async with web_bot(web_config(tmp_path)) as bot, aiohttp.ClientSession() as http:
        client = Client(bot, http)
        thread = await client.new_thread()
        for argument in ("local", "web:local"):
            await client.send(thread, f"/ban {argument}")
            assert "web:local is an admin" in (await texts(client, thread))[-1]
        await client.send(thread, "/help")
        assert "/queue" in (await texts(client, thread))[-1]  # still in, with the admin help


async def test_admin_alerts_reach_web_admins_in_their_newest_conversation(tmp_path: Path) -> None:
    config = load_config(web_config(tmp_path, tokens=TOKENS), env={})
    port = WebPort(Hub())
    messages = await MessageLog.open(tmp_path / "web-chat.db")
    port.attach(messages)
    try:
        chats = Chats()
        chats.add(port)
        older = await messages.new_thread("alice")
        newest = await messages.new_thread("alice")
        await AdminAlerts(config, chats).tell("disk", "The disk is nearly full.")
        assert [m.text for m in await messages.history("alice", newest)] == ["The disk is nearly full."]
        assert await messages.history("alice", older) == []
        assert await messages.threads("bob") == []  # no admin: not told
    finally:
        port.detach()
        await messages.close()
