"""The progress message's live previews on their own: the throttle, and a message replaced by a
picture (Telegram) is the one deleted, even when the job is forgotten before its upload is done."""

from __future__ import annotations

import asyncio
from pathlib import Path

from PIL import Image

from bot.conversation import delivery
from bot.conversation.background import BackgroundTasks
from bot.conversation.chats import Chats
from bot.conversation.progress_messages import ProgressMessages
from bot.ports import ChatRef
from bot.store import Store
from tests.bot.fake_chat import FakeChat

CHAT = ChatRef("telegram", "100", "")


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def setup(tmp_path: Path, chat: FakeChat, store: Store, clock: Clock) -> tuple[ProgressMessages, int, Path]:
    chats = Chats()
    chats.add(chat)
    messages = ProgressMessages(store, chats, BackgroundTasks(), interval=3.0, clock=clock)
    session = await store.create_session(platform="telegram", chat_id="100", owner_id="7")
    segment = await store.add_segment(session.id, idx=0, prompt="p")
    await messages.post(CHAT, segment)
    picture = tmp_path / "preview-seg001-take1.png"
    Image.new("RGB", (40, 10)).save(picture)
    return messages, segment.id, picture


async def settle() -> None:
    for _ in range(50):
        await asyncio.sleep(0.01)


async def test_pictures_come_no_more_often_than_the_edit_interval(tmp_path: Path) -> None:
    chat, clock = FakeChat(), Clock()
    async with Store.open(tmp_path / "fc.db") as store:
        messages, segment_id, picture = await setup(tmp_path, chat, store, clock)
        await messages.picture(segment_id, picture, "step 2/8")
        await settle()
        clock.now += 1.0
        await messages.picture(segment_id, picture, "step 4/8")  # too soon: dropped
        await settle()
        clock.now += 3.0
        await messages.picture(segment_id, picture, "step 6/8")
        await settle()
        assert [s.text for s in chat.of("media")] == ["step 2/8", "step 6/8"]


async def test_a_replaced_message_is_deleted_even_when_the_job_was_forgotten(tmp_path: Path) -> None:
    chat, clock = FakeChat(media_replaces=True, media_delay=0.2), Clock()
    async with Store.open(tmp_path / "fc.db") as store:
        messages, segment_id, picture = await setup(tmp_path, chat, store, clock)
        [text] = chat.of("text")
        await messages.picture(segment_id, picture, "step 2/8")
        messages.forget(segment_id)  # the job's result came while the picture was uploading
        messages.retire(CHAT, segment_id)
        await asyncio.sleep(0.5)
        [media] = chat.of("media")
        assert {s.message_id for s in chat.of("delete")} == {text.message_id, media.message_id}
        assert (await store.get_segment(segment_id)).posted.get(delivery.PROGRESS) is None
