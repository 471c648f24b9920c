"""Live previews on both platforms, through the real stacks: Telegram (the Application against
the Bot API stand-in) and Discord (discord.py under simcord), with preview workers."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path
from typing import Any

from PIL import Image

from tests.bot.service_harness import picture_bytes
from tests.bot.telegram_standin import BotApiStandIn
from tests.bot.test_discord_flow import studio
from tests.bot.test_discord_flow import until as discord_until
from tests.bot.test_telegram_flow import ALICE, GROUP, bot_process, takes, telegram_config, until

PREVIEWS = {"steps": 8, "step_delay": 0.05, "extra": "live_preview_every = 0.25"}


async def test_telegram_previews_replace_the_text_then_edit_the_photo(tmp_path: Path) -> None:
    async with BotApiStandIn() as api:
        config, config_path = telegram_config(tmp_path, api, **PREVIEWS)
        async with contextlib.AsyncExitStack() as process:
            await process.enter_async_context(bot_process(config, config_path))
            await api.user_message(GROUP, ALICE, photo=picture_bytes(), caption="/start the sun rises")
            await until(lambda: len(takes(api)) == 1, "the first take")
            await until(lambda: bool(api.sent("editMessageMedia")), "a preview edited in")

            [text] = [c for c in api.sent("sendMessage") if c.params["text"].startswith("⏳ Segment 1")]
            # A text message cannot take a picture: the first preview comes as a photo in its place.
            [photo] = [c for c in api.sent("sendPhoto") if "step" in c.params.get("caption", "")]
            assert any(c.params["message_id"] == text.result["message_id"] for c in api.sent("deleteMessage"))
            # Later previews are edited into that photo, and so is the progress text (as caption).
            edits = api.sent("editMessageMedia")
            assert all(e.params["message_id"] == photo.result["message_id"] for e in edits)
            for edit in edits:
                assert re.search(r"step \d/8", edit.params["media"]["caption"])
                upload = edit.files[edit.params["media"]["media"].removeprefix("attach://")]
                with Image.open(io.BytesIO(upload.data)) as strip:
                    assert strip.width > 3 * strip.height
            assert not [c for c in api.sent("editMessageText", ok_only=False) if not c.ok]
            # The ✖ Stop stays on the progress message through every edit and the replacement.
            stop = text.params["reply_markup"]["inline_keyboard"][0][0]
            assert stop["text"] == "✖ Stop" and stop["callback_data"].endswith(":stop")
            progress_calls = [
                *(c for c in api.sent("editMessageText") if c.params["message_id"] == text.result["message_id"]),
                photo,
                *edits,
                *(c for c in api.sent("editMessageCaption") if c.params["message_id"] == photo.result["message_id"]),
            ]
            assert all(c.params["reply_markup"]["inline_keyboard"] == [[stop]] for c in progress_calls)
            await until(
                lambda: any(c.params["message_id"] == photo.result["message_id"] for c in api.sent("deleteMessage")),
                "the progress photo to go once the take is up",
            )


async def test_discord_previews_are_attached_to_the_progress_message(tmp_path: Path) -> None:
    async with studio(tmp_path, **PREVIEWS) as s:
        thread, _ = await s.session("the sun rises")
        await s.first_take(thread)
        edits = [
            e
            for e in s.env.http_requests
            if e.method == "PATCH" and e.path.startswith(f"/channels/{thread.id}/messages/")
        ]
        pictures = [e for e in edits if isinstance(e.json, dict) and e.json.get("attachments")]
        assert pictures, "no preview reached the progress message"
        assert len({e.path for e in pictures}) == 1  # one progress message, edited in place
        for edit in pictures:
            assert [a["filename"] for a in edit.json["attachments"]] == ["preview-seg001-take1.png"]
            assert re.search(r"step \d/8", edit.json["content"])


async def test_telegram_stop_on_the_progress_message_stops_the_take(tmp_path: Path) -> None:
    async with BotApiStandIn() as api:
        config, config_path = telegram_config(tmp_path, api, steps=40, step_delay=0.05)
        async with contextlib.AsyncExitStack() as process:
            await process.enter_async_context(bot_process(config, config_path))
            await api.user_message(GROUP, ALICE, photo=picture_bytes(), caption="/start the sun rises")
            await until(lambda: bool(api.sent("sendPhoto")), "the first preview")
            [photo] = api.sent("sendPhoto")
            data = photo.params["reply_markup"]["inline_keyboard"][0][0]["callback_data"]
            await api.press(GROUP, ALICE, photo.result["message_id"], data)
            await api.wait_for("sendMessage", where=lambda c: c.params["text"].startswith("Stopped segment 1"))
            assert takes(api) == []


async def test_discord_stop_on_the_progress_message_stops_the_take(tmp_path: Path) -> None:
    async with studio(tmp_path, steps=40, step_delay=0.05) as s:
        thread, _ = await s.session("the sun rises")

        def progress() -> list[Any]:
            return [m for m in thread.history() if m.content.startswith("⏳ Segment 1") and "step" in m.content]

        await discord_until(s.env, lambda: bool(progress()), "the progress message to run")
        await s.alice.click(progress()[0], label="✖ Stop")
        await discord_until(
            s.env, lambda: any(m.content.startswith("Stopped segment 1") for m in thread.history()), "the stop"
        )
