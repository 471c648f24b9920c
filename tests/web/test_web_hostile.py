"""Odd input through the web chat's HTTP side (what the page posts): a prompt far over the limit,
a text field far over any prompt, an HTML file named .png."""

from __future__ import annotations

from pathlib import Path

import aiohttp

from shared.pictures import Refused, check_picture
from tests.bot.service_harness import picture_bytes
from tests.web.harness import Client, web_bot, web_config


async def bot_texts(client: Client, thread: str) -> list[str]:
    return [m["text"] for m in await client.history(thread) if m["author"] == "bot"]


async def test_a_long_prompt_is_refused_with_its_real_length(tmp_path: Path) -> None:
    async with web_bot(web_config(tmp_path)) as bot, aiohttp.ClientSession() as session:
        client = Client(bot, session)
        thread = await client.new_thread()
        limit = bot.config.limits.prompt_chars
        assert await client.send(thread, "x" * 10_000, picture_bytes()) == []
        texts = await bot_texts(client, thread)
        assert f"That prompt is 10000 characters; the limit is {limit}. Please shorten it and send it again." in texts
        # A megabyte of text is read no further than a bound, and refused like any long prompt.
        assert await client.send(thread, "é" * 500_000) == []
        assert (await bot_texts(client, thread))[-1].startswith("That prompt is 32768 characters")


async def test_an_html_file_named_png_gets_the_picture_checks_sentence(tmp_path: Path) -> None:
    page = b"<!doctype html><html><body><script>alert(1)</script></body></html>"
    refusal = check_picture(page)
    assert isinstance(refusal, Refused)
    async with web_bot(web_config(tmp_path)) as bot, aiohttp.ClientSession() as session:
        client = Client(bot, session)
        thread = await client.new_thread()
        assert await client.send(thread, "a lighthouse", page) == []
        assert await bot_texts(client, thread) == [refusal.reason]
        assert not list((bot.config.data_dir / "sessions").glob("**/*"))
