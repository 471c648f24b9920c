"""Who gets in: tokens (each a user) where they are configured, the local user on loopback
without them, and nothing from other sites. With tokens, the server is bound to 127.0.0.1 but
configured as a non-loopback one must be: every request without a valid token is refused. (All of
127.0.0.0/8 is loopback on Linux, so 127.0.0.2 would be no different; binding 0.0.0.0 in a test
would expose it beyond the machine.)"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import aiohttp
import pytest
from playwright.async_api import expect

from bot.store import Store
from bot.store.migrations import MIGRATIONS
from bot.web.chat import START_HINT
from shared.config import ConfigError, load_config
from shared.pictures import too_large_text
from tests.browser import chromium
from tests.web.harness import Client, web_bot, web_config
from tests.web.test_web_chat import WAIT, Shots

ALICE = "alice-token-0123456789"
BOB = "bob-token-0123456789abc"
TOKENS = (
    f'[[web.tokens]]\ntoken = "{ALICE}"\nuser = "alice"\nadmin = true\n[[web.tokens]]\ntoken = "{BOB}"\nuser = "bob"\n'
)


async def test_without_a_token_every_request_is_refused(tmp_path: Path) -> None:
    async with web_bot(web_config(tmp_path, tokens=TOKENS)) as bot:
        async with aiohttp.ClientSession() as http:
            for path in ("", "api/threads", "ws", "media/1/0", "ops", "ops/media/segment/1/video"):
                async with http.get(bot.url + path) as response:
                    assert response.status == 401, path
                    assert "access token" in await response.text()
            async with http.get(bot.url + "api/threads", headers={"Authorization": "Bearer wrong-token-0000000"}) as r:
                assert r.status == 401
            async with http.get(bot.url + "api/threads", headers={"Authorization": f"Bearer {BOB}"}) as r:
                assert r.status == 200
                assert (await r.json())["user"] == "bob"
            async with http.get(bot.url + "ops", headers={"Authorization": f"Bearer {BOB}"}) as r:
                assert r.status == 403  # not an admin
        async with chromium() as browser:
            page = await browser.new_page()
            response = await page.goto(bot.url)
            assert response is not None and response.status == 401
            await Shots(tmp_path / "screens").take(page, "refused")
            # The shared link: the token goes into a cookie and out of the address bar.
            await page.goto(bot.url + f"?token={ALICE}")
            assert "token" not in page.url
            await expect(page.locator("body[data-connected=yes]")).to_have_count(1, timeout=WAIT)
            assert (await page.goto(bot.url + "ops")) is not None
            await expect(page.locator("h1")).to_have_text("framechain · operator")


async def test_each_token_is_its_own_user(tmp_path: Path) -> None:
    async with (
        web_bot(web_config(tmp_path, tokens=TOKENS)) as bot,
        aiohttp.ClientSession(headers={"Authorization": f"Bearer {ALICE}"}) as alice_http,
        aiohttp.ClientSession(headers={"Authorization": f"Bearer {BOB}"}) as bob_http,
    ):
        alice, bob = Client(bot, alice_http), Client(bot, bob_http)
        thread = await alice.new_thread()
        await alice.send(thread, "/help")
        assert await alice.history(thread)
        # Bob cannot open, post into or read the media of Alice's conversation.
        with pytest.raises(aiohttp.ClientResponseError) as refused:
            await bob.send(thread, "hi")
        assert refused.value.status == 404
        message = (await alice.history(thread))[0]
        async with bob_http.get(bot.url + f"media/{message['id']}/0") as r:
            assert r.status == 404


async def test_loopback_without_tokens_answers_only_its_own_pages(tmp_path: Path) -> None:
    async with web_bot(web_config(tmp_path)) as bot, aiohttp.ClientSession() as http:
        async with http.get(bot.url + "api/threads") as r:
            assert r.status == 200 and (await r.json())["user"] == "local"
        # A page of another site, or a name rebound to 127.0.0.1, gets nothing.
        async with http.get(bot.url + "api/threads", headers={"Host": "evil.example:80"}) as r:
            assert r.status == 403
        async with http.post(
            bot.url + "api/threads", headers={"X-Framechain": "1", "Origin": "http://evil.example"}
        ) as r:
            assert r.status == 403
        async with http.post(bot.url + "api/threads") as r:  # a plain form post from anywhere
            assert r.status == 403
        async with http.get(bot.url + "media/..%2F..%2Fetc%2Fpasswd/0") as r:
            assert r.status == 404


def test_a_non_loopback_address_needs_tokens(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[web]\nlisten = "0.0.0.0:8765"\n')
    with pytest.raises(ConfigError, match=r"web\.listen.*web\.tokens"):
        load_config(path, env={})
    path.write_text(f'[web]\nlisten = "0.0.0.0:8765"\n{TOKENS}')
    config = load_config(path, env={})
    assert config.web.admins == {"alice"}
    assert ALICE not in repr(config)
    assert config.enabled_platforms == ["web"]
    for bad, why in (('"8765"', "host:port"), ('"127.0.0.1:0"', "host:port")):
        path.write_text(f"[web]\nlisten = {bad}\n")
        with pytest.raises(ConfigError, match=why):
            load_config(path, env={})
    path.write_text('[web]\nlisten = "127.0.0.1:8765"\n[[web.tokens]]\ntoken = "short"\nuser = "a"\n')
    with pytest.raises(ConfigError, match="shorter than 16"):
        load_config(path, env={})
    path.write_text('[web]\nlisten = "127.0.0.1:8765"\n')
    assert load_config(path, env={}).web.admins == {"local"}


async def test_the_web_migration_keeps_the_sessions_and_lets_web_ones_in(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    db = sqlite3.connect(path)
    for script in MIGRATIONS[:3]:
        db.executescript(script)
    db.execute(
        "INSERT INTO sessions (id, platform, chat_id, owner_id, state, created_at, updated_at)"
        " VALUES ('s1', 'telegram', '5', '7', 'awaiting_prompt', 1, 1)"
    )
    db.execute(
        "INSERT INTO segments (session_id, idx, attempt, prompt, status, queue_seq, created_at, updated_at)"
        " VALUES ('s1', 0, 1, 'waves', 'approved', 1, 1, 1)"
    )
    db.execute("PRAGMA user_version = 3")
    db.commit()
    db.close()
    async with Store.open(path) as store:
        assert store.schema_version == len(MIGRATIONS)
        old = await store.get_session("s1")
        assert (old.platform.value, old.owner_id) == ("telegram", "7")
        assert [s.prompt for s in await store.list_segments("s1")] == ["waves"]
        row = await store.create_session(platform="web", chat_id="local", thread_id="abc", owner_id="local")
        assert (await store.find_active_session("web", "local", "abc", "local")) == row


async def test_a_picture_over_the_limit_is_refused_with_the_limit(tmp_path: Path) -> None:
    config = web_config(tmp_path)
    config.write_text(config.read_text() + "\n[limits]\nimage_bytes = 100000\n")
    async with web_bot(config) as bot, aiohttp.ClientSession() as http:
        client = Client(bot, http)
        thread = await client.new_thread()
        await client.send(thread, "a lighthouse", b"\x89PNG" + bytes(300_000))
        # A prompt without a picture, in a conversation without a session, says how to begin.
        await client.send(thread, "a lighthouse")
        # Typed commands reach the conversation as on the other platforms, answered in the chat.
        await client.send(thread, "/frobnicate")
        await client.send(thread, "/help")
        said = [m["text"] for m in await client.history(thread) if m["author"] == "bot"]
        assert said[:3] == [
            too_large_text(300_004, 100_000),
            START_HINT,
            "I don't know /frobnicate. Send /help for the commands.",
        ]
        assert "/finish" in said[3]


def test_web_admins_are_exempt_from_quotas_like_other_platforms_admins(tmp_path: Path) -> None:
    from bot.conversation.quotas import Quotas

    path = tmp_path / "c.toml"
    path.write_text(f'[web]\nlisten = "127.0.0.1:8765"\n{TOKENS}')
    quotas = Quotas(None, load_config(path, env={}))  # type: ignore[arg-type]  # is_admin reads only the config
    assert quotas.is_admin("web", "alice") and not quotas.is_admin("web", "bob")
    assert not quotas.is_admin("telegram", "alice")
    assert Quotas(None, load_config(None, env={})).is_admin("web", "local")  # type: ignore[arg-type]
