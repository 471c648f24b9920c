"""``TelegramPort``: the conversation service's :class:`~bot.ports.ChatPort` on the Bot API.

Every call goes through :func:`with_retries`. A segment is posted as a video (streamable, with
its size, duration and a JPEG thumbnail of the hand-off frame) carrying the review keyboard,
followed by the hand-off frame as a photo. Once the video is posted the segment's record is
never lost: a failure of the photo only leaves the photo out.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from telegram import (
    Bot,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    InputFile,
    InputMediaPhoto,
    InputMediaVideo,
    Message,
)
from telegram.constants import ChatAction
from telegram.error import BadRequest, TelegramError

from bot.ports import IGNORE_SENT, NO_INTENT, ChatRef, FinalPost, MaybeSent, ReviewPage, SegmentPost, Sending, Sent
from bot.telegram_adapter.media import mp4_info, photo_upload, thumbnail_jpeg
from bot.telegram_adapter.retry import RetryPolicy, Superseded, with_retries
from shared.config import TelegramConfig

log = logging.getLogger("framechain.telegram")

PLATFORM = "telegram"
PUBLIC_API_HOST = "api.telegram.org"
MB = 1024 * 1024
#: Telegram's limits: bots upload 50 MB (2000 MB through a local Bot API server) and download 20 MB.
PUBLIC_UPLOAD_LIMIT = 50 * MB
LOCAL_UPLOAD_LIMIT = 2000 * MB
PUBLIC_DOWNLOAD_LIMIT = 20 * MB
TEXT_LIMIT = 4096
CAPTION_LIMIT = 1024
BUTTON_TEXT_LIMIT = 60
#: Callback data of a button that does nothing (the note left where review buttons were).
NOOP = "noop"
#: A chat action shows for five seconds; repeat it while an upload runs.
CHAT_ACTION_EVERY = 4.5
#: Telegram may take a while to process a large video after receiving it.
MEDIA_READ_TIMEOUT = 120.0

T = TypeVar("T")


def is_local_api(config: TelegramConfig) -> bool:
    """A Bot API server other than Telegram's own (``telegram-bot-api --local``)."""
    return urlsplit(config.api_base_url).hostname != PUBLIC_API_HOST


def upload_limit_bytes(config: TelegramConfig) -> int:
    if config.upload_limit_mb:
        return config.upload_limit_mb * MB
    return LOCAL_UPLOAD_LIMIT if is_local_api(config) else PUBLIC_UPLOAD_LIMIT


def download_limit_bytes(config: TelegramConfig) -> int | None:
    """Largest file getFile serves; a local server has none."""
    return None if is_local_api(config) else PUBLIC_DOWNLOAD_LIMIT


class UploadTooLarge(ValueError):
    """A file is over the chat's upload limit; nothing was sent."""

    def __init__(self, path: Path, size: int, limit: int) -> None:
        super().__init__(f"{path.name} is {size:,} bytes; the Telegram upload limit is {limit:,}")
        self.path = path
        self.size = size
        self.limit = limit


def clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def thread_kwargs(chat: ChatRef) -> dict[str, Any]:
    return {"message_thread_id": int(chat.thread_id)} if chat.thread_id else {}


def review_keyboard(
    controls: tuple[tuple[str, str], ...], pager: tuple[tuple[str, str], ...] = ()
) -> InlineKeyboardMarkup:
    """Two buttons a row: four in one row are too narrow on a phone. The ◀ ▶ ``pager`` is a row
    of its own; a pair with an empty id is an inert label ("take 2 of 3")."""
    buttons = [InlineKeyboardButton(label, callback_data=data) for label, data in controls]
    rows = [buttons[i : i + 2] for i in range(0, len(buttons), 2)]
    if pager:
        rows.append([InlineKeyboardButton(label, callback_data=data or NOOP) for label, data in pager])
    return InlineKeyboardMarkup(rows)


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.warning("telegram: a background edit failed: %s", task.exception())


def _not_modified(exc: BadRequest) -> bool:
    return "not modified" in str(exc).lower()


class TelegramPort:
    """What the conversation service calls to speak in Telegram chats."""

    platform = PLATFORM
    #: The Bot API has no idempotency key: a message a crash left in doubt is never sent blindly
    #: again (the service asks the user, ``bot.conversation.notices``).
    resend_window = 0.0

    def __init__(self, bot: Bot, config: TelegramConfig, retry: RetryPolicy, *, edit_wait: float = 2.0) -> None:
        self._bot = bot
        #: Refreshes the /settings keyboards shown for a session (the front end's SettingsKeyboards).
        self.settings_listener: Callable[[str, dict[str, str] | None], Awaitable[None]] | None = None
        self._upload_limit = upload_limit_bytes(config)
        self._retry = retry
        #: Per message, the newest text not yet sent, and the task sending it.
        self._pending_edits: dict[tuple[str, str], str] = {}
        self._editors: dict[tuple[str, str], asyncio.Task[None]] = {}
        #: Messages that show a picture: their text is a caption (progress messages with a preview).
        self._media_messages: set[tuple[str, str]] = set()
        #: Keyboards of messages that are edited (a progress message's ✖ Stop), repeated by each edit.
        self._keyboards: dict[tuple[str, str], InlineKeyboardMarkup] = {}
        self._edit_wait = edit_wait
        #: Per chat, the monotonic time before which Telegram asked for no more edits.
        self._quiet_until: dict[str, float] = {}

    def upload_limit(self, chat: ChatRef) -> int:
        return self._upload_limit

    async def _call(self, what: str, call: Callable[[], Awaitable[T]], *, creates: bool = False) -> T:
        return await with_retries(what, call, self._retry, creates=creates)

    async def send_text(self, chat: ChatRef, text: str, controls: tuple[tuple[str, str], ...] = ()) -> str:
        markup = review_keyboard(controls) if controls else None
        message = await self._call(
            "sendMessage",
            lambda: self._bot.send_message(
                int(chat.chat_id), clip(text.strip() or "…", TEXT_LIMIT), reply_markup=markup, **thread_kwargs(chat)
            ),
        )
        if markup is not None:
            # Telegram drops a keyboard an edit does not repeat: every edit of this message does.
            self._keyboards[(chat.chat_id, str(message.message_id))] = markup
        return str(message.message_id)

    async def send_photo(self, chat: ChatRef, path: Path, caption: str) -> str:
        data, name = await asyncio.to_thread(photo_upload, path)
        message = await self._call(
            "sendPhoto",
            lambda: self._bot.send_photo(
                int(chat.chat_id),
                photo=InputFile(data, filename=name),
                caption=clip(caption, CAPTION_LIMIT),
                read_timeout=MEDIA_READ_TIMEOUT,
                **thread_kwargs(chat),
            ),
        )
        return str(message.message_id)

    async def edit_text(self, chat: ChatRef, message_id: str, text: str) -> None:
        """Edit a (progress) message. One editor task per message sends the newest text asked
        for, so texts superseded while a flood limit is waited out are dropped. Returns when the
        edit is made, raising what it raised, or after ``edit_wait`` seconds with the edit left
        to finish in the background: a flood wait never stalls the caller (the job's progress)."""
        key = (chat.chat_id, message_id)
        self._pending_edits[key] = text
        editor = self._editors.get(key)
        if editor is not None:
            return  # the running editor sends this text next
        editor = asyncio.create_task(self._edit_loop(chat, message_id), name=f"telegram-edit-{message_id}")
        self._editors[key] = editor
        done, _ = await asyncio.wait({editor}, timeout=self._edit_wait)
        if done:
            editor.result()
        else:
            editor.add_done_callback(_log_failure)

    async def edit_media(self, chat: ChatRef, message_id: str, path: Path, text: str) -> str:
        """editMessageMedia where the message has a picture already; a text message cannot
        take one, so a photo with the text as caption replaces it (and the text one goes)."""
        data, name = await asyncio.to_thread(photo_upload, path)
        caption = clip(text.strip() or "…", CAPTION_LIMIT)
        key = (chat.chat_id, message_id)
        if key in self._media_messages:
            try:
                await self._call(
                    "editMessageMedia",
                    lambda: self._bot.edit_message_media(
                        InputMediaPhoto(InputFile(data, filename=name, attach=True), caption=caption),
                        chat_id=int(chat.chat_id),
                        message_id=int(message_id),
                        reply_markup=self._keyboards.get(key),
                        read_timeout=MEDIA_READ_TIMEOUT,
                    ),
                )
                return message_id
            except BadRequest as exc:
                if _not_modified(exc):
                    return message_id
                if "no media" not in str(exc).lower():
                    raise
        keyboard = self._keyboards.pop(key, None)
        photo = await self._call(
            "sendPhoto",
            lambda: self._bot.send_photo(
                int(chat.chat_id),
                photo=InputFile(data, filename=name),
                caption=caption,
                reply_markup=keyboard,
                read_timeout=MEDIA_READ_TIMEOUT,
                **thread_kwargs(chat),
            ),
        )
        new_id = str(photo.message_id)
        self._media_messages.add((chat.chat_id, new_id))
        if keyboard is not None:
            self._keyboards[(chat.chat_id, new_id)] = keyboard
        self._pending_edits.pop(key, None)  # the text message goes: no more edits for it
        try:
            await self.delete_message(chat, message_id)
        except TelegramError as exc:
            log.info("replaced progress message %s not deleted: %s", message_id, exc)
        return new_id

    async def _edit_loop(self, chat: ChatRef, message_id: str) -> None:
        key = (chat.chat_id, message_id)

        def hold_back(seconds: float) -> None:
            self._quiet_until[chat.chat_id] = time.monotonic() + seconds

        try:
            while key in self._pending_edits:
                # The chat is under a flood limit: wait it out, then send the newest text.
                quiet = self._quiet_until.get(chat.chat_id, 0.0) - time.monotonic()
                if quiet > 0:
                    await asyncio.sleep(quiet)
                    continue
                text = self._pending_edits.pop(key)
                # A message that shows a picture (a progress message with a preview) has a caption.
                if key in self._media_messages:
                    what, edit = (
                        "editMessageCaption",
                        functools.partial(
                            self._bot.edit_message_caption, caption=clip(text.strip() or "…", CAPTION_LIMIT)
                        ),
                    )
                else:
                    what, edit = (
                        "editMessageText",
                        functools.partial(self._bot.edit_message_text, clip(text.strip() or "…", TEXT_LIMIT)),
                    )
                try:
                    await with_retries(
                        what,
                        functools.partial(
                            edit,
                            chat_id=int(chat.chat_id),
                            message_id=int(message_id),
                            reply_markup=self._keyboards.get(key),
                        ),
                        self._retry,
                        still_wanted=lambda: key not in self._pending_edits,
                        on_flood=hold_back,
                    )
                except Superseded:
                    continue
                except BadRequest as exc:
                    if "no text in the message" in str(exc).lower() and key not in self._media_messages:
                        # A picture came in before a restart: its text is a caption now.
                        self._media_messages.add(key)
                        self._pending_edits.setdefault(key, text)
                        continue
                    if not _not_modified(exc):
                        raise
        finally:
            self._pending_edits.pop(key, None)
            del self._editors[key]

    async def close(self) -> None:
        """Stop edits still waiting (the bot is shutting down)."""
        editors = list(self._editors.values())
        for editor in editors:
            editor.cancel()
        await asyncio.gather(*editors, return_exceptions=True)

    async def post_segment(
        self, chat: ChatRef, post: SegmentPost, sent: Sent = IGNORE_SENT, sending: Sending = NO_INTENT
    ) -> dict[str, str]:
        posted: dict[str, str] = {}
        send_video = "video" not in post.already
        if not send_video and "frame" in post.already:
            return posted
        thumbnail: bytes | None = None
        if send_video:
            self._check_size(post.video)
            try:
                thumbnail = await asyncio.to_thread(thumbnail_jpeg, post.last_frame)
            except (OSError, ValueError):
                log.warning("no thumbnail from %s", post.last_frame, exc_info=True)
        async with self._uploading(chat, ChatAction.UPLOAD_VIDEO if send_video else ChatAction.UPLOAD_PHOTO):
            if send_video:
                await sending(("video",))
                posted["video"] = await self._send_segment_video(chat, post, thumbnail)
                await sent("video", posted["video"])  # recorded before anything else can fail
            if "frame" in post.already:
                return posted
            try:
                photo = await self._send_frame(chat, post, sending)
            except (TelegramError, OSError, ValueError, MaybeSent):
                # The video and its buttons are up; the frame is a convenience.
                log.warning("segment %d: hand-off frame not posted", post.segment_id, exc_info=True)
            else:
                posted["frame"] = str(photo.message_id)
                await sent("frame", posted["frame"])
        return posted

    async def _send_segment_video(self, chat: ChatRef, post: SegmentPost, thumbnail: bytes | None) -> str:
        video = await self._call(
            "sendVideo",
            lambda: self._bot.send_video(
                int(chat.chat_id),
                video=post.video,
                caption=clip(post.caption, CAPTION_LIMIT),
                supports_streaming=True,
                width=post.width,
                height=post.height,
                duration=max(1, math.ceil(post.seconds - 1e-6)),
                thumbnail=None if thumbnail is None else InputFile(thumbnail, filename="thumbnail.jpg", attach=True),
                reply_markup=review_keyboard(post.controls, post.pager),
                read_timeout=MEDIA_READ_TIMEOUT,
                **thread_kwargs(chat),
            ),
            creates=True,
        )
        return str(video.message_id)

    async def _send_frame(self, chat: ChatRef, post: SegmentPost, sending: Sending) -> Message:
        data, name = await asyncio.to_thread(photo_upload, post.last_frame)
        await sending(("frame",))
        caption = f"Last frame of segment {post.index}: the next segment starts from it."
        return await self._call(
            "sendPhoto",
            lambda: self._bot.send_photo(
                int(chat.chat_id),
                photo=InputFile(data, filename=name),
                caption=caption,
                read_timeout=MEDIA_READ_TIMEOUT,
                **thread_kwargs(chat),
            ),
            creates=True,
        )

    async def close_controls(
        self, chat: ChatRef, message_ids: dict[str, str], note: str, keep: tuple[tuple[str, str], ...] = ()
    ) -> None:
        """Replace the review buttons by one inert button showing ``note`` (or by nothing), and
        a row with the ``keep`` buttons."""
        target = message_ids.get("video")
        if not target:
            return
        rows = [[InlineKeyboardButton(clip(note, BUTTON_TEXT_LIMIT), callback_data=NOOP)]] if note.strip() else []
        if keep:
            rows.append([InlineKeyboardButton(label, callback_data=data) for label, data in keep])
        markup = InlineKeyboardMarkup(rows) if rows else None
        try:
            await self._call(
                "editMessageReplyMarkup",
                lambda: self._bot.edit_message_reply_markup(
                    chat_id=int(chat.chat_id), message_id=int(target), reply_markup=markup
                ),
            )
        except BadRequest as exc:
            if not _not_modified(exc):
                raise

    async def post_final(
        self, chat: ChatRef, post: FinalPost, sent: Sent = IGNORE_SENT, sending: Sending = NO_INTENT
    ) -> list[str]:
        """Every part as a streamable video, in order; all are checked against the limit first."""
        for part in post.parts:
            self._check_size(part)
        ids: list[str] = []
        count = len(post.parts)
        async with self._uploading(chat, ChatAction.UPLOAD_VIDEO):
            for number, part in enumerate(post.parts, 1):
                if number in post.already:
                    continue
                caption = post.caption if count == 1 else f"Part {number} of {count}\n{post.caption}"
                message = await self._send_part(chat, part, caption, functools.partial(sending, (f"final.{number}",)))
                ids.append(str(message.message_id))
                await sent(f"final.{number}", ids[-1])
        return ids

    async def show_review(self, chat: ChatRef, message_ids: dict[str, str], page: ReviewPage) -> None:
        """◀ ▶: editMessageMedia puts the other take's video (and its hand-off frame into the
        frame's photo) with its caption and keyboard; without files, editMessageCaption."""
        target = message_ids.get("video")
        if not target:
            return
        caption = clip(page.caption, CAPTION_LIMIT)
        markup = review_keyboard(page.controls, page.pager) if page.controls or page.pager else None
        try:
            if page.video is None or page.last_frame is None:
                await self._call(
                    "editMessageCaption",
                    lambda: self._bot.edit_message_caption(
                        chat_id=int(chat.chat_id), message_id=int(target), caption=caption, reply_markup=markup
                    ),
                )
                return
            self._check_size(page.video)
            video = await asyncio.to_thread(page.video.read_bytes)
            media = InputMediaVideo(
                InputFile(video, filename=page.video.name, attach=True),
                caption=caption,
                width=page.width,
                height=page.height,
                duration=max(1, math.ceil(page.seconds - 1e-6)),
                supports_streaming=True,
            )
            await self._call(
                "editMessageMedia",
                lambda: self._bot.edit_message_media(
                    media,
                    chat_id=int(chat.chat_id),
                    message_id=int(target),
                    reply_markup=markup,
                    read_timeout=MEDIA_READ_TIMEOUT,
                ),
            )
        except BadRequest as exc:
            if not _not_modified(exc):
                raise
        frame = message_ids.get("frame")
        if frame and frame != target and page.last_frame is not None:
            data, name = await asyncio.to_thread(photo_upload, page.last_frame)
            text = "Last frame of the take shown above: the next segment starts from it."
            try:
                await self._call(
                    "editMessageMedia",
                    lambda: self._bot.edit_message_media(
                        InputMediaPhoto(InputFile(data, filename=name, attach=True), caption=text),
                        chat_id=int(chat.chat_id),
                        message_id=int(frame),
                        read_timeout=MEDIA_READ_TIMEOUT,
                    ),
                )
            except BadRequest as exc:
                if not _not_modified(exc):
                    raise

    async def settings_changed(self, chat: ChatRef, session_id: str, current: dict[str, str] | None) -> None:
        if self.settings_listener is not None:
            await self.settings_listener(session_id, current)

    async def delete_message(self, chat: ChatRef, message_id: str) -> None:
        self._keyboards.pop((chat.chat_id, message_id), None)
        self._media_messages.discard((chat.chat_id, message_id))
        try:
            await self._call(
                "deleteMessage",
                lambda: self._bot.delete_message(chat_id=int(chat.chat_id), message_id=int(message_id)),
            )
        except BadRequest as exc:
            if "not found" not in str(exc).lower():
                raise  # e.g. older than 48 hours: Telegram keeps it
            log.debug("telegram: message %s in %s was gone already", message_id, chat.chat_id)

    async def _send_part(
        self, chat: ChatRef, part: Path, caption: str, sending: Callable[[], Awaitable[str]]
    ) -> Message:
        info = await asyncio.to_thread(mp4_info, part)
        shape: dict[str, Any] = {}
        if info is not None:
            shape = {"width": info.width, "height": info.height, "duration": max(1, math.ceil(info.seconds - 1e-6))}
        await sending()  # the last thing before the request: a crash after it leaves the part in doubt
        return await self._call(
            "sendVideo",
            lambda: self._bot.send_video(
                int(chat.chat_id),
                video=part,
                caption=clip(caption, CAPTION_LIMIT),
                supports_streaming=True,
                read_timeout=MEDIA_READ_TIMEOUT,
                **shape,
                **thread_kwargs(chat),
            ),
            creates=True,
        )

    def _check_size(self, path: Path) -> None:
        size = path.stat().st_size
        if size > self._upload_limit:
            raise UploadTooLarge(path, size, self._upload_limit)

    @contextlib.asynccontextmanager
    async def _uploading(self, chat: ChatRef, action: str) -> AsyncIterator[None]:
        """Show "sending video…" in the chat for as long as the block runs."""

        async def keep_showing() -> None:
            while True:
                try:
                    await self._bot.send_chat_action(int(chat.chat_id), action, **thread_kwargs(chat))
                except TelegramError as exc:
                    log.debug("chat action failed: %s", exc)
                await asyncio.sleep(CHAT_ACTION_EVERY)

        task = asyncio.create_task(keep_showing(), name=f"telegram-chat-action-{chat.chat_id}")
        try:
            yield
        finally:
            task.cancel()
            # Not suppress(CancelledError): that would also swallow a cancellation of the post
            # itself arriving meanwhile (a shutdown), leaving its task running on.
            await asyncio.gather(task, return_exceptions=True)
