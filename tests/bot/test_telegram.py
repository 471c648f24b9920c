"""The Telegram front end: the real python-telegram-bot Application, over HTTP, against the Bot API
stand-in. The conversation service is replaced by a recording fake (the outside of this unit)."""

from __future__ import annotations

import asyncio
import contextlib
import io
import struct
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from telegram.error import InvalidToken, NetworkError

from bot.ports import Action, ChatRef, FinalPost, SegmentPost, control_id
from bot.telegram_adapter import RetryPolicy, TelegramFrontEnd, TelegramPort, UploadTooLarge, build_telegram
from bot.telegram_adapter.front import COMMANDS, NOT_A_PICTURE, parse_command
from bot.telegram_adapter.media import mp4_info, photo_upload, thumbnail_jpeg
from bot.telegram_adapter.port import MB, upload_limit_bytes
from bot.telegram_adapter.settings_keyboard import OTHER_SESSION, SETTINGS_CLOSED
from shared.config import Config, LimitsConfig, Secret, TelegramConfig
from tests.bot.recording_conversation import RecordingConversation
from tests.bot.telegram_standin import BOT_USERNAME, BotApiStandIn

FAST = RetryPolicy(attempts=4, base_delay=0.01, max_delay=0.05)
USER = 42  # a private chat's id is its user's id
GROUP = -100777
ADMIN = 99


def png(width: int = 64, height: int = 48, colour: tuple[int, int, int] = (200, 40, 40)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(buffer, "PNG")
    return buffer.getvalue()


def make_config(api: BotApiStandIn, **telegram: Any) -> Config:
    # Most tests here are about other things: they serve everyone (open = true) unless they say
    # who may use the bot (test_access.py holds the access cases).
    telegram.setdefault("open", not any(key.startswith("allowed_") for key in telegram))
    return Config(
        telegram=TelegramConfig(
            token=Secret(api.token), api_base_url=api.base_url, api_file_url=api.file_url, **telegram
        ),
        limits=LimitsConfig(),
    )


#: How long a piece of a paste waits for the next one, in these tests.
PASTE_WAIT = 0.4


@contextlib.asynccontextmanager
async def running(config: Config, *, paste_wait: float = PASTE_WAIT) -> AsyncIterator[TelegramFrontEnd]:
    front_end = build_telegram(config, RecordingConversation(), retry=FAST, poll_timeout=2, paste_wait=paste_wait)
    await front_end.start()
    try:
        yield front_end
    finally:
        await front_end.stop()


@pytest.fixture
async def api() -> AsyncIterator[BotApiStandIn]:
    async with BotApiStandIn() as standin:
        yield standin


@pytest.fixture
async def front(api: BotApiStandIn) -> AsyncIterator[TelegramFrontEnd]:
    async with running(make_config(api, admin_ids=(ADMIN,))) as front_end:
        yield front_end


def conversation(front: TelegramFrontEnd) -> RecordingConversation:
    assert isinstance(front.conversation, RecordingConversation)
    return front.conversation


def private(user: int = USER) -> ChatRef:
    return ChatRef("telegram", str(user))


def segment_post(tmp_path: Path, segment_id: int = 7) -> SegmentPost:
    video = tmp_path / "segment.mp4"
    video.write_bytes(b"\x00\x00\x00\x18ftypisom" + bytes(5000))
    frame = tmp_path / "last.png"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (480, 832, 3), dtype=np.uint8)).save(frame)
    return SegmentPost(
        segment_id=segment_id,
        index=2,
        attempt=1,
        video=video,
        last_frame=frame,
        caption="Segment 2 (take 1): a cat walks",
        width=832,
        height=480,
        frames=81,
        seconds=81 / 16,
        preview=False,
        controls=tuple(
            (label, control_id(segment_id, action))
            for label, action in (
                ("✅ Approve", Action.APPROVE),
                ("🔁 Regenerate", Action.REGENERATE),
                ("↩ Undo", Action.UNDO),
                ("🏁 Finish", Action.FINISH),
            )
        ),
    )


def tiny_mp4(path: Path, frames: int = 17, width: int = 64, height: int = 48) -> Path:
    from worker.video import write_segment_master

    rng = np.random.default_rng(1)
    return write_segment_master(rng.integers(0, 255, (frames, height, width, 3), dtype=np.uint8), path, 16)


def button_data(markup: dict[str, Any]) -> list[str]:
    return [button["callback_data"] for row in markup["inline_keyboard"] for button in row]


# --- starting a session ------------------------------------------------------------------------


async def test_start_from_photo_caption_registers_commands_and_polls_reactions(
    api: BotApiStandIn, front: TelegramFrontEnd
) -> None:
    picture = png()
    await api.user_message(USER, USER, photo=picture, caption="/start a cat walks into the light")
    (call,) = await conversation(front).wait(1)
    assert (call.method, call.chat, call.user_id) == ("start", private(), str(USER))
    assert call.args == {"image": picture, "prompt": "a cat walks into the light", "is_admin": False}
    assert (
        {c["command"] for c in api.commands}
        >= {n for n, _ in COMMANDS}
        >= {
            "start",
            "finish",
            "undo",
            "cancel",
            "status",
            "settings",
            "help",
        }
    )
    polls = api.sent("getUpdates")
    assert {"message", "callback_query", "message_reaction"} <= set(polls[0].params["allowed_updates"])


async def test_start_from_image_document_keeps_the_file_bytes(api: BotApiStandIn, front: TelegramFrontEnd) -> None:
    picture = png(300, 200)
    await api.user_message(GROUP, USER, document=picture, file_name="still.png", caption="/start")
    (call,) = await conversation(front).wait(1)
    assert call.method == "start" and call.chat == ChatRef("telegram", str(GROUP))
    assert call.args["image"] == picture and call.args["prompt"] is None


async def test_bare_start_then_photo_then_photo_with_prompt(api: BotApiStandIn, front: TelegramFrontEnd) -> None:
    first, second = png(colour=(1, 2, 3)), png(colour=(4, 5, 6))
    await api.user_message(USER, USER, text="/start")
    await api.user_message(USER, USER, photo=first)
    await api.user_message(USER, USER, photo=second, caption="the camera pans left")
    calls = await conversation(front).wait(4)
    assert [(c.method, c.args.get("image"), c.args.get("text")) for c in calls] == [
        ("start", None, None),
        ("image", first, None),
        ("image", second, None),
        ("text", None, "the camera pans left"),
    ]


async def test_non_image_document_gets_a_clear_answer(api: BotApiStandIn, front: TelegramFrontEnd) -> None:
    message = await api.user_message(
        USER, USER, document=b"%PDF-1.7 ...", file_name="notes.pdf", mime_type="application/pdf", caption="/start"
    )
    (reply,) = await api.wait_for("sendMessage")
    assert reply.params["text"] == NOT_A_PICTURE
    assert reply.params["reply_parameters"]["message_id"] == message["message_id"]
    assert conversation(front).calls == [] and api.sent("getFile") == []


async def test_oversized_picture_is_refused_before_download(api: BotApiStandIn, front: TelegramFrontEnd) -> None:
    await api.user_message(USER, USER, photo=png(), caption="/start", claimed_size=31 * MB)
    (reply,) = await api.wait_for("sendMessage")
    assert "31.0 MB" in reply.params["text"] and "limit is 20 MB" in reply.params["text"]
    assert api.sent("getFile", ok_only=False) == [] and conversation(front).calls == []


async def test_picture_over_the_configured_limit_is_refused(api: BotApiStandIn) -> None:
    config = replace(make_config(api), limits=LimitsConfig(image_bytes=1000))
    async with running(config) as front_end:
        await api.user_message(USER, USER, document=png(200, 200, (9, 9, 9)) + bytes(2000), caption="/start")
        (reply,) = await api.wait_for("sendMessage")
        assert "the limit is 1 KB" in reply.params["text"]
        assert conversation(front_end).calls == []


# --- prompts and commands ----------------------------------------------------------------------


async def test_prompts_as_messages_and_replies(api: BotApiStandIn, front: TelegramFrontEnd) -> None:
    asked = await front.port.send_text(private(), "What happens next?")
    await api.user_message(USER, USER, text="a dog runs")
    await api.user_message(USER, USER, text="it jumps", reply_to=int(asked))
    calls = await conversation(front).wait(2)
    assert [(c.method, c.args["text"]) for c in calls] == [("text", "a dog runs"), ("text", "it jumps")]


async def test_commands_are_forwarded_and_foreign_ones_ignored(api: BotApiStandIn, front: TelegramFrontEnd) -> None:
    await api.user_message(GROUP, USER, text="/start@some_other_bot")
    await api.user_message(GROUP, USER, text=f"/undo@{BOT_USERNAME}")
    await api.user_message(GROUP, ADMIN, text="/regenerate  slower, with rain ")
    await api.user_message(USER, USER, text="/frobnicate")
    calls = await conversation(front).wait(2)
    assert [(c.args["name"], c.args["argument"], c.args["is_admin"]) for c in calls] == [
        ("undo", "", False),
        ("regenerate", "slower, with rain", True),
    ]
    (reply,) = await api.wait_for("sendMessage")
    assert reply.params["chat_id"] == USER and "/frobnicate" in reply.params["text"]


def test_parse_command() -> None:
    command = parse_command("/Start@bot a cat\nwalks", "BOT")
    assert command is not None and (command.name, command.argument) == ("start", "a cat\nwalks")
    assert parse_command("/start@other", "bot") is None
    assert parse_command("start", "bot") is None


LIVE = {
    "session": "0123456789abcdef0123456789abcdef",
    "owner": str(USER),
    "seconds": "5",
    "steps": "20",
    "seed": "random",
}


def labels(markup: dict[str, Any] | None) -> list[str]:
    return [button["text"] for row in (markup or {}).get("inline_keyboard", []) for button in row]


async def test_settings_keyboard_shows_and_changes_the_settings(api: BotApiStandIn, front: TelegramFrontEnd) -> None:
    conversation(front).settings = dict(LIVE)
    await api.user_message(USER, USER, text="/settings")
    (keyboard,) = await api.wait_for("sendMessage")
    markup = keyboard.params["reply_markup"]
    data = button_data(markup)
    assert {label for label in labels(markup) if label.startswith("• ")} == {"• 5 s", "• 20 steps", "• 🎲 Random seed"}
    assert all(len(d.encode()) <= 64 for d in data)
    three = next(d for d in data if d.endswith(":seconds=3"))
    query = await api.press(USER, USER, keyboard.result["message_id"], three)
    (edit,) = await api.wait_for("editMessageReplyMarkup")
    assert "• 3 s" in labels(edit.params["reply_markup"]) and "5 s" in labels(edit.params["reply_markup"])
    assert labels(api.message(USER, keyboard.result["message_id"])["reply_markup"]) == labels(
        edit.params["reply_markup"]
    )
    await api.user_message(USER, USER, text="/settings steps=8 seed=42")
    calls = await conversation(front).wait(3)
    assert [(c.args["name"], c.args["argument"]) for c in calls] == [
        ("settings", ""),
        ("settings", "seconds=3"),
        ("settings", "steps=8 seed=42"),
    ]
    assert api.query_answered(query)
    assert len(api.sent("sendMessage")) == 1  # a typed change gets no second keyboard


async def test_a_settings_button_from_before_they_named_their_session_still_works(
    api: BotApiStandIn, front: TelegramFrontEnd
) -> None:
    conversation(front).settings = dict(LIVE)
    keyboard = await front.port.send_text(private(), "Settings")
    query = await api.press(USER, USER, int(keyboard), "set:seconds=3")
    await api.wait_for("answerCallbackQuery")
    (call,) = await conversation(front).wait(1)
    assert (call.args["name"], call.args["argument"]) == ("settings", "seconds=3") and api.query_answered(query)


async def test_settings_keyboard_marks_typed_values_too(api: BotApiStandIn, front: TelegramFrontEnd) -> None:
    conversation(front).settings = {**LIVE, "steps": "25", "seed": "42"}
    await api.user_message(USER, USER, text="/settings")
    (keyboard,) = await api.wait_for("sendMessage")
    marked = {label for label in labels(keyboard.params["reply_markup"]) if label.startswith("• ")}
    assert marked == {"• 5 s", "• 25 steps", "• Seed 42"}


async def test_no_settings_keyboard_without_a_session(api: BotApiStandIn, front: TelegramFrontEnd) -> None:
    await api.user_message(USER, USER, text="/settings")
    await api.user_message(USER, USER, text="/status")
    await conversation(front).wait(2)
    await asyncio.sleep(0.2)
    assert api.sent("sendMessage") == []  # the service answers; no keyboard for nothing


async def test_settings_keyboard_of_an_ended_session_closes_when_pressed(
    api: BotApiStandIn, front: TelegramFrontEnd
) -> None:
    conversation(front).settings = dict(LIVE)
    await api.user_message(USER, USER, text="/settings")
    (keyboard,) = await api.wait_for("sendMessage")
    two = next(d for d in button_data(keyboard.params["reply_markup"]) if d.endswith(":seconds=2"))
    conversation(front).settings = None  # the session was cancelled
    query = await api.press(USER, USER, keyboard.result["message_id"], two)
    (answer,) = await api.wait_for("answerCallbackQuery")
    assert answer.params["text"] == SETTINGS_CLOSED and api.query_answered(query)
    closed = api.message(USER, keyboard.result["message_id"])
    assert "reply_markup" not in closed and closed["text"] == SETTINGS_CLOSED
    assert [c.args["argument"] for c in conversation(front).of("command")] == [""]  # nothing changed

    # A new session since: the old keyboard closes too, and does not change the new session.
    conversation(front).settings = dict(LIVE)
    await api.user_message(USER, USER, text="/settings")
    second = (await api.wait_for("sendMessage", 2))[-1]
    three = next(d for d in button_data(second.params["reply_markup"]) if d.endswith(":seconds=3"))
    conversation(front).settings = {**LIVE, "session": "fedcba9876543210fedcba9876543210"}
    await api.press(USER, USER, second.result["message_id"], three)
    await api.wait_for("answerCallbackQuery", 2)
    assert "reply_markup" not in api.message(USER, second.result["message_id"])
    assert [c.args["argument"] for c in conversation(front).of("command")] == ["", ""]


async def test_someone_elses_settings_keyboard_changes_nothing(api: BotApiStandIn, front: TelegramFrontEnd) -> None:
    conversation(front).settings = {**LIVE, "owner": "7"}
    await api.user_message(GROUP, 7, text="/settings")
    (keyboard,) = await api.wait_for("sendMessage")
    three = next(d for d in button_data(keyboard.params["reply_markup"]) if d.endswith(":seconds=3"))
    conversation(front).settings = {**LIVE, "session": "fedcba9876543210fedcba9876543210"}  # the presser's own
    await api.press(GROUP, USER, keyboard.result["message_id"], three)
    (answer,) = await api.wait_for("answerCallbackQuery")
    assert answer.params["text"] == OTHER_SESSION
    assert api.message(GROUP, keyboard.result["message_id"])["reply_markup"] == keyboard.params["reply_markup"]
    assert len(conversation(front).of("command")) == 1


# --- long pastes ---------------------------------------------------------------------------------


def typed(length: int) -> str:
    """A prompt of ``length`` characters, as a user would paste it."""
    sentence = "The camera glides over misty hills while a red kite circles above the valley. "
    return (sentence * (length // len(sentence) + 1))[:length]


async def paste(
    api: BotApiStandIn, text: str, *, chat: int = USER, user: int = USER, cut: int = 4096, **kw: Any
) -> None:
    """What Telegram for Android sends for a long text: pieces cut at exactly ``cut``."""
    for start in range(0, len(text), cut):
        await api.user_message(chat, user, text=text[start : start + cut], **kw)


async def test_a_long_paste_reaches_the_conversation_as_one_text(api: BotApiStandIn, front: TelegramFrontEnd) -> None:
    text = typed(10_000)
    await paste(api, text)  # 4096 + 4096 + 1808
    await api.user_message(USER, USER, text="/status")
    calls = await conversation(front).wait(2)
    assert [(c.method, len(c.args.get("text", ""))) for c in calls] == [("text", 10_000), ("command", 0)]
    assert calls[0].args["text"] == text
    await asyncio.sleep(PASTE_WAIT + 0.2)
    assert len(conversation(front).calls) == 2  # nothing else follows after the wait


async def test_a_paste_just_over_the_limit_joins_into_one_prompt(api: BotApiStandIn, front: TelegramFrontEnd) -> None:
    text = typed(4100)
    await paste(api, text)  # 4096 + 4
    (call,) = await conversation(front).wait(1)
    assert call.args["text"] == text


async def test_a_paste_of_whole_pieces_is_delivered_after_the_wait(api: BotApiStandIn, front: TelegramFrontEnd) -> None:
    text = typed(8192)
    await paste(api, text)  # 4096 + 4096: no shorter last piece says it is complete
    (call,) = await conversation(front).wait(1)
    assert call.args["text"] == text
    started = time.monotonic()
    await asyncio.sleep(PASTE_WAIT + 0.3)
    assert len(conversation(front).calls) == 1 and time.monotonic() - started >= PASTE_WAIT


async def test_pieces_cut_at_a_word_are_joined_with_a_space(api: BotApiStandIn, front: TelegramFrontEnd) -> None:
    # Telegram Desktop cuts at a break in the second half of the limit; the server trims the space.
    first, second = "a" * 3000, "b" * 900
    await api.user_message(USER, USER, text=first)
    await api.user_message(USER, USER, text=second)
    (call,) = await conversation(front).wait(1)
    assert call.args["text"] == first + " " + second


async def test_pieces_are_measured_as_telegram_counts(api: BotApiStandIn, front: TelegramFrontEnd) -> None:
    first = "🎬" * 2048  # 2048 characters, 4096 UTF-16 code units: a full piece
    await api.user_message(USER, USER, text=first)
    await api.user_message(USER, USER, text="and then the end")
    (call,) = await conversation(front).wait(1)
    assert call.args["text"] == first + "and then the end"


async def test_ordinary_prompts_are_not_delayed(api: BotApiStandIn) -> None:
    async with running(make_config(api), paste_wait=5.0) as front_end:
        started = time.monotonic()
        await api.user_message(USER, USER, text=typed(2000))
        await api.user_message(USER, USER, text="a short one")
        calls = await conversation(front_end).wait(2, timeout=3)
        assert [len(c.args["text"]) for c in calls] == [2000, 11]
        assert time.monotonic() - started < 2.0


async def test_other_users_and_commands_are_not_part_of_a_paste(api: BotApiStandIn, front: TelegramFrontEnd) -> None:
    text = typed(4096)
    await api.user_message(GROUP, USER, text=text)
    await api.user_message(GROUP, 7, text="unrelated chatter")  # someone else, at the same time
    await api.user_message(GROUP, USER, text="/finish")  # the paste is complete: it goes first
    calls = await conversation(front).wait(3)
    assert [(c.method, c.user_id, c.args.get("text", c.args.get("name"))) for c in calls] == [
        ("text", "7", "unrelated chatter"),
        ("text", str(USER), text),
        ("command", str(USER), "finish"),
    ]


async def test_a_paste_as_replies_joins_too(api: BotApiStandIn, front: TelegramFrontEnd) -> None:
    asked = int(await front.port.send_text(ChatRef("telegram", str(GROUP)), "What happens next?"))
    text = typed(5000)
    await paste(api, text, chat=GROUP, reply_to=asked)
    (call,) = await conversation(front).wait(1)
    assert call.args["text"] == text


async def test_a_caption_that_fills_its_limit_begins_a_paste(api: BotApiStandIn, front: TelegramFrontEnd) -> None:
    picture, text = png(), typed(3000)
    await api.user_message(USER, USER, photo=picture, caption=text[:1024])
    await api.user_message(USER, USER, text=text[1024:])
    calls = await conversation(front).wait(2)
    assert [(c.method, c.args.get("image"), c.args.get("text")) for c in calls] == [
        ("image", picture, None),
        ("text", None, text),
    ]


async def test_a_start_caption_that_fills_its_limit_begins_a_paste(api: BotApiStandIn, front: TelegramFrontEnd) -> None:
    picture, prompt = png(), typed(2500)
    caption = ("/start " + prompt)[:1024]
    await api.user_message(USER, USER, photo=picture, caption=caption)
    await api.user_message(USER, USER, text=prompt[1024 - len("/start ") :])
    (call,) = await conversation(front).wait(1)
    assert call.method == "start" and call.args["image"] == picture and call.args["prompt"] == prompt


async def test_a_start_text_that_fills_the_limit_begins_a_paste(api: BotApiStandIn, front: TelegramFrontEnd) -> None:
    prompt = typed(6000)
    whole = "/start " + prompt
    await paste(api, whole)
    (call,) = await conversation(front).wait(1)
    assert call.method == "start" and call.args["prompt"] == prompt


async def test_a_paste_ending_on_its_wait_is_handled_in_the_chats_order(
    api: BotApiStandIn, front: TelegramFrontEnd
) -> None:
    text = typed(4096)
    await api.user_message(USER, USER, text=text)
    await asyncio.sleep(PASTE_WAIT + 0.3)
    await api.user_message(USER, USER, text="the next prompt")
    calls = await conversation(front).wait(2)
    assert [c.args["text"] for c in calls] == [text, "the next prompt"]


async def test_a_regenerate_with_a_long_new_prompt_joins_too(api: BotApiStandIn, front: TelegramFrontEnd) -> None:
    prompt = typed(5000)
    await paste(api, "/regenerate " + prompt)
    (call,) = await conversation(front).wait(1)
    assert (call.method, call.args["name"], call.args["argument"]) == ("command", "regenerate", prompt)


async def test_a_paste_that_fails_after_its_wait_is_apologised_for(api: BotApiStandIn, front: TelegramFrontEnd) -> None:
    text = typed(4096)
    conversation(front).fail_on_text = text
    await api.user_message(USER, USER, text=text)
    (apology,) = await api.wait_for("sendMessage")
    assert apology.params["text"].startswith("Sorry, something went wrong") and apology.params["chat_id"] == USER


# --- review ------------------------------------------------------------------------------------


async def test_post_segment_uploads_video_frame_and_keyboard(
    api: BotApiStandIn, front: TelegramFrontEnd, tmp_path: Path
) -> None:
    post = segment_post(tmp_path)
    posted = await front.port.post_segment(private(), post)

    (video,) = api.sent("sendVideo")
    assert video.params["supports_streaming"] is True
    assert (video.params["width"], video.params["height"], video.params["duration"]) == (832, 480, 6)
    assert video.params["caption"] == post.caption
    assert video.file("video") is not None and video.file("video").data == post.video.read_bytes()  # type: ignore[union-attr]
    thumbnail = video.file("thumbnail")
    assert thumbnail is not None and len(thumbnail.data) <= 200_000
    with Image.open(io.BytesIO(thumbnail.data)) as image:
        assert image.format == "JPEG" and max(image.size) <= 320 and image.size == (320, 185)
    assert button_data(video.params["reply_markup"]) == [data for _, data in post.controls]

    (photo,) = api.sent("sendPhoto")
    assert photo.file("photo").data == post.last_frame.read_bytes()  # type: ignore[union-attr]
    assert posted == {"video": str(video.result["message_id"]), "frame": str(photo.result["message_id"])}
    assert any(c.params["action"] == "upload_video" for c in api.sent("sendChatAction"))


async def test_buttons_from_any_user_reach_the_service(
    api: BotApiStandIn, front: TelegramFrontEnd, tmp_path: Path
) -> None:
    posted = await front.port.post_segment(ChatRef("telegram", str(GROUP)), segment_post(tmp_path, 31))
    video_id = int(posted["video"])
    queries = [
        await api.press(GROUP, USER, video_id, control_id(31, Action.APPROVE)),
        await api.press(GROUP, 555, video_id, control_id(31, Action.REGENERATE)),
        await api.press(GROUP, ADMIN, video_id, control_id(31, Action.FINISH)),
        await api.press(GROUP, USER, video_id, "noop"),
    ]
    calls = await conversation(front).wait(3)
    await api.wait_for("answerCallbackQuery", 4)
    assert [(c.user_id, c.args["segment_id"], c.args["action"], c.args["is_admin"]) for c in calls] == [
        (str(USER), 31, Action.APPROVE, False),
        ("555", 31, Action.REGENERATE, False),
        (str(ADMIN), 31, Action.FINISH, True),
    ]
    assert all(c.chat == ChatRef("telegram", str(GROUP)) for c in calls)
    assert all(api.query_answered(q) for q in queries)


async def test_a_note_for_the_presser_is_the_answers_toast(
    api: BotApiStandIn, front: TelegramFrontEnd, tmp_path: Path
) -> None:
    posted = await front.port.post_segment(ChatRef("telegram", str(GROUP)), segment_post(tmp_path, 31))
    conversation(front).private_answer = "Segment 1 is already approved."
    query = await api.press(GROUP, USER, int(posted["video"]), control_id(31, Action.APPROVE))
    [answer] = await api.wait_for("answerCallbackQuery", 1)
    assert api.query_answered(query)
    assert answer.params.get("text") == "Segment 1 is already approved."
    assert not [c for c in api.sent("sendMessage") if "already approved" in c.params.get("text", "")]


async def test_reactions_approve_and_regenerate(api: BotApiStandIn, front: TelegramFrontEnd, tmp_path: Path) -> None:
    posted = await front.port.post_segment(private(), segment_post(tmp_path))
    frame_id, video_id = int(posted["frame"]), int(posted["video"])
    await api.react(USER, USER, frame_id, ["👍"])
    await api.react(USER, USER, video_id, ["🔥"])  # not a review reaction
    await api.react(USER, USER, video_id, ["👍"], old=["👍"])  # unchanged
    await api.react(USER, USER, video_id, ["👎"])
    calls = await conversation(front).wait(2)
    await asyncio.sleep(0.2)
    assert [(c.method, c.args["message_id"], c.args["action"]) for c in conversation(front).calls] == [
        ("reaction", str(frame_id), Action.APPROVE),
        ("reaction", str(video_id), Action.REGENERATE),
    ]
    assert calls[0].chat == private()


async def test_every_press_is_answered_exactly_once(
    api: BotApiStandIn, front: TelegramFrontEnd, tmp_path: Path
) -> None:
    posted = await front.port.post_segment(ChatRef("telegram", str(GROUP)), segment_post(tmp_path, 31))
    video_id = int(posted["video"])
    silent = await api.press(GROUP, USER, video_id, control_id(31, Action.APPROVE))  # the service says nothing
    (answer,) = await api.wait_for("answerCallbackQuery")
    assert answer.params.get("text") is None and api.query_answered(silent)

    conversation(front).private_answer = "That take is no longer up for review."
    conversation(front).second_answer = "Segment 1 is already approved."  # a second note for one press
    await api.press(GROUP, USER, video_id, control_id(31, Action.UNDO))
    await conversation(front).wait(2)
    await asyncio.sleep(0.3)
    answers = api.sent("answerCallbackQuery", ok_only=False)
    assert [(a.ok, a.params.get("text")) for a in answers] == [
        (True, None),
        (True, "That take is no longer up for review."),
    ]
    assert api.sent("sendMessage") == []  # notes for the presser never go into the chat


async def test_a_strangers_press_gets_the_refusal_as_its_toast(
    api: BotApiStandIn, front: TelegramFrontEnd, tmp_path: Path
) -> None:
    posted = await front.port.post_segment(ChatRef("telegram", str(GROUP)), segment_post(tmp_path, 31))
    conversation(front).private_answer = "Only the person who started this session can do that."
    query = await api.press(GROUP, 555, int(posted["video"]), control_id(31, Action.APPROVE_FINISH))
    (answer,) = await api.wait_for("answerCallbackQuery")
    assert answer.params["text"] == "Only the person who started this session can do that."
    assert answer.params.get("show_alert") is not True and api.query_answered(query)
    (call,) = conversation(front).calls
    assert (call.user_id, call.args["action"]) == ("555", Action.APPROVE_FINISH)
    assert api.sent("sendMessage") == []


async def test_a_long_note_is_an_alert(api: BotApiStandIn, front: TelegramFrontEnd, tmp_path: Path) -> None:
    posted = await front.port.post_segment(private(), segment_post(tmp_path, 31))
    conversation(front).private_answer = "x" * 150
    await api.press(USER, USER, int(posted["video"]), control_id(31, Action.FINISH))
    (answer,) = await api.wait_for("answerCallbackQuery")
    assert answer.params["show_alert"] is True and answer.params["text"] == "x" * 150


async def test_a_press_that_fails_is_answered_and_apologised_for(
    api: BotApiStandIn, front: TelegramFrontEnd, tmp_path: Path
) -> None:
    posted = await front.port.post_segment(private(), segment_post(tmp_path, 31))
    conversation(front).fail = True
    query = await api.press(USER, USER, int(posted["video"]), control_id(31, Action.APPROVE))
    (apology,) = await api.wait_for("sendMessage")
    assert apology.params["text"].startswith("Sorry, something went wrong")
    assert api.query_answered(query) and len(api.sent("answerCallbackQuery")) == 1


async def test_reactions_finish_and_their_notes_stay_out_of_the_chat(
    api: BotApiStandIn, front: TelegramFrontEnd, tmp_path: Path
) -> None:
    posted = await front.port.post_segment(private(), segment_post(tmp_path))
    conversation(front).private_answer = "Segment 2 is already approved."
    await api.react(USER, USER, int(posted["video"]), ["🏆"])  # Telegram's reaction set has no 🏁
    await api.react(USER, USER, int(posted["frame"]), ["🏁"])
    calls = await conversation(front).wait(2)
    assert [(c.method, c.args["action"]) for c in calls] == [("reaction", Action.FINISH)] * 2
    await asyncio.sleep(0.2)
    assert api.sent("sendMessage") == []


async def test_close_controls_leaves_the_note(api: BotApiStandIn, front: TelegramFrontEnd, tmp_path: Path) -> None:
    posted = await front.port.post_segment(private(), segment_post(tmp_path))
    await front.port.close_controls(private(), posted, "✅ Approved")
    await front.port.close_controls(private(), posted, "✅ Approved")  # "not modified" is fine
    markup = api.message(USER, int(posted["video"]))["reply_markup"]
    assert markup["inline_keyboard"] == [[{"text": "✅ Approved", "callback_data": "noop"}]]


async def test_each_message_is_reported_as_soon_as_telegram_accepted_it(
    api: BotApiStandIn, front: TelegramFrontEnd, tmp_path: Path
) -> None:
    reported: list[tuple[str, str, list[str]]] = []

    async def sent(role: str, message_id: str) -> None:
        reported.append((role, message_id, [c.method for c in api.sent() if c.method in ("sendVideo", "sendPhoto")]))

    posted = await front.port.post_segment(private(), segment_post(tmp_path), sent)
    assert reported == [
        ("video", posted["video"], ["sendVideo"]),  # recorded before the frame is sent
        ("frame", posted["frame"], ["sendVideo", "sendPhoto"]),
    ]

    reported.clear()
    parts = (tiny_mp4(tmp_path / "part1.mp4"), tiny_mp4(tmp_path / "part2.mp4"))
    ids = await front.port.post_final(private(), FinalPost(parts=parts, caption="Your video"), sent)
    assert [(role, n) for role, _, n in reported] == [
        ("final.1", ["sendVideo", "sendPhoto", "sendVideo"]),
        ("final.2", ["sendVideo", "sendPhoto", "sendVideo", "sendVideo"]),
    ]
    assert [message_id for _, message_id, _ in reported] == ids


async def test_each_message_is_announced_to_the_service_right_before_it_is_sent(
    api: BotApiStandIn, front: TelegramFrontEnd, tmp_path: Path
) -> None:
    # The service records an intent then: a crash after the send leaves the message in doubt,
    # never taken for one that was not sent. The Bot API has no idempotency key to pass on.
    events: list[tuple[str, tuple[str, ...] | str, list[str]]] = []

    def uploads() -> list[str]:
        return [c.method for c in api.sent() if c.method in ("sendVideo", "sendPhoto")]

    async def sending(roles: tuple[str, ...]) -> str:
        events.append(("sending", roles, uploads()))
        return "unused"

    async def sent(role: str, message_id: str) -> None:
        events.append(("sent", role, uploads()))

    assert front.port.resend_window == 0
    await front.port.post_segment(private(), segment_post(tmp_path), sent, sending)
    parts = (tiny_mp4(tmp_path / "part1.mp4"),)
    await front.port.post_final(private(), FinalPost(parts=parts, caption="Your video"), sent, sending)
    assert events == [
        ("sending", ("video",), []),
        ("sent", "video", ["sendVideo"]),
        ("sending", ("frame",), ["sendVideo"]),
        ("sent", "frame", ["sendVideo", "sendPhoto"]),
        ("sending", ("final.1",), ["sendVideo", "sendPhoto"]),
        ("sent", "final.1", ["sendVideo", "sendPhoto", "sendVideo"]),
    ]


async def test_what_was_posted_before_a_restart_is_not_posted_again(
    api: BotApiStandIn, front: TelegramFrontEnd, tmp_path: Path
) -> None:
    post = segment_post(tmp_path)
    posted = await front.port.post_segment(private(), replace(post, already=frozenset({"video"})))
    (photo,) = api.sent("sendPhoto")
    assert posted == {"frame": str(photo.result["message_id"])} and api.sent("sendVideo") == []
    assert await front.port.post_segment(private(), replace(post, already=frozenset({"video", "frame"}))) == {}
    assert len(api.sent("sendPhoto")) == 1 and api.sent("sendVideo") == []

    parts = (tiny_mp4(tmp_path / "part1.mp4"), tiny_mp4(tmp_path / "part2.mp4", frames=33))
    ids = await front.port.post_final(private(), FinalPost(parts=parts, caption="Your video", already=frozenset({1})))
    (video,) = api.sent("sendVideo")
    assert ids == [str(video.result["message_id"])] and video.params["caption"] == "Part 2 of 2\nYour video"
    assert video.file("video").data == parts[1].read_bytes()  # type: ignore[union-attr]


async def test_delete_message(api: BotApiStandIn, front: TelegramFrontEnd) -> None:
    message_id = await front.port.send_text(private(), "Queued")
    await front.port.delete_message(private(), message_id)
    (call,) = api.sent("deleteMessage")
    assert (call.params["chat_id"], call.params["message_id"]) == (USER, int(message_id))
    with pytest.raises(KeyError):
        api.message(USER, int(message_id))
    await front.port.delete_message(private(), message_id)  # gone already (a restart): fine


async def test_approve_and_finish_renders_two_buttons_a_row(
    api: BotApiStandIn, front: TelegramFrontEnd, tmp_path: Path
) -> None:
    post = segment_post(tmp_path, 9)
    controls = (("✅ Approve & finish", control_id(9, Action.APPROVE_FINISH)), *post.controls)
    await front.port.post_segment(private(), replace(post, controls=controls))
    (video,) = api.sent("sendVideo")
    rows = video.params["reply_markup"]["inline_keyboard"]
    assert [len(row) for row in rows] == [2, 2, 1]
    assert rows[0][0] == {"text": "✅ Approve & finish", "callback_data": "seg:9:apfin"}


# --- progress, final video, failures -----------------------------------------------------------


async def test_progress_edit_waits_out_flood_control(api: BotApiStandIn, front: TelegramFrontEnd) -> None:
    message_id = await front.port.send_text(private(), "Queued")
    api.fail("editMessageText", retry_after=1)
    started = time.monotonic()
    await front.port.edit_text(private(), message_id, "Step 3/20")
    edits = api.sent("editMessageText", ok_only=False)
    assert [e.status for e in edits] == [429, 200]
    assert edits[1].at - edits[0].at >= 1.0 and time.monotonic() - started >= 1.0
    assert api.message(USER, int(message_id))["text"] == "Step 3/20"


async def test_a_newer_progress_text_replaces_one_waiting_on_flood_control(
    api: BotApiStandIn, front: TelegramFrontEnd
) -> None:
    message_id = await front.port.send_text(private(), "Queued")
    api.fail("editMessageText", retry_after=1)
    older = asyncio.create_task(front.port.edit_text(private(), message_id, "Step 1/20"))
    await api.wait_for("editMessageText", ok_only=False)
    await asyncio.sleep(0.2)  # the 429 answer reaches the port
    await front.port.edit_text(private(), message_id, "Step 9/20")  # waits out the same limit
    await older
    edits = api.sent("editMessageText", ok_only=False)
    assert [(e.params["text"], e.status) for e in edits] == [("Step 1/20", 429), ("Step 9/20", 200)]
    assert edits[1].at - edits[0].at >= 1.0
    assert api.message(USER, int(message_id))["text"] == "Step 9/20"


async def test_a_long_flood_wait_finishes_the_edit_in_the_background(
    api: BotApiStandIn, front: TelegramFrontEnd
) -> None:
    port = TelegramPort(front.application.bot, front.config.telegram, FAST, edit_wait=0.1)
    message_id = await port.send_text(private(), "Queued")
    api.fail("editMessageText", retry_after=1)
    started = time.monotonic()
    await port.edit_text(private(), message_id, "Step 3/20")
    assert time.monotonic() - started < 0.5  # the caller (a job's progress) is not held up
    (edit,) = await api.wait_for("editMessageText")
    assert edit.params["text"] == "Step 3/20" and time.monotonic() - started >= 1.0


async def test_server_errors_are_retried(api: BotApiStandIn, front: TelegramFrontEnd) -> None:
    api.fail("sendMessage", status=500)
    api.fail("sendMessage", status=502, html=True)
    message_id = await front.port.send_text(private(), "hello")
    assert [c.status for c in api.sent("sendMessage", ok_only=False)] == [500, 502, 200]
    assert api.message(USER, int(message_id))["text"] == "hello"


async def test_retries_give_up_after_the_policy_attempts(api: BotApiStandIn, front: TelegramFrontEnd) -> None:
    api.fail("sendMessage", status=500, times=FAST.attempts)
    with pytest.raises(NetworkError):
        await front.port.send_text(private(), "hello")
    assert len(api.sent("sendMessage", ok_only=False)) == FAST.attempts


async def test_polling_goes_on_after_server_errors(api: BotApiStandIn, front: TelegramFrontEnd) -> None:
    api.fail("getUpdates", status=502, html=True)
    await api.wait_for("getUpdates", ok_only=False, where=lambda c: c.status == 502)
    await api.user_message(USER, USER, text="still there?")
    (call,) = await conversation(front).wait(1)
    assert call.args["text"] == "still there?"


async def test_final_video_parts_with_their_shape(api: BotApiStandIn, tmp_path: Path) -> None:
    async with running(make_config(api, upload_limit_mb=1)) as front_end:
        await post_parts(api, front_end.port, tmp_path)


async def post_parts(api: BotApiStandIn, port: TelegramPort, tmp_path: Path) -> None:
    assert port.upload_limit(private()) == MB
    first = tiny_mp4(tmp_path / "part1.mp4")
    second = tiny_mp4(tmp_path / "part2.mp4", frames=33, width=48, height=64)
    ids = await port.post_final(private(), FinalPost(parts=(first, second), caption="Your video"))
    videos = api.sent("sendVideo")
    assert ids == [str(v.result["message_id"]) for v in videos]
    assert [v.params["caption"] for v in videos] == ["Part 1 of 2\nYour video", "Part 2 of 2\nYour video"]
    assert [(v.params["width"], v.params["height"], v.params["duration"]) for v in videos] == [
        (64, 48, 2),
        (48, 64, 3),
    ]
    assert all(v.params["supports_streaming"] for v in videos)
    assert videos[1].file("video").data == second.read_bytes()  # type: ignore[union-attr]

    too_big = tmp_path / "big.mp4"
    too_big.write_bytes(bytes(MB + 1))
    with pytest.raises(UploadTooLarge):
        await port.post_final(private(), FinalPost(parts=(first, too_big), caption="Your video"))
    assert len(api.sent("sendVideo", ok_only=False)) == 2  # nothing sent for the refused one


async def test_an_upload_telegram_refuses_as_too_large_is_not_retried(tmp_path: Path) -> None:
    async with BotApiStandIn(upload_limit=MB) as small, running(make_config(small, upload_limit_mb=5)) as front_end:
        video = tmp_path / "final.mp4"
        video.write_bytes(bytes(2 * MB))
        with pytest.raises(NetworkError, match="Too Large"):
            await front_end.port.post_final(private(), FinalPost(parts=(video,), caption="Your video"))
        assert [c.status for c in small.sent("sendVideo", ok_only=False)] == [413]


async def test_handler_errors_are_logged_with_an_apology_and_the_bot_goes_on(
    api: BotApiStandIn, front: TelegramFrontEnd, caplog: pytest.LogCaptureFixture
) -> None:
    conversation(front).fail_on_text = "boom"
    await api.user_message(USER, USER, text="boom")
    (apology,) = await api.wait_for("sendMessage")
    assert apology.params["text"].startswith("Sorry, something went wrong")
    error_id = apology.params["text"].rsplit(" ", 1)[-1].rstrip(").")
    assert any(error_id in r.getMessage() and r.exc_info for r in caplog.records)
    await api.user_message(USER, USER, text="after")
    (call,) = await conversation(front).wait(1)
    assert call.args["text"] == "after"


async def test_one_slow_chat_does_not_hold_up_another(api: BotApiStandIn, front: TelegramFrontEnd) -> None:
    gate = asyncio.Event()
    conversation(front).hold["slow"] = gate
    await api.user_message(USER, USER, text="slow")
    await api.user_message(USER, USER, text="after slow")
    await api.user_message(GROUP, 7, text="other chat")
    (call,) = await conversation(front).wait(1)
    assert call.args["text"] == "other chat"
    gate.set()
    calls = await conversation(front).wait(3)
    assert [c.args["text"] for c in calls] == ["other chat", "slow", "after slow"]  # one chat, in order


async def test_allow_lists_and_admins(api: BotApiStandIn) -> None:
    config = make_config(api, allowed_user_ids=(USER,), allowed_chat_ids=(GROUP,), admin_ids=(ADMIN,))
    async with running(config) as front_end:
        await api.user_message(7, 7, text="/start")  # stranger in private: refused, with their id
        await api.user_message(7, 7, text="hello")  # refused again, but not told again
        await api.user_message(GROUP, 7, text="/start")  # anyone in an allowed chat
        await api.user_message(ADMIN, ADMIN, text="/start")  # admins anywhere
        calls = await conversation(front_end).wait(2)
        assert [(c.chat.chat_id, c.user_id, c.args["is_admin"]) for c in calls] == [
            (str(GROUP), "7", False),
            (str(ADMIN), str(ADMIN), True),
        ]
        (refusal,) = await api.wait_for("sendMessage")
        assert (refusal.params["chat_id"], refusal.params["text"]) == (7, front_end.access.refusal(7))
        assert "user id 7 to telegram.allowed_user_ids" in refusal.params["text"]


async def test_forum_topics_are_threads(api: BotApiStandIn, front: TelegramFrontEnd) -> None:
    await api.user_message(GROUP, USER, text="/start", thread_id=5)
    (call,) = await conversation(front).wait(1)
    assert call.chat == ChatRef("telegram", str(GROUP), "5")
    await front.port.send_text(call.chat, "Send the picture")
    (sent,) = api.sent("sendMessage")
    assert sent.params["message_thread_id"] == 5


async def test_a_wrong_token_fails_the_start(api: BotApiStandIn) -> None:
    config = make_config(api)
    config = replace(config, telegram=replace(config.telegram, token=Secret("999:WRONG")))
    front_end = build_telegram(config, RecordingConversation(), retry=FAST, poll_timeout=2)
    with pytest.raises(InvalidToken):
        await front_end.start()
    assert not front_end.application.running
    assert [c.status for c in api.calls] == []  # refused before any method ran


# --- pure helpers ------------------------------------------------------------------------------


def test_upload_limit_follows_the_api_server() -> None:
    assert upload_limit_bytes(TelegramConfig()) == 50 * MB
    local = TelegramConfig(api_base_url="http://localhost:8081/bot")
    assert upload_limit_bytes(local) == 2000 * MB
    assert upload_limit_bytes(replace(local, upload_limit_mb=300)) == 300 * MB


def test_mp4_info_agrees_with_ffmpeg(tmp_path: Path) -> None:
    from worker.video import probe

    path = tiny_mp4(tmp_path / "clip.mp4", frames=33, width=80, height=48)
    info, probed = mp4_info(path), probe(path)
    assert info is not None and (info.width, info.height) == (probed.width, probed.height)
    assert info.seconds == pytest.approx(probed.duration, abs=0.1)
    (tmp_path / "junk.mp4").write_bytes(struct.pack(">I4s", 4, b"moov"))
    assert mp4_info(tmp_path / "junk.mp4") is None


def test_photo_upload_shrinks_what_send_photo_refuses(tmp_path: Path) -> None:
    small = tmp_path / "small.png"
    small.write_bytes(png())
    assert photo_upload(small) == (small.read_bytes(), "small.png")
    wide = tmp_path / "wide.png"
    Image.new("RGB", (9000, 2000), (10, 20, 30)).save(wide)
    data, name = photo_upload(wide)
    with Image.open(io.BytesIO(data)) as image:
        assert name == "wide.jpg" and image.format == "JPEG" and sum(image.size) < 10000
    thumb = thumbnail_jpeg(wide)
    with Image.open(io.BytesIO(thumb)) as image:
        assert image.size == (320, 71) and len(thumb) <= 200_000
