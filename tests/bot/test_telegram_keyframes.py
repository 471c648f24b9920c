"""/end on Telegram, through the real python-telegram-bot Application and the Bot API stand-in:
a photo captioned /end, /end as a reply to a picture, /end clear, and a bare /end."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.telegram_adapter import TelegramFrontEnd
from bot.telegram_adapter.front import COMMANDS, NOT_A_PICTURE
from tests.bot.service_harness import picture_bytes
from tests.bot.telegram_standin import BotApiStandIn
from tests.bot.test_telegram import (
    ADMIN,
    GROUP,
    USER,
    conversation,
    make_config,
    png,
    private,
    running,
    segment_post,
)
from tests.bot.test_telegram_flow import ALICE, bot_process, takes, telegram_config
from tests.bot.test_telegram_flow import GROUP as FLOW_GROUP


@pytest.fixture
async def api() -> AsyncIterator[BotApiStandIn]:
    async with BotApiStandIn() as standin:
        yield standin


@pytest.fixture
async def front(api: BotApiStandIn) -> AsyncIterator[TelegramFrontEnd]:
    async with running(make_config(api, admin_ids=(ADMIN,))) as front_end:
        yield front_end


async def test_a_photo_captioned_end_sets_the_keyframe(api: BotApiStandIn, front: TelegramFrontEnd) -> None:
    picture = png(80, 60, (1, 2, 3))
    await api.user_message(USER, USER, photo=picture, caption="/end")
    (call,) = await conversation(front).wait(1)
    assert (call.method, call.chat, call.user_id) == ("end_frame", private(), str(USER))
    assert call.args == {"image": picture, "clear": False, "is_admin": False}
    assert "end" in {c["command"] for c in api.commands} and "end" in dict(COMMANDS)


async def test_end_as_a_reply_to_a_picture_uses_that_picture(api: BotApiStandIn, front: TelegramFrontEnd) -> None:
    theirs = png(90, 70, (9, 9, 9))
    photo = await api.user_message(GROUP, USER, photo=theirs)
    await api.user_message(GROUP, ADMIN, text="/end", reply_to=photo["message_id"])
    calls = await conversation(front).wait(2)
    assert [c.method for c in calls] == ["image", "end_frame"]
    assert calls[1].args == {"image": theirs, "clear": False, "is_admin": True}


async def test_end_as_a_reply_to_the_bots_hand_off_frame(
    api: BotApiStandIn, front: TelegramFrontEnd, tmp_path: Path
) -> None:
    post = segment_post(tmp_path)
    posted = await front.port.post_segment(private(), post)
    await api.user_message(USER, USER, text="/end", reply_to=int(posted["frame"]))
    (call,) = await conversation(front).wait(1)
    assert call.method == "end_frame" and call.args["image"]  # the frame's bytes, as Telegram serves them


async def test_end_clear_and_a_bare_end(api: BotApiStandIn, front: TelegramFrontEnd) -> None:
    await api.user_message(USER, USER, text="/end clear")
    await api.user_message(USER, USER, text="/end")
    # A reply to a text is no picture: asked plainly, the service says what /end needs.
    asked = await front.port.send_text(private(), "What happens next?")
    await api.user_message(USER, USER, text="/end", reply_to=int(asked))
    calls = await conversation(front).wait(3)
    assert [(c.method, c.args["image"], c.args["clear"]) for c in calls] == [
        ("end_frame", None, True),
        ("end_frame", None, False),
        ("end_frame", None, False),
    ]


async def test_end_with_a_file_that_is_not_a_picture(api: BotApiStandIn, front: TelegramFrontEnd) -> None:
    await api.user_message(
        USER, USER, document=b"%PDF-1.7 ...", file_name="notes.pdf", mime_type="application/pdf", caption="/end"
    )
    (reply,) = await api.wait_for("sendMessage")
    assert reply.params["text"] == NOT_A_PICTURE
    assert conversation(front).calls == []


async def test_a_session_aimed_at_a_keyframe_on_telegram(tmp_path: Path) -> None:
    async with BotApiStandIn() as standin:
        config, config_path = telegram_config(tmp_path, standin)
        async with bot_process(config, config_path) as bot:
            await standin.user_message(FLOW_GROUP, ALICE, photo=picture_bytes(), caption="/start")
            await standin.wait_for("sendMessage")
            keyframe = png(96, 96, (230, 30, 40))
            await standin.user_message(FLOW_GROUP, ALICE, photo=keyframe, caption="/end")
            answers = await standin.wait_for("sendMessage", 2)
            assert answers[-1].params["text"].startswith("🎯 Got the end keyframe. Segment 1 will end on this picture")
            await standin.user_message(FLOW_GROUP, ALICE, text="the sky turns red")
            await standin.wait_for("sendVideo")
            [take] = takes(standin)
            assert "🎯 aimed at your end keyframe" in take.params["caption"]
            row = await bot.store.find_active_session("telegram", str(FLOW_GROUP), "", str(ALICE))
            assert row is not None and str(row.settings["end_image"]).endswith("keyframe-1.png")
