"""A message the platform accepted but the bot never heard of (a crash in between): a restart
never posts it twice. Where the platform deduplicates a send by key (Discord's nonce) it is sent
again with its key; elsewhere (Telegram) the owner gets a notice with 📤 Send again and the
take's review buttons, so nothing is lost either. The real service, store, dispatcher and preview
workers, a fake chat platform, and restarts on the same data."""

from __future__ import annotations

from pathlib import Path

import discord
import pytest

from bot.conversation import delivery, notices
from bot.ports import Action, ChatRef, FinalPost, control_id
from bot.store import SessionState, Store
from shared.config import load_config
from tests.bot.discord_harness import open_session, running, segment_post
from tests.bot.fake_chat import FakeChat
from tests.bot.service_harness import Bot, picture_bytes, running_bot, write_config
from tests.bot.test_delivery import until

CHAT = ChatRef("telegram", "100", "")
OWNER = "7"


def roles_sent(chat: FakeChat) -> list[str]:
    return [role for s in chat.of("segment") for role in s.roles]


def notices_of(chat: FakeChat) -> list[str]:
    return [t for t in chat.texts(CHAT) if notices.SEND_AGAIN in t]


async def first_take_unheard(config: Path, chat: FakeChat) -> int:
    """Run until the first take's video was accepted and the bot 'died' before hearing of it."""
    async with running_bot(config, chat=chat) as bot:
        await bot.service.start(CHAT, OWNER, picture_bytes(), "the sun rises")
        [first] = await chat.wait_for("segment")
        await until(lambda: chat.crash_unheard is None, "the crash")
        posted = (await bot.store.get_segment(first.post.segment_id)).posted
        assert "video" not in posted and delivery.intent_key("video") in posted
        return first.post.segment_id


def test_plan_sends_again_only_within_the_window_and_never_twice() -> None:
    intent = {"sending.video": delivery.intent("k1", 100.0)}
    both = delivery.SEGMENT_ROLES
    assert delivery.plan({}, both, window=0, now=0) == delivery.Plan(frozenset())
    # Telegram (no key): in doubt, asked; Discord within its window: again with the key.
    assert delivery.plan(intent, both, window=0, now=101).doubtful == {"video"}
    assert delivery.plan(intent, both, window=60, now=130).again == {"video": "k1"}
    assert delivery.plan(intent, both, window=60, now=200).doubtful == {"video"}
    assert delivery.plan(intent, both, window=60, now=50).doubtful == {"video"}  # a clock set back
    recorded = intent | {"video": "5", "frame": delivery.unsure("9")}
    assert delivery.plan(recorded, both, window=0, now=101).already == both
    # The owner's Send again: what is in doubt goes afresh (a new key), the rest stays.
    again = delivery.plan(recorded, both, window=60, now=101, resend=True)
    assert again.already == {"video"} and not again.again and not again.doubtful
    assert delivery.control_messages(recorded) == {"video": "5", "frame": "9"}


async def test_a_video_accepted_but_not_recorded_is_offered_again_not_sent_twice(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    chat = FakeChat(crash_unheard="video")
    segment = await first_take_unheard(config, chat)
    async with running_bot(config, chat=chat) as bot:
        await until(lambda: notices_of(chat), "the notice")
        await chat.wait_for("segment", 2)
        await until(lambda: [s for s in chat.of("delete")], "the progress message to go")
        assert roles_sent(chat) == ["video", "frame"]  # the frame had no intent: sent; the video not again
        [notice] = [s for s in chat.of("text") if s.text in notices_of(chat)]
        assert "segment 1" in notice.text and "its video" in notice.text
        assert notice.keep[0] == (notices.SEND_AGAIN, control_id(segment, Action.RESEND))
        assert (notices.REVIEW[0][0], control_id(segment, Action.APPROVE)) in notice.keep
        row = await bot.store.get_segment(segment)
        assert row.posted["video"] == delivery.unsure(notice.message_id)
        # The owner does not see it: Send again (someone else's tap does nothing).
        await bot.service.control(CHAT, "999", segment, Action.RESEND)
        assert roles_sent(chat) == ["video", "frame"]
        await bot.service.control(CHAT, OWNER, segment, Action.RESEND)
        assert roles_sent(chat) == ["video", "frame", "video"]
        assert chat.of("segment")[-1].post.already == {"frame"}
        assert [c.text for c in chat.of("close") if c.message_id == notice.message_id] == [notices.SENT_AGAIN]
        # A second tap sends nothing more; the review goes on from the new post.
        await bot.service.control(CHAT, OWNER, segment, Action.RESEND)
        assert roles_sent(chat) == ["video", "frame", "video"]
        await bot.service.control(CHAT, OWNER, segment, Action.APPROVE)
        row = await bot.store.get_segment(segment)
        session = await bot.store.get_session(row.session_id)
        assert session.state is SessionState.AWAITING_PROMPT and not delivery.is_unsure(row.posted["video"])
    # Restarted again: nothing in doubt is posted or announced a second time.
    async with running_bot(config, chat=chat):
        pass
    assert roles_sent(chat) == ["video", "frame", "video"] and len(notices_of(chat)) == 1


async def test_within_the_platforms_key_window_it_is_sent_again_with_the_same_key(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    chat = FakeChat(crash_unheard="video", resend_window=60.0)
    await first_take_unheard(config, chat)
    async with running_bot(config, chat=chat):
        await chat.wait_for("segment", 2)
    keys = [key for role, key in chat.keys if role == "video"]
    assert len(keys) == 2 and keys[0] == keys[1]  # the platform takes it for the same message
    assert notices_of(chat) == []


async def test_past_the_platforms_key_window_the_owner_is_asked(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    chat = FakeChat(crash_unheard="video", resend_window=60.0)
    segment = await first_take_unheard(config, chat)
    # The restart comes later than the platform keeps the key: the intent is older than the window.
    async with Store.open(load_config(config, env={}).database_path) as store:
        await store.record_posted(segment, delivery.intent_key("video"), delivery.intent("k", 1.0))
    later = FakeChat(resend_window=60.0)
    async with running_bot(config, chat=later):
        await until(lambda: [t for t in later.texts(CHAT) if notices.SEND_AGAIN in t], "the notice")
        await later.wait_for("segment")
        assert [r for s in later.of("segment") for r in s.roles] == ["frame"]  # the video is not sent again


async def approve_two_and_finish(bot: Bot, chat: FakeChat) -> str:
    svc = bot.service
    await svc.start(CHAT, OWNER, picture_bytes(), "one")
    [seg1] = await chat.wait_for("segment")
    await svc.control(CHAT, OWNER, seg1.post.segment_id, Action.APPROVE)
    await svc.text(CHAT, OWNER, "two")
    seg2 = (await chat.wait_for("segment", 2))[1]
    await svc.control(CHAT, OWNER, seg2.post.segment_id, Action.APPROVE_FINISH)
    await chat.wait_for("final")
    await until(lambda: chat.crash_unheard is None, "the crash")
    rows = await bot.store.list_sessions(tuple(SessionState))
    return rows[0].id


async def test_a_final_accepted_but_not_recorded_is_offered_again_not_sent_twice(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    chat = FakeChat(crash_unheard="final.1")
    async with running_bot(config, chat=chat) as bot:
        session = await approve_two_and_finish(bot, chat)
        assert "final.1" not in (await bot.store.get_session(session)).posted
    async with running_bot(config, chat=chat) as bot:
        await until(lambda: notices_of(chat), "the notice")
        assert len(chat.of("final")) == 1
        [notice] = [s for s in chat.of("text") if s.text in notices_of(chat)]
        assert "your video" in notice.text
        [(label, data)] = notice.keep
        last = int(data.split(":")[1])
        assert (label, data) == (notices.SEND_AGAIN, control_id(last, Action.RESEND_FINAL))
        row = await bot.store.get_session(session)
        assert row.posted["final.1"] == delivery.unsure(notice.message_id) and "final" in row.posted
        await bot.service.control(CHAT, OWNER, last, Action.RESEND_FINAL)
        assert len(chat.of("final")) == 2 and chat.of("final")[-1].roles == [1]
        await bot.service.control(CHAT, OWNER, last, Action.RESEND_FINAL)
        assert len(chat.of("final")) == 2
        row = await bot.store.get_session(session)
        assert row.posted["final"] == [row.posted["final.1"]] and not delivery.is_unsure(row.posted["final.1"])


async def test_discord_sends_each_message_with_the_nonce_of_its_intent(tmp_path: Path) -> None:
    async with running(tmp_path) as w:
        chat, thread = await open_session(w)
        asked: list[tuple[str, ...]] = []

        async def sending(roles: tuple[str, ...]) -> str:
            asked.append(roles)
            return f"nonce-{len(asked)}"

        post = segment_post(tmp_path / "media", 17)
        await w.front.port.post_segment(chat, post, sending=sending)
        await w.front.port.post_final(chat, FinalPost(parts=(post.video,), caption="Your video"), sending=sending)
        await w.env.settle()
        made = [e for e in w.env.http_requests if e.method == "POST" and e.path == f"/channels/{thread.id}/messages"]
        assert asked == [("video", "frame"), ("final.1",)]
        assert [(e.json["nonce"], e.json["enforce_nonce"]) for e in made if isinstance(e.json, dict)] == [
            ("nonce-1", True),
            ("nonce-2", True),
        ]
        # simcord does not model Discord's deduplication by nonce: that part is Discord's.
        assert w.front.port.resend_window == 60.0


async def test_a_send_the_platform_refused_is_sent_again_plainly(tmp_path: Path) -> None:
    # An answer from the platform (or no connection at all): nothing was created, so nothing is
    # in doubt; the next try sends it as if it had never been asked for.
    config = write_config(tmp_path)
    chat = FakeChat(refuse="video")
    async with running_bot(config, chat=chat) as bot:
        await bot.service.start(CHAT, OWNER, picture_bytes(), "the sun rises")
        await until(lambda: chat.refuse is None, "the refusal")
        [session] = await bot.store.list_sessions(tuple(SessionState))
        [segment] = [s.id for s in await bot.store.list_segments(session.id)]

        async def intent_cleared() -> bool:
            posted = (await bot.store.get_segment(segment)).posted
            return delivery.intent_key("video") in posted and posted[delivery.intent_key("video")] is None

        await until(intent_cleared, "the intent to go")
        await bot.service.post_unposted()  # what the retry loop does every minute
        await chat.wait_for("segment", 2)
    assert roles_sent(chat) == ["video", "frame"] and notices_of(chat) == []


async def test_a_send_with_no_answer_is_offered_again_without_a_restart(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    chat = FakeChat(crash_unheard="video")
    async with running_bot(config, chat=chat) as bot:
        await bot.service.start(CHAT, OWNER, picture_bytes(), "the sun rises")
        await until(lambda: chat.crash_unheard is None, "the lost answer")
        await bot.service.post_unposted()
        await until(lambda: notices_of(chat), "the notice")
        [notice] = notices_of(chat)
        assert "cut short" in notice and "restart or a lost connection" in notice
        await chat.wait_for("segment", 2)
    assert roles_sent(chat) == ["video", "frame"]  # the video once: the first try's


async def test_discord_passes_on_an_answered_failure_as_one_that_created_nothing(tmp_path: Path) -> None:
    # Discord answered (403): no message was made, so the service may send it again plainly.
    async with running(tmp_path) as w:
        chat, thread = await open_session(w)
        w.env.inject_error("POST", f"/channels/{thread.id}/messages", status=403, code=50013, message="Missing Access")
        with pytest.raises(discord.Forbidden):
            await w.front.port.post_segment(chat, segment_post(tmp_path / "media", 17))
