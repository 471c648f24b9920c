"""What the Discord adapter says, and to whom: bad start files answered privately before any
thread exists, notes for one user never in the thread, no pings, reactions that are only a
shortcut. simcord (real discord.py, offline Discord), a recording ``Conversation`` behind it."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from pathlib import Path
from typing import Any

import discord
import pytest
import simcord

from bot.discord_adapter.review import review_view
from bot.ports import Action, FinalPost, control_id
from tests.bot.discord_harness import World, buttons, open_session, picture, running, segment_post

STRANGER_NOTE = "Only the person who started this session can do that."


# -- /start with a file that can't be a start picture ----------------------------------------------


@pytest.mark.parametrize(
    ("name", "data", "reason"),
    [
        ("drawing.svg", b'<svg xmlns="http://www.w3.org/2000/svg" width="99" height="99"/>', "is a drawing (SVG)"),
        ("empty.png", b"", "empty.png is empty"),
        ("tiny.png", picture(40, 30), "only 40×30"),
        ("fake.png", b"this is not a PNG at all" * 10, "couldn't read that as a picture"),
        ("cut.png", picture(96, 96)[:60], "damaged or cut off"),
    ],
)
async def test_a_bad_start_file_is_answered_privately_and_opens_no_thread(
    tmp_path: Path, name: str, data: bytes, reason: str
) -> None:
    async with running(tmp_path) as w:
        result = await w.alice.slash(w.channel, "start", image=(name, data), prompt="a red fox trots")

        assert result.ephemeral and result.response is not None
        assert reason in result.response.content
        assert "Your session is in" not in result.response.content
        assert w.channel.threads == []
        assert w.channel.history() == []  # no starter message either
        assert w.conversation.calls == []


async def test_an_oversized_file_is_refused_from_its_size_without_downloading_it(tmp_path: Path) -> None:
    async with running(tmp_path) as w:
        result = await w.alice.slash(w.channel, "start", image=("huge.png", b"\x89PNG" + b"\x00" * (1024 * 1024)))

        assert result.response is not None and "limit is 1.0 MB" in result.response.content
        # Answered at once from the attachment's metadata: not even deferred for a download.
        assert not result.deferred
        assert w.channel.threads == []


# -- mentions ---------------------------------------------------------------------------------------


def pings(w: World, message: discord.Message) -> tuple[list[int], list[int], bool]:
    """Whom a message notified: users, roles, @everyone (simcord resolves allowed_mentions)."""
    stored = w.env.backend.get_message(message.channel.id, message.id)
    return list(stored.ping_user_ids), list(stored.ping_role_ids), bool(stored.mention_everyone)


def message_calls(w: World) -> list[simcord.HttpLogEntry]:
    return [
        e
        for e in w.env.http_requests
        if e.method in ("POST", "PATCH") and "/messages" in e.path and "/reactions" not in e.path
    ]


def payload(entry: simcord.HttpLogEntry) -> dict[str, Any]:
    body = entry.json
    return body if isinstance(body, dict) else {}


async def test_prompts_with_mentions_ping_nobody_in_any_post_or_edit(tmp_path: Path) -> None:
    async with running(tmp_path, private_threads=False) as w:
        role = w.guild.create_role("Everyone who animates")
        prompt = f"@everyone look, {w.bob.mention} and <@&{role.id}> dance @here"
        chat, thread = await open_session(w, prompt)
        first_call = len(message_calls(w))

        text_id = await w.front.port.send_text(chat, f"⏳ {prompt} — queued.")
        await w.front.port.edit_text(chat, text_id, f"🎬 {prompt} — step 1/4")
        post = segment_post(tmp_path / "media", 6)
        post = dataclasses.replace(post, caption=f"Segment 1, take 1\n{prompt}")
        ids = await w.front.port.post_segment(chat, post)
        await w.front.port.close_controls(chat, ids, f"✅ Approved: {prompt}")
        final = tmp_path / "final.mp4"
        final.write_bytes(b"\x00" * 100)
        await w.front.port.post_final(chat, FinalPost(parts=(final,), caption=f"Here's your video: {prompt}"))
        await w.env.settle()

        posted = [m for m in thread.history() if m.author.id == w.env.bot.user.id]  # type: ignore[union-attr]
        assert len(posted) == 3 and all(prompt in m.content for m in posted)
        for message in posted:
            assert pings(w, message) == ([], [], False), message.content
        # Every send and edit said so itself, not only through the client's default.
        calls = message_calls(w)[first_call:]
        assert len(calls) == 5
        for call in calls:
            assert payload(call).get("allowed_mentions") == {"parse": []}, call
        assert w.front.client.allowed_mentions is not None
        assert w.front.client.allowed_mentions.to_dict() == {"parse": []}


async def test_the_thread_starter_names_the_owner_without_pinging(tmp_path: Path) -> None:
    async with running(tmp_path, private_threads=False) as w:
        await open_session(w, f"@everyone and {w.bob.mention}")
        (starter,) = [m for m in w.channel.history() if m.type is discord.MessageType.default]
        assert w.alice.mention in starter.content
        assert pings(w, starter) == ([], [], False)


# -- reactions: a shortcut, best effort -------------------------------------------------------------


async def test_a_failed_bot_reaction_still_records_the_post_once(tmp_path: Path) -> None:
    async with running(tmp_path) as w:
        chat, thread = await open_session(w)
        # The bot may not add reactions here (e.g. a missing permission): every one fails.
        w.env.inject_error("PUT", "/channels/*/messages/*/reactions/*", status=403, code=50013, times=None)
        recorded: list[tuple[str, str]] = []

        async def sent(role: str, message_id: str) -> None:
            recorded.append((role, message_id))

        ids = await w.front.port.post_segment(chat, segment_post(tmp_path / "media", 12), sent)
        await w.env.settle()

        (message,) = [m for m in thread.history() if m.attachments]
        assert ids == {"video": str(message.id), "frame": str(message.id)}
        assert recorded == [("video", str(message.id)), ("frame", str(message.id))]
        assert message.reactions == []
        assert len(buttons(message)) == 4  # the buttons are what matters

        await w.alice.react(message, "✅")
        (reaction,) = w.conversation.of("reaction")
        assert (reaction.args["message_id"], reaction.args["action"]) == (str(message.id), Action.APPROVE)


async def test_the_finish_reaction_finishes(tmp_path: Path) -> None:
    async with running(tmp_path) as w:
        chat, thread = await open_session(w)
        await w.front.port.post_segment(chat, segment_post(tmp_path / "media", 7))
        message = thread.last_message
        assert message is not None
        assert "🏁" in {str(r.emoji) for r in message.reactions}  # offered next to ✅ 🔁

        await w.alice.react(message, "🏁")

        (reaction,) = w.conversation.of("reaction")
        assert (reaction.chat, reaction.args["message_id"], reaction.args["action"]) == (
            chat,
            str(message.id),
            Action.FINISH,
        )
        ids = {"video": str(message.id)}
        await w.front.port.close_controls(chat, ids, "✅ Approved")
        await w.env.settle()
        closed = thread.last_message
        assert closed is not None
        assert {str(r.emoji): r.count for r in closed.reactions} == {"🏁": 1}  # alice's stays, the bot's go


# -- notes for one user ----------------------------------------------------------------------------


async def test_a_reactions_private_note_goes_to_the_users_dms_not_the_thread(tmp_path: Path) -> None:
    async with running(tmp_path) as w:
        chat, thread = await open_session(w)
        await w.front.port.post_segment(chat, segment_post(tmp_path / "media", 5))
        message = thread.last_message
        assert message is not None
        before = [m.id for m in thread.history()]
        w.conversation.private_answer = "Segment 1 is already approved."

        await w.alice.react(message, "🔁")

        assert [m.id for m in thread.history()] == before
        (note,) = w.alice.user.dm_channel.history()
        assert note.content == f"<#{thread.id}>: Segment 1 is already approved."
        assert pings(w, note) == ([], [], False)


async def test_a_reactions_note_is_dropped_when_the_user_takes_no_dms(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with running(tmp_path) as w:
        chat, thread = await open_session(w)
        await w.front.port.post_segment(chat, segment_post(tmp_path / "media", 5))
        message = thread.last_message
        assert message is not None
        before = [m.id for m in thread.history()]
        w.conversation.private_answer = "That take is no longer up for review."
        w.env.inject_error("POST", "/channels/*/messages", status=403, code=50007, times=1)
        caplog.set_level(logging.INFO, "framechain.discord")

        await w.alice.react(message, "✅")

        assert [m.id for m in thread.history()] == before  # never the thread instead
        assert len(w.conversation.of("reaction")) == 1
        assert w.alice.user.dm_channel.history() == []
        assert any("could not DM" in r.getMessage() for r in caplog.records)


async def test_a_strangers_press_is_answered_privately(tmp_path: Path) -> None:
    async with running(tmp_path, private_threads=False) as w:  # bob can see the thread
        chat, thread = await open_session(w)
        await w.front.port.post_segment(chat, segment_post(tmp_path / "media", 5))
        message = thread.last_message
        assert message is not None
        before = [m.id for m in thread.history()]
        w.conversation.private_answer = STRANGER_NOTE

        result = await w.bob.click(message, label="Approve")

        assert result.ephemeral and result.response is not None
        assert result.response.content == STRANGER_NOTE
        assert [m.id for m in thread.history()] == before
        (control,) = w.conversation.of("control")
        assert control.user_id == str(w.bob.id)


async def test_a_press_on_a_busy_session_is_acknowledged_in_time_and_its_note_follows(tmp_path: Path) -> None:
    async with running(tmp_path) as w:
        chat, thread = await open_session(w)
        await w.front.port.post_segment(chat, segment_post(tmp_path / "media", 5))
        message = thread.last_message
        assert message is not None
        w.conversation.private_answer = "Segment 1 is already approved."
        # The session is busy (posting something big) for longer than a press may wait for its
        # note (about 2 s, inside Discord's 3; none here, as simcord keeps timers virtual).
        released = asyncio.Event()
        w.conversation.busy = lambda: w.env.external_wait(released.wait(), reason="a busy session")
        w.front.client.answer_within = 0

        result = await w.alice.click(message, label="Approve")
        # Answered silently at once.
        assert result.followups == []
        released.set()
        await w.env.settle()

        # The note followed, privately, once the service had it.
        assert result.acknowledged and result.response is not None and result.response.id == message.id
        assert [f.content for f in result.followups] == ["Segment 1 is already approved."]
        assert all(f.ephemeral for f in result.followups)


# -- the review view ---------------------------------------------------------------------------------


async def test_approve_and_finish_is_rendered_and_survives_a_restart(tmp_path: Path) -> None:
    async with running(tmp_path) as w:
        chat, thread = await open_session(w)
        post = segment_post(tmp_path / "media", 31)
        approve_finish = ("✅ Approve & finish", control_id(31, Action.APPROVE_FINISH))
        controls = (post.controls[0], approve_finish, *post.controls[1:])
        await w.front.port.post_segment(chat, dataclasses.replace(post, controls=controls))
        message = thread.last_message
        assert message is not None
        assert [(b.label, b.custom_id) for b in buttons(message)] == list(controls)
        assert [b.style for b in buttons(message)][:2] == [discord.ButtonStyle.success] * 2

        await w.restart()
        result = await w.alice.click(message, label="✅ Approve & finish")

        assert result.acknowledged
        (control,) = w.conversation.of("control")
        assert (control.args["segment_id"], control.args["action"]) == (31, Action.APPROVE_FINISH)


def test_every_action_has_a_button() -> None:
    view = review_view(tuple((action.name, control_id(1, action)) for action in Action))
    assert [item.custom_id for item in view.children] == [control_id(1, a) for a in Action]  # type: ignore[attr-defined]
