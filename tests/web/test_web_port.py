"""WebPort over a real message log: what the service's calls leave for the page."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.ports import ChatRef, FinalPost, SegmentPost
from bot.web.messages import MessageLog
from bot.web.port import Hub, WebPort

CHAT = ChatRef("web", "local", "0123456789ab")


@pytest.fixture
async def port(tmp_path: Path) -> AsyncIterator[WebPort]:
    port = WebPort(Hub())
    port.attach(await MessageLog.open(tmp_path / "web-chat.db"))
    yield port
    messages = port.detach()
    assert messages is not None
    await messages.close()


def segment(tmp_path: Path, already: frozenset[str] = frozenset()) -> SegmentPost:
    return SegmentPost(
        segment_id=7,
        index=1,
        attempt=1,
        video=tmp_path / "seg001-take1.mp4",
        last_frame=tmp_path / "seg001-take1.png",
        caption="Segment 1 · take 1",
        width=64,
        height=64,
        frames=33,
        seconds=2.1,
        preview=True,
        controls=(("✅ Approve", "seg:7:approve"), ("🔁 Regenerate", "seg:7:regen")),
        already=already,
    )


async def test_a_segment_is_its_video_with_the_buttons_then_its_frame(port: WebPort, tmp_path: Path) -> None:
    recorded: list[tuple[str, str]] = []

    async def sent(role: str, message_id: str) -> None:
        recorded.append((role, message_id))

    posted = await port.post_segment(CHAT, segment(tmp_path), sent)
    assert list(posted) == ["video", "frame"] and recorded == list(posted.items())
    video, frame = await port.messages.history(CHAT.chat_id, CHAT.thread_id)
    assert video.view()["media"] == [{"kind": "video", "url": f"/media/{video.id}/0"}]
    assert [c["data"] for c in video.view()["controls"]] == ["seg:7:approve", "seg:7:regen"]
    assert frame.text.startswith("Last frame of segment 1") and frame.media[0][0] == "image"
    # After a restart with the video already up, only the frame is posted again.
    again = await port.post_segment(CHAT, segment(tmp_path, frozenset({"video"})))
    assert list(again) == ["frame"]
    # Closing the review leaves the note and only the kept buttons.
    await port.close_controls(CHAT, posted, "✅ Approved", keep=(("🏁 Finish", "seg:7:finish"),))
    closed = await port.messages.get(int(posted["video"]))
    assert (closed.note, closed.controls) == ("✅ Approved", (("🏁 Finish", "seg:7:finish"),))


async def test_progress_edits_previews_and_deletes(port: WebPort, tmp_path: Path) -> None:
    message_id = await port.send_text(CHAT, "queued", controls=(("✖ Stop", "seg:7:stop"),))
    await port.edit_text(CHAT, message_id, "step 1/8")
    assert await port.edit_media(CHAT, message_id, tmp_path / "preview-1.png", "step 2/8") == message_id
    shown = (await port.messages.get(int(message_id))).view()
    assert shown["text"] == "step 2/8" and shown["controls"][0]["data"] == "seg:7:stop"
    assert shown["media"] == [{"kind": "image", "url": f"/media/{message_id}/0?v=3"}]  # a new address per picture
    with pytest.raises(KeyError):  # another user's chat cannot touch it
        await port.edit_text(ChatRef("web", "mallory", CHAT.thread_id), message_id, "x")
    await port.delete_message(CHAT, message_id)
    assert await port.messages.history(CHAT.chat_id, CHAT.thread_id) == []
    await port.delete_message(CHAT, "999")  # gone already: nothing to do


async def test_a_final_in_parts_skips_those_posted(port: WebPort, tmp_path: Path) -> None:
    parts = (tmp_path / "final-part1of2.mp4", tmp_path / "final-part2of2.mp4")
    ids = await port.post_final(CHAT, FinalPost(parts=parts, caption="Here's your video", already=frozenset({1})))
    (message,) = await port.messages.history(CHAT.chat_id, CHAT.thread_id)
    assert ids == [str(message.id)] and message.text.startswith("Part 2 of 2")


async def test_a_port_not_running_refuses(tmp_path: Path) -> None:
    with pytest.raises(ConnectionError):
        await WebPort(Hub()).send_text(CHAT, "hello")


async def test_a_post_sent_again_with_its_keys_is_the_one_already_there(port: WebPort, tmp_path: Path) -> None:
    """After a crash between the log taking a message and the store recording it, the service
    sends again with the keys it recorded first (resend_window): the page shows one copy."""
    keys: dict[tuple[str, ...], str] = {}

    async def sending(roles: tuple[str, ...]) -> str:
        return keys.setdefault(roles, f"key-{'-'.join(roles)}")

    first = await port.post_segment(CHAT, segment(tmp_path), sending=sending)
    again = await port.post_segment(CHAT, segment(tmp_path), sending=sending)
    assert again == first
    final = FinalPost(parts=(tmp_path / "final.mp4",), caption="Here's your video")
    assert await port.post_final(CHAT, final, sending=sending) == await port.post_final(CHAT, final, sending=sending)
    assert len(await port.messages.history(CHAT.chat_id, CHAT.thread_id)) == 3  # video, frame, final
    assert port.resend_window == float("inf")
    # Without keys (a plain send), each call is a message of its own.
    await port.post_final(CHAT, final)
    assert len(await port.messages.history(CHAT.chat_id, CHAT.thread_id)) == 4


async def test_a_log_from_before_send_keys_gets_the_column(tmp_path: Path) -> None:
    import aiosqlite

    path = tmp_path / "old.db"
    async with aiosqlite.connect(path) as db:
        await db.executescript(
            "CREATE TABLE messages (id INTEGER PRIMARY KEY AUTOINCREMENT, user TEXT NOT NULL, thread TEXT NOT NULL,"
            " author TEXT NOT NULL, text TEXT NOT NULL DEFAULT '', media TEXT NOT NULL DEFAULT '[]',"
            " controls TEXT NOT NULL DEFAULT '[]', note TEXT NOT NULL DEFAULT '', deleted INTEGER NOT NULL DEFAULT 0,"
            " version INTEGER NOT NULL DEFAULT 1, created REAL NOT NULL);"
            "INSERT INTO messages (user, thread, author, text, created) VALUES ('local', 't', 'bot', 'hi', 0);"
        )
        await db.commit()
    log = await MessageLog.open(path)
    try:
        kept = await log.add("local", "t", "bot", "again", key="k1")
        assert await log.add("local", "t", "bot", "again", key="k1") == kept
        assert [m.text for m in await log.history("local", "t")] == ["hi", "again"]
    finally:
        await log.close()


async def test_a_conversation_is_titled_by_its_first_prompt(tmp_path: Path) -> None:
    log = await MessageLog.open(tmp_path / "web-chat.db")
    try:
        thread = await log.new_thread("local")
        assert [t.view()["title"] for t in await log.threads("local")] == ["Untitled video"]
        for text in ("🖼", "/settings takes=2", "🖼 /end", "🖼 a lighthouse at dusk", "the camera flies"):
            await log.add("local", thread, "you", text)
        (shown,) = await log.threads("local")
        assert shown.title == "a lighthouse at dusk"
    finally:
        await log.close()
