"""The storyboard sheet on Telegram: the real Application against the Bot API stand-in, in front
of the real service with preview workers. It comes as a photo under /status once a segment is
approved, and once after the final video, also across a restart."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

from PIL import Image

from bot.conversation.storyboard import MAX_HEIGHT, MAX_WIDTH
from bot.ports import Action, control_id
from tests.bot.service_harness import picture_bytes
from tests.bot.telegram_standin import BotApiStandIn, Call
from tests.bot.test_telegram_flow import ALICE, GROUP, bot_process, segment_of, takes, telegram_config, until

SO_FAR = "Storyboard so far: the start picture and "
FINAL = "The storyboard of your video: the start picture and "


def sheets(api: BotApiStandIn, caption: str) -> list[Call]:
    return [p for p in api.sent("sendPhoto") if p.params.get("caption", "").startswith(caption)]


async def status(api: BotApiStandIn) -> Call:
    """Ask /status and wait for its answer (which tells the asker's quota)."""

    def answer(call: Call) -> bool:
        return "Your quota" in (call.params.get("text") or "")

    before = len([c for c in api.sent("sendMessage") if answer(c)])
    await api.user_message(GROUP, ALICE, text="/status")
    return (await api.wait_for("sendMessage", before + 1, where=answer))[-1]


def picture_of(call: Call) -> Image.Image:
    upload = call.file("photo")
    assert upload is not None
    return Image.open(io.BytesIO(upload.data))


async def test_status_and_the_final_bring_the_storyboard(tmp_path: Path) -> None:
    async with BotApiStandIn() as api:
        config, config_path = telegram_config(tmp_path, api)
        process = contextlib.AsyncExitStack()
        try:
            await process.enter_async_context(bot_process(config, config_path))
            await api.user_message(GROUP, ALICE, photo=picture_bytes(), caption="/start the sun rises 日の出 🌅")
            await until(lambda: len(takes(api)) == 1, "the first take")
            await status(api)
            take = takes(api)[0]
            await api.press(GROUP, ALICE, take.result["message_id"], control_id(segment_of(take), Action.APPROVE))
            await api.wait_for("sendMessage", where=lambda c: c.params["text"].startswith("Segment 1 approved"))
            assert sheets(api, SO_FAR) == []  # the /status before the approval had none

            status_answer = await status(api)
            await until(lambda: bool(sheets(api, SO_FAR)), "the storyboard under the status")
            [status_sheet] = sheets(api, SO_FAR)
            assert status_sheet.params["caption"] == SO_FAR + "1 approved segment."
            assert status_answer.params["text"].startswith("1 segment approved") and status_answer.at <= status_sheet.at
            with picture_of(status_sheet) as sheet:
                assert sheet.format == "JPEG" and sheet.width <= MAX_WIDTH and sheet.height <= MAX_HEIGHT

            # After a restart, /finish: the sheet follows the video, once.
            await process.aclose()
            await process.enter_async_context(bot_process(config, config_path))
            await api.user_message(GROUP, ALICE, text="/finish")
            await until(lambda: bool(sheets(api, FINAL)), "the storyboard after the final")
            final_video = api.sent("sendVideo")[-1]
            [final_sheet] = sheets(api, FINAL)
            assert final_video.at <= final_sheet.at and not final_video.params.get("reply_markup")
            assert final_sheet.params["caption"] == FINAL + "1 approved segment."

            await process.aclose()  # and a restart after it sends nothing again
            await process.enter_async_context(bot_process(config, config_path))
            await status(api)
            assert len(sheets(api, FINAL)) == 1 and len(sheets(api, SO_FAR)) == 1
        finally:
            await process.aclose()
