"""The Discord adapter against simcord (real discord.py, offline Discord), with a recording
``Conversation`` standing in for the service."""

from __future__ import annotations

from pathlib import Path

import discord
import pytest
import simcord

from bot.discord_adapter import build_discord
from bot.discord_adapter.port import DEFAULT_UPLOAD_LIMIT
from bot.ports import Action, ChatRef, FinalPost, control_id, parse_control
from shared.pictures import check_picture
from tests.bot.discord_harness import (
    RecordingConversation,
    buttons,
    make_config,
    open_session,
    picture,
    running,
    segment_post,
)

# -- /start ----------------------------------------------------------------------------------------


async def test_start_opens_a_private_thread_and_hands_over_the_picture(tmp_path: Path) -> None:
    async with running(tmp_path) as w:
        image = picture(96, 64)
        result = await w.alice.slash(w.channel, "start", image=("fox.png", image), prompt="a red fox trots")

        (thread,) = w.channel.threads
        assert thread.name == "a red fox trots"
        assert thread._channel.type == discord.ChannelType.private_thread.value
        assert w.alice.id in thread._channel.thread_members  # the owner was added
        (call,) = w.conversation.calls
        assert call.method == "start"
        assert call.chat == ChatRef("discord", str(w.channel.id), str(thread.id))
        assert call.user_id == str(w.alice.id)
        # The picture as checked here, so the service does not decode it a second time.
        assert call.args == {"image": check_picture(image), "prompt": "a red fox trots", "is_admin": False}
        # The interaction got one private answer pointing at the thread; the rest goes there.
        assert result.ephemeral
        assert result.response is not None
        assert result.response.content == f"Your session is in <#{thread.id}>."


async def test_start_uses_a_public_thread_on_a_starter_message_when_configured(tmp_path: Path) -> None:
    async with running(tmp_path, private_threads=False) as w:
        await w.alice.slash(w.channel, "start", image=("fox.png", picture()))

        (thread,) = w.channel.threads
        assert thread._channel.type == discord.ChannelType.public_thread.value
        assert thread.name == "alice's animation"  # no prompt: named after the owner
        # A thread opened on a message shares its id.
        (starter,) = [m for m in w.channel.history() if m.id == thread.id]
        assert starter.content == f"{w.alice.mention} started an animation"
        assert w.conversation.of("start")[0].args["prompt"] is None


async def test_start_falls_back_to_a_public_thread_without_the_private_thread_permission(tmp_path: Path) -> None:
    async with running(tmp_path) as w:
        assert w.env.bot.user is not None
        channel = w.guild.create_text_channel(
            "no-private", overwrites={w.env.bot.user: discord.PermissionOverwrite(create_private_threads=False)}
        )
        await w.alice.slash(channel, "start", image=("fox.png", picture()), prompt="x")

        (thread,) = channel.threads
        assert thread._channel.type == discord.ChannelType.public_thread.value
        assert len(w.conversation.of("start")) == 1


async def test_an_oversized_or_non_image_attachment_is_refused(tmp_path: Path) -> None:
    async with running(tmp_path) as w:
        too_big = b"\x89PNG" + b"\x00" * (1024 * 1024)
        result = await w.alice.slash(w.channel, "start", image=("huge.png", too_big))
        assert result.ephemeral
        assert result.response is not None
        assert result.response.content == "That file is 1.0 MB; the limit is 1.0 MB. Please send a smaller picture."

        result = await w.alice.slash(w.channel, "start", image=("notes.txt", b"hello"))
        assert result.response is not None
        assert result.response.content == "notes.txt is not a picture; attach a PNG, JPEG or WebP image."

        assert w.channel.threads == []
        assert w.conversation.calls == []


async def test_only_allowed_users_and_roles_may_start(tmp_path: Path) -> None:
    async with running(tmp_path) as w:
        animators = w.guild.create_role("Animators")
        carol = w.guild.add_member(w.env.create_user("carol"), roles=[animators])
        await w.restart(allowed_user_ids=(w.alice.id,), allowed_role_ids=(animators.id,))

        refused = await w.bob.slash(w.channel, "start", image=("fox.png", picture()))
        assert refused.ephemeral
        assert refused.response is not None
        assert refused.response.content == (
            f"You're not allowed to use this bot. Ask its owner to add your user id {w.bob.id} "
            "to discord.allowed_user_ids."
        )
        await w.alice.slash(w.channel, "start", image=("fox.png", picture()))
        await carol.slash(w.channel, "start", image=("fox.png", picture()))

        assert [c.user_id for c in w.conversation.of("start")] == [str(w.alice.id), str(carol.id)]
        assert len(w.channel.threads) == 2


async def test_start_inside_a_session_thread_opens_a_new_thread_in_the_channel(tmp_path: Path) -> None:
    async with running(tmp_path) as w:
        _, thread = await open_session(w)
        await w.alice.slash(thread, "start", image=("fox.png", picture()), prompt="second")

        first, second = w.conversation.of("start")
        assert second.chat.chat_id == str(w.channel.id)
        assert second.chat.thread_id not in ("", first.chat.thread_id)


# -- prompts ---------------------------------------------------------------------------------------


async def test_messages_in_the_session_thread_are_prompts(tmp_path: Path) -> None:
    async with running(tmp_path, private_threads=False) as w:  # bob can see the thread
        chat, thread = await open_session(w)
        await w.alice.send(thread, "  the fox jumps over a log  ")
        await w.bob.send(thread, "nice!")  # the service decides that bob is not the owner
        await w.alice.send(w.channel, "not in a session thread")
        robot = w.guild.add_member(w.env.create_user("robot", bot=True))
        await robot.send(thread, "beep")

        texts = [(c.user_id, c.args["text"]) for c in w.conversation.of("text")]
        assert texts == [(str(w.alice.id), "the fox jumps over a log"), (str(w.bob.id), "nice!")]
        assert all(c.chat == chat for c in w.conversation.of("text"))


async def test_a_picture_in_the_thread_goes_to_the_conversation(tmp_path: Path) -> None:
    async with running(tmp_path) as w:
        chat, thread = await open_session(w)
        image = picture(32, 32)
        await w.alice.send(thread, "and now this", attachments=[("next.png", image)])

        calls = w.conversation.calls[1:]
        assert [(c.method, c.chat) for c in calls] == [("image", chat), ("text", chat)]
        assert calls[0].args["image"] == image


# -- review ----------------------------------------------------------------------------------------


async def test_a_segment_is_posted_with_video_frame_buttons_and_reactions(tmp_path: Path) -> None:
    async with running(tmp_path) as w:
        chat, thread = await open_session(w)
        post = segment_post(tmp_path / "media", 17, index=2, attempt=3)

        ids = await w.front.port.post_segment(chat, post)
        await w.env.settle()

        message = thread.last_message
        assert message is not None
        assert ids == {"video": str(message.id), "frame": str(message.id)}
        assert message.content == post.caption
        assert [(a.filename, a.size) for a in message.attachments] == [
            ("segment02_take3.mp4", post.video.stat().st_size),
            ("segment02_take3_last_frame.png", post.last_frame.stat().st_size),
        ]
        assert [(b.label, b.custom_id) for b in buttons(message)] == list(post.controls)
        assert {str(r.emoji): r.count for r in message.reactions} == {"✅": 1, "🔁": 1, "🏁": 1}
        # The bot's own reactions were not taken for a user's.
        assert w.conversation.of("reaction") == []


async def test_reactions_and_buttons_become_review_actions(tmp_path: Path) -> None:
    async with running(tmp_path, private_threads=False) as w:  # bob can see the thread
        chat, thread = await open_session(w)
        await w.front.port.post_segment(chat, segment_post(tmp_path / "media", 5))
        message = thread.last_message
        assert message is not None

        await w.alice.react(message, "✅")
        await w.alice.react(message, "🔁")
        await w.alice.react(message, "🎉")  # not a review reaction
        approve = await w.alice.click(message, label="Approve")
        await w.alice.click(message, label="Regenerate")
        await w.bob.click(message, label="Finish")

        reactions = [(c.chat, c.user_id, c.args["message_id"], c.args["action"]) for c in w.conversation.of("reaction")]
        alice = str(w.alice.id)
        assert reactions == [
            (chat, alice, str(message.id), Action.APPROVE),
            (chat, alice, str(message.id), Action.REGENERATE),
        ]
        controls = [(c.chat, c.user_id, c.args["segment_id"], c.args["action"]) for c in w.conversation.of("control")]
        assert controls == [
            (chat, alice, 5, Action.APPROVE),
            (chat, alice, 5, Action.REGENERATE),
            (chat, str(w.bob.id), 5, Action.FINISH),  # forwarded; the service ignores non-owners
        ]
        assert approve.acknowledged
        # A silent acknowledgement: no reply, the message unchanged.
        assert approve.followups == []
        assert approve.response is not None and approve.response.id == message.id


async def test_admins_are_flagged(tmp_path: Path) -> None:
    async with running(tmp_path, private_threads=False) as w:
        await w.restart(private_threads=False, admin_ids=(w.bob.id,))
        chat, thread = await open_session(w)
        await w.front.port.post_segment(chat, segment_post(tmp_path / "media", 9))
        message = thread.last_message
        assert message is not None

        await w.bob.react(message, "✅")
        await w.bob.click(message, label="Undo")
        await w.alice.click(message, label="Undo")

        flags = [(c.method, c.user_id, c.args["is_admin"]) for c in w.conversation.calls[1:]]
        assert flags == [
            ("reaction", str(w.bob.id), True),
            ("control", str(w.bob.id), True),
            ("control", str(w.alice.id), False),
        ]


async def test_old_buttons_and_reactions_work_after_a_restart_without_a_command_resync(tmp_path: Path) -> None:
    async with running(tmp_path) as w:
        chat, thread = await open_session(w)
        await w.front.port.post_segment(chat, segment_post(tmp_path / "media", 41))
        message = thread.last_message
        assert message is not None
        assert len(w.command_syncs()) == 1  # the first start synced

        await w.restart()
        await w.alice.click(message, label="Approve")
        await w.alice.react(message, "🔁")
        await w.alice.slash(thread, "status")

        assert len(w.command_syncs()) == 1  # same commands: no sync on the second start
        assert [(c.method, c.chat) for c in w.conversation.calls] == [
            ("control", chat),
            ("reaction", chat),
            ("command", chat),
        ]
        assert w.conversation.calls[0].args["segment_id"] == 41


async def test_commands_are_synced_again_when_they_change(tmp_path: Path) -> None:
    async with running(tmp_path) as w:
        assert len(w.command_syncs()) == 1
        (w.data_dir / "discord_commands.hash").write_text("something else\n")
        await w.restart()
        assert len(w.command_syncs()) == 2


async def test_commands_sync_to_configured_guilds(tmp_path: Path) -> None:
    guild_id = 1_200_000_000_000_000_000
    async with running(tmp_path, guild_id=guild_id, guild_ids=(guild_id,)) as w:
        assert w.command_syncs() == [
            f"/applications/{w.env.backend.application_id}/commands",  # global, emptied
            f"/applications/{w.env.backend.application_id}/guilds/{guild_id}/commands",
        ]
        payloads = [e.json for e in w.env.http_requests if e.method == "PUT"]
        assert payloads[0] == []  # nothing global: no duplicates beside the guild's
        assert "start" in [c["name"] for c in payloads[1] or []]
        await open_session(w)  # strict_sync: /start must be registered in this guild


async def test_close_controls_removes_buttons_and_the_bots_reactions(tmp_path: Path) -> None:
    async with running(tmp_path) as w:
        chat, thread = await open_session(w)
        ids = await w.front.port.post_segment(chat, segment_post(tmp_path / "media", 3))
        message = thread.last_message
        assert message is not None
        await w.alice.react(message, "✅")

        await w.front.port.close_controls(chat, ids, "Approved.")
        await w.env.settle()

        closed = thread.last_message
        assert closed is not None and closed.id == message.id
        assert closed.content == message.content + "\nApproved."
        assert buttons(closed) == []
        assert {str(r.emoji): r.count for r in closed.reactions} == {"✅": 1}  # alice's stays
        assert len(closed.attachments) == 2


# -- slash commands --------------------------------------------------------------------------------


async def test_session_commands_are_forwarded_and_answered_in_the_thread(tmp_path: Path) -> None:
    async with running(tmp_path) as w:
        chat, thread = await open_session(w)
        for name in ("finish", "undo", "cancel", "status", "help"):
            result = await w.alice.slash(thread, name)
            assert result.deferred and result.response is None  # the placeholder was removed
        await w.alice.slash(thread, "regenerate", prompt="the fox sits down")

        calls = [(c.chat, c.args["name"], c.args["argument"]) for c in w.conversation.of("command")]
        assert calls == [
            (chat, "finish", ""),
            (chat, "undo", ""),
            (chat, "cancel", ""),
            (chat, "status", ""),
            (chat, "help", ""),
            (chat, "regenerate", "the fox sits down"),
        ]


async def test_settings_options_reach_the_conversation_as_values(tmp_path: Path) -> None:
    async with running(tmp_path) as w:
        chat, thread = await open_session(w)
        result = await w.alice.slash(thread, "settings", seconds=3, steps=20, seed="42")
        assert result.deferred and result.response is None
        await w.alice.slash(thread, "settings")
        # What looks like settings inside a negative prompt stays part of it.
        await w.alice.slash(thread, "settings", negative="blurry, style=anime")
        await w.alice.slash(thread, "settings", steps=8, negative="text steps=1")

        assert w.conversation.of("command") == []
        calls = [(c.chat, c.user_id, c.args["changes"]) for c in w.conversation.of("change_settings")]
        alice = str(w.alice.id)
        assert calls == [
            (chat, alice, (("seconds", "3"), ("steps", "20"), ("seed", "42"))),
            (chat, alice, ()),
            (chat, alice, (("negative", "blurry, style=anime"),)),
            (chat, alice, (("steps", "8"), ("negative", "text steps=1"))),
        ]


async def test_answers_meant_for_the_caller_alone_are_ephemeral(tmp_path: Path) -> None:
    async with running(tmp_path) as w:
        chat, thread = await open_session(w)
        await w.front.port.post_segment(chat, segment_post(tmp_path / "media", 5))
        message = thread.last_message
        assert message is not None
        w.conversation.private_answer = "Segment 1 is already approved."
        result = await w.alice.slash(thread, "status")
        # The deferred placeholder became the private answer instead of being removed.
        assert result.ephemeral and result.response is not None
        assert result.response.content == "Segment 1 is already approved."
        # A press is answered with the note itself, privately; nothing goes into the thread.
        before = len(thread.history())
        click = await w.alice.click(message, label="Approve")
        assert click.ephemeral and click.response is not None
        assert click.response.content == "Segment 1 is already approved."
        assert click.followups == []
        assert len(thread.history()) == before


async def test_settings_offers_segment_lengths_and_bounds_steps(tmp_path: Path) -> None:
    async with running(tmp_path) as w:
        (settings,) = [c for c in w.front.client.tree.get_commands() if c.name == "settings"]
        payload = settings.to_dict(w.front.client.tree)
        options = {o["name"]: o for o in payload["options"]}
        assert [c["value"] for c in options["seconds"]["choices"]] == [2, 3, 4, 5]
        assert (options["steps"]["min_value"], options["steps"]["max_value"]) == (1, 50)
        with pytest.raises(simcord.OptionError):
            await w.alice.slash(w.channel, "settings", steps=51)


async def test_a_failure_in_the_service_gets_an_apology_with_an_error_id(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with running(tmp_path) as w:
        _, thread = await open_session(w)
        w.conversation.fail = True
        result = await w.alice.slash(thread, "finish")

        assert result.ephemeral
        assert result.response is not None
        assert result.response.content.startswith("Sorry, something went wrong (error id ")
        error_id = result.response.content.rsplit(" ", 1)[1].rstrip(").")
        assert any(error_id in r.getMessage() and r.exc_info for r in caplog.records)


# -- uploads ---------------------------------------------------------------------------------------


async def test_upload_limit_is_the_guilds(tmp_path: Path) -> None:
    async with running(tmp_path) as w:
        chat, _ = await open_session(w)
        assert w.front.port.upload_limit(chat) == w.front.client.get_guild(w.guild.id).filesize_limit  # type: ignore[union-attr]
        assert w.front.port.upload_limit(chat) == 10 * 1024 * 1024
        assert w.front.port.upload_limit(ChatRef("discord", "1234")) == DEFAULT_UPLOAD_LIMIT


async def test_the_frame_follows_separately_when_both_files_exceed_the_limit(tmp_path: Path) -> None:
    async with running(tmp_path) as w:
        chat, thread = await open_session(w)
        post = segment_post(tmp_path / "media", 8, video_bytes=DEFAULT_UPLOAD_LIMIT - 100)

        ids = await w.front.port.post_segment(chat, post)

        video, frame = thread.history()[-2:]
        assert ids == {"video": str(video.id), "frame": str(frame.id)}
        assert [a.filename for a in video.attachments] == ["segment01_take1.mp4"]
        assert [a.filename for a in frame.attachments] == ["segment01_take1_last_frame.png"]
        assert len(buttons(video)) == 4


async def test_text_messages_and_the_final_video_in_parts(tmp_path: Path) -> None:
    async with running(tmp_path) as w:
        chat, thread = await open_session(w)
        message_id = await w.front.port.send_text(chat, "Queued: position 1")
        await w.front.port.edit_text(chat, message_id, "Step 3/8, about 20 s left")
        assert thread.last_message is not None
        assert (str(thread.last_message.id), thread.last_message.content) == (message_id, "Step 3/8, about 20 s left")

        parts = []
        for number in (1, 2):
            part = tmp_path / f"final{number}.mp4"
            part.write_bytes(bytes([number]) * 1000)
            parts.append(part)
        ids = await w.front.port.post_final(chat, FinalPost(parts=tuple(parts), caption="Done: 161 frames"))

        first, second = thread.history()[-2:]
        assert ids == [str(first.id), str(second.id)]
        assert first.content == "Done: 161 frames\nPart 1 of 2"
        assert second.content == "Part 2 of 2"
        assert [a.filename for a in first.attachments + second.attachments] == [
            "framechain_part1.mp4",
            "framechain_part2.mp4",
        ]


def test_control_ids_match_the_button_template() -> None:
    from bot.discord_adapter.review import TEMPLATE

    for action in Action:
        data = control_id(123456789012345678, action)
        match = TEMPLATE.fullmatch(data)
        assert match is not None and parse_control(match.string) == (123456789012345678, action)
    assert TEMPLATE.fullmatch("seg:1:delete") is None


async def test_start_needs_a_token(tmp_path: Path) -> None:
    front = build_discord(make_config(tmp_path), RecordingConversation())
    with pytest.raises(ValueError, match=r"discord\.token"):
        await front.start()
    await front.client.close()
