"""A Telegram Bot API stand-in: an aiohttp server on 127.0.0.1 that the real python-telegram-bot
stack talks HTTP to (``api_base_url = standin.base_url``).

It implements the methods framechain uses, the way Telegram answers them: form-encoded and
multipart requests, ``{"ok": true, "result": ...}`` / ``{"ok": false, "error_code", "description",
"parameters"}`` answers, long-polling ``getUpdates`` with offset confirmation and
``allowed_updates`` (``message_reaction`` only when asked for), uploads up to 50 MB, getFile
downloads up to 20 MB (no limits with ``local=True``), 4096-character texts, 1024-character
captions, 64-byte callback data, "message is not modified".

Tests inject what users do (:meth:`BotApiStandIn.user_message`, :meth:`press`, :meth:`react`),
inject failures (:meth:`fail`: a 429 with ``retry_after``, a 5xx, an HTML 502), and read what the
bot did (:attr:`calls`, :meth:`wait_for`, :meth:`message`).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import itertools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from PIL import Image

TOKEN = "123456:TEST-token"
BOT_ID = 123456
BOT_USERNAME = "framechain_test_bot"
MB = 1024 * 1024
UPLOAD_LIMIT = 50 * MB
DOWNLOAD_LIMIT = 20 * MB
PHOTO_LIMIT = 10 * MB
#: Updates Telegram leaves out unless allowed_updates names them.
OPT_IN_UPDATES = frozenset({"chat_member", "message_reaction", "message_reaction_count"})
CHAT_ACTIONS = frozenset(
    {
        "typing",
        "upload_photo",
        "record_video",
        "upload_video",
        "record_voice",
        "upload_voice",
        "upload_document",
        "choose_sticker",
        "find_location",
        "record_video_note",
        "upload_video_note",
    }
)
_JSON_FIELDS = frozenset(
    {
        "media",
        "reply_markup",
        "allowed_updates",
        "commands",
        "reaction",
        "reply_parameters",
        "scope",
        "entities",
        "caption_entities",
        "link_preview_options",
    }
)
_INT_FIELDS = frozenset(
    {"chat_id", "message_id", "offset", "limit", "timeout", "width", "height", "duration", "message_thread_id"}
)
_BOOL_FIELDS = frozenset(
    {"supports_streaming", "show_alert", "drop_pending_updates", "disable_notification", "is_big", "has_spoiler"}
)


@dataclass(frozen=True)
class Upload:
    filename: str
    content_type: str
    data: bytes


@dataclass
class Call:
    """One request the bot made: its method, decoded parameters, uploaded files and HTTP answer."""

    method: str
    params: dict[str, Any]
    files: dict[str, Upload]
    at: float
    status: int = 200
    result: Any = None

    def file(self, param: str) -> Upload | None:
        """The upload a parameter names, directly or through ``attach://``."""
        value = self.params.get(param)
        if isinstance(value, str) and value.startswith("attach://"):
            return self.files.get(value.removeprefix("attach://"))
        return self.files.get(param)

    @property
    def ok(self) -> bool:
        return self.status == 200


@dataclass
class _Failure:
    status: int
    description: str
    parameters: dict[str, Any] | None
    html: bool


@dataclass
class _File:
    file_id: str
    unique_id: str
    data: bytes
    path: str
    claimed_size: int | None = None

    @property
    def size(self) -> int:
        return self.claimed_size if self.claimed_size is not None else len(self.data)


class ApiError(Exception):
    def __init__(self, status: int, description: str, parameters: dict[str, Any] | None = None) -> None:
        super().__init__(description)
        self.status = status
        self.description = description
        self.parameters = parameters


def _bad(description: str) -> ApiError:
    return ApiError(400, f"Bad Request: {description}")


def _image_size(data: bytes) -> tuple[int, int]:
    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.size
    except Exception:
        return 0, 0


@dataclass
class _Update:
    update_id: int
    kind: str
    payload: dict[str, Any]


@dataclass
class BotApiStandIn:
    token: str = TOKEN
    #: A local Bot API server: 2000 MB uploads and no download limit.
    local: bool = False
    upload_limit: int = UPLOAD_LIMIT
    calls: list[Call] = field(default_factory=list)
    commands: list[dict[str, Any]] = field(default_factory=list)
    #: The command lists set for a narrower scope, by the scope's JSON (sorted keys).
    scoped_commands: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    port: int = 0

    def __post_init__(self) -> None:
        if self.local:
            self.upload_limit = 2000 * MB
        self._updates: list[_Update] = []
        self._update_ids = itertools.count(1)
        self._allowed: frozenset[str] | None = None  # None: Telegram's default set
        self._changed = asyncio.Condition()
        self._failures: dict[str, list[_Failure]] = {}
        self._messages: dict[tuple[int, int], dict[str, Any]] = {}
        self._message_ids: dict[int, itertools.count[int]] = {}
        self._files: dict[str, _File] = {}
        self._file_numbers = itertools.count(1)
        self._queries: dict[str, bool] = {}  # id -> answered
        self._query_ids = itertools.count(1)
        self._runner: web.AppRunner | None = None
        self._closing = False

    # --- lifecycle ---------------------------------------------------------------------------

    async def __aenter__(self) -> BotApiStandIn:
        app = web.Application(client_max_size=self.upload_limit + 4 * MB)
        app.router.add_route("*", "/bot{token}/{method}", self._api)
        app.router.add_get("/file/bot{token}/{path:.+}", self._download)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        return self

    async def __aexit__(self, *exc: object) -> None:
        async with self._changed:  # long polls still waiting answer now
            self._closing = True
            self._changed.notify_all()
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/bot"

    @property
    def file_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/file/bot"

    # --- what tests do -------------------------------------------------------------------------

    def fail(
        self,
        method: str,
        *,
        status: int = 500,
        description: str = "Internal Server Error",
        retry_after: int | None = None,
        times: int = 1,
        html: bool = False,
    ) -> None:
        """Answer the next ``times`` calls of ``method`` with an error (``retry_after``: a 429)."""
        parameters = None
        if retry_after is not None:
            status, description = 429, f"Too Many Requests: retry after {retry_after}"
            parameters = {"retry_after": retry_after}
        self._failures.setdefault(method, []).extend(
            _Failure(status, description, parameters, html) for _ in range(times)
        )

    def user(self, user_id: int, name: str = "") -> dict[str, Any]:
        return {"id": user_id, "is_bot": False, "first_name": name or f"User{user_id}"}

    def chat(self, chat_id: int, *, forum: bool = False) -> dict[str, Any]:
        if chat_id > 0:
            return {"id": chat_id, "type": "private", "first_name": f"User{chat_id}"}
        return {"id": chat_id, "type": "supergroup", "title": "Test group", "is_forum": forum}

    async def user_message(
        self,
        chat_id: int,
        user_id: int,
        *,
        text: str | None = None,
        caption: str | None = None,
        photo: bytes | None = None,
        document: bytes | None = None,
        file_name: str = "picture.png",
        mime_type: str | None = "image/png",
        claimed_size: int | None = None,
        reply_to: int | None = None,
        thread_id: int | None = None,
    ) -> dict[str, Any]:
        """A user's message arrives (as an update). ``claimed_size`` overrides the file size the
        metadata reports, to stand for a file too large to make in a test."""
        message = self._new_message(chat_id, self.user(user_id), thread_id)
        if text is not None:
            message["text"] = text
            if text.startswith("/"):
                length = len(text.split()[0])
                message["entities"] = [{"type": "bot_command", "offset": 0, "length": length}]
        if caption is not None:
            message["caption"] = caption
        if photo is not None:
            stored = self._store_file(photo, "photos", "jpg", claimed_size)
            width, height = _image_size(photo)
            small = self._store_file(photo[:100], "photos", "jpg", None)
            message["photo"] = [
                # Telegram lists the sizes it made, smallest first.
                {
                    "file_id": small.file_id,
                    "file_unique_id": small.unique_id,
                    "width": max(1, width // 4),
                    "height": max(1, height // 4),
                },
                {
                    "file_id": stored.file_id,
                    "file_unique_id": stored.unique_id,
                    "width": width,
                    "height": height,
                    "file_size": stored.size,
                },
            ]
        if document is not None:
            stored = self._store_file(document, "documents", file_name.rsplit(".", 1)[-1], claimed_size)
            message["document"] = {
                "file_id": stored.file_id,
                "file_unique_id": stored.unique_id,
                "file_name": file_name,
                "file_size": stored.size,
                **({"mime_type": mime_type} if mime_type else {}),
            }
        if reply_to is not None:
            message["reply_to_message"] = self._messages[(chat_id, reply_to)]
        await self._push("message", message)
        return message

    async def press(self, chat_id: int, user_id: int, message_id: int, data: str) -> str:
        """A user presses an inline button with ``data`` under a message; returns the query id."""
        query_id = str(next(self._query_ids))
        self._queries[query_id] = False
        await self._push(
            "callback_query",
            {
                "id": query_id,
                "from": self.user(user_id),
                "chat_instance": str(chat_id),
                "message": self._messages[(chat_id, message_id)],
                "data": data,
            },
        )
        return query_id

    async def react(
        self, chat_id: int, user_id: int, message_id: int, emoji: list[str], old: list[str] | None = None
    ) -> None:
        await self._push(
            "message_reaction",
            {
                "chat": self.chat(chat_id),
                "message_id": message_id,
                "user": self.user(user_id),
                "date": int(time.time()),
                "old_reaction": [{"type": "emoji", "emoji": e} for e in old or []],
                "new_reaction": [{"type": "emoji", "emoji": e} for e in emoji],
            },
        )

    def sent(self, method: str | None = None, *, ok_only: bool = True) -> list[Call]:
        return [c for c in self.calls if (method is None or c.method == method) and (c.ok or not ok_only)]

    async def wait_for(
        self,
        method: str,
        count: int = 1,
        *,
        where: Callable[[Call], bool] = lambda call: True,
        timeout: float = 10.0,
        ok_only: bool = True,
    ) -> list[Call]:
        """Wait until the bot made ``count`` matching calls; return all matching calls."""

        def matching() -> list[Call]:
            return [c for c in self.sent(method, ok_only=ok_only) if where(c)]

        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(lambda: len(matching()) >= count), timeout)
        return matching()

    def message(self, chat_id: int, message_id: int) -> dict[str, Any]:
        """A message as it stands now (after edits)."""
        return self._messages[(chat_id, message_id)]

    def query_answered(self, query_id: str) -> bool:
        return self._queries.get(query_id, False)

    def answers(self, query_id: str) -> list[Call]:
        """Every answerCallbackQuery the bot made for one press (accepted or not)."""
        calls = self.sent("answerCallbackQuery", ok_only=False)
        return [c for c in calls if str(c.params.get("callback_query_id")) == query_id]

    def toast(self, query_id: str) -> str | None:
        """The text the presser saw for a press: its one accepted answer's (``""`` when empty)."""
        accepted = [c for c in self.answers(query_id) if c.ok]
        return str(accepted[0].params.get("text") or "") if accepted else None

    def bot_messages(self, chat_id: int) -> list[dict[str, Any]]:
        """What a member sees of the bot in a chat now, oldest first: its messages as edited,
        without those it deleted."""
        me = self._me()["id"]
        ids = sorted(mid for (cid, mid), m in self._messages.items() if cid == chat_id and m["from"]["id"] == me)
        return [self._messages[(chat_id, mid)] for mid in ids]

    @property
    def pending_updates(self) -> int:
        return len(self._updates)

    # --- plumbing ------------------------------------------------------------------------------

    def _new_message(self, chat_id: int, sender: dict[str, Any], thread_id: int | None) -> dict[str, Any]:
        ids = self._message_ids.setdefault(chat_id, itertools.count(1))
        message: dict[str, Any] = {
            "message_id": next(ids),
            "date": int(time.time()),
            "chat": self.chat(chat_id, forum=thread_id is not None),
            "from": sender,
        }
        if thread_id is not None:
            message["message_thread_id"] = thread_id
            message["is_topic_message"] = True
        self._messages[(chat_id, message["message_id"])] = message
        return message

    def _store_file(self, data: bytes, folder: str, ext: str, claimed_size: int | None) -> _File:
        number = next(self._file_numbers)
        stored = _File(f"FILE{number:06d}", f"U{number:06d}", data, f"{folder}/file_{number}.{ext}", claimed_size)
        self._files[stored.file_id] = stored
        return stored

    async def _push(self, kind: str, payload: dict[str, Any]) -> None:
        async with self._changed:
            self._updates.append(_Update(next(self._update_ids), kind, payload))
            self._changed.notify_all()

    async def _record(self, call: Call) -> None:
        async with self._changed:
            self.calls.append(call)
            self._changed.notify_all()

    async def _download(self, request: web.Request) -> web.StreamResponse:
        if request.match_info["token"] != self.token:
            return web.Response(status=401, text="Unauthorized")
        path = request.match_info["path"]
        for stored in self._files.values():
            if stored.path == path:
                return web.Response(body=stored.data, content_type="application/octet-stream")
        return web.Response(status=404, text="Not Found")

    async def _api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        if request.match_info["token"] != self.token:
            return self._error(ApiError(401, "Unauthorized"))
        if request.content_length is not None and request.content_length > self.upload_limit:
            # Take the body in before answering: a client still writing would not read the answer.
            while await request.content.readany():
                pass
            await self._record(Call(method, {}, {}, time.monotonic(), status=413))
            return self._error(ApiError(413, "Request Entity Too Large"))
        params, files = await self._read(request)
        call = Call(method, params, files, time.monotonic())
        failures = self._failures.get(method)
        if failures:
            failure = failures.pop(0)
            call.status = failure.status
            await self._record(call)
            if failure.html:
                return web.Response(status=failure.status, text="<html><h1>Bad Gateway</h1></html>")
            return self._error(ApiError(failure.status, failure.description, failure.parameters))
        handler = getattr(self, "_m_" + method, None)
        if handler is None:
            call.status = 404
            await self._record(call)
            return self._error(ApiError(404, "Not Found"))
        try:
            result = await handler(call)
        except ApiError as exc:
            call.status = exc.status
            await self._record(call)
            return self._error(exc)
        call.result = result
        if method != "getUpdates" or result:  # empty polls would drown the record
            await self._record(call)
        return web.json_response({"ok": True, "result": result})

    @staticmethod
    def _error(exc: ApiError) -> web.Response:
        body: dict[str, Any] = {"ok": False, "error_code": exc.status, "description": exc.description}
        if exc.parameters:
            body["parameters"] = exc.parameters
        return web.json_response(body, status=exc.status)

    @staticmethod
    async def _read(request: web.Request) -> tuple[dict[str, Any], dict[str, Upload]]:
        raw: dict[str, Any] = dict(request.query)
        files: dict[str, Upload] = {}
        if request.content_type == "application/json":
            raw.update(await request.json())
        elif request.can_read_body:
            for name, value in (await request.post()).items():
                if isinstance(value, web.FileField):
                    files[name] = Upload(value.filename, value.content_type, value.file.read())
                else:
                    raw[name] = value
        params: dict[str, Any] = {}
        for name, value in raw.items():
            if isinstance(value, str) and name in _JSON_FIELDS:
                params[name] = json.loads(value)
            elif isinstance(value, str) and name in _INT_FIELDS and value.lstrip("-").isdigit():
                params[name] = int(value)
            elif isinstance(value, str) and name in _BOOL_FIELDS:
                params[name] = value.lower() == "true"
            else:
                params[name] = value
        return params, files

    def _upload(self, call: Call, param: str, folder: str, ext: str, limit: int) -> _File:
        upload = call.file(param)
        if upload is None:
            value = call.params.get(param)
            if isinstance(value, str) and value in self._files:
                return self._files[value]
            raise _bad(f"there is no {param} in the request")
        if len(upload.data) > limit:
            raise ApiError(413, "Request Entity Too Large")
        return self._store_file(upload.data, folder, ext, None)

    def _bot_message(self, call: Call) -> dict[str, Any]:
        chat_id = call.params.get("chat_id")
        if not isinstance(chat_id, int):
            raise _bad("chat not found")
        thread_id = call.params.get("message_thread_id")
        message = self._new_message(chat_id, self._me(), thread_id if isinstance(thread_id, int) else None)
        if "reply_markup" in call.params:
            self._check_markup(call.params["reply_markup"])
            message["reply_markup"] = call.params["reply_markup"]
        caption = call.params.get("caption")
        if caption:
            if len(caption) > 1024:
                raise _bad("message caption is too long")
            message["caption"] = caption
        reply = call.params.get("reply_parameters")
        if isinstance(reply, dict) and (chat_id, reply.get("message_id")) in self._messages:
            message["reply_to_message"] = dict(self._messages[(chat_id, reply["message_id"])])
        return message

    @staticmethod
    def _check_markup(markup: Any) -> None:
        for row in (markup or {}).get("inline_keyboard", []):
            for button in row:
                if not button.get("text"):
                    raise _bad("text buttons are unallowed in the inline keyboard")
                data = button.get("callback_data")
                if data is not None and not 1 <= len(data.encode()) <= 64:
                    raise _bad("BUTTON_DATA_INVALID")

    def _me(self) -> dict[str, Any]:
        return {
            "id": int(self.token.split(":")[0]),
            "is_bot": True,
            "first_name": "framechain test",
            "username": BOT_USERNAME,
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
        }

    def _edited(self, call: Call) -> dict[str, Any]:
        key = (call.params.get("chat_id"), call.params.get("message_id"))
        message = self._messages.get(key)  # type: ignore[arg-type]
        if message is None:
            raise _bad("message to edit not found")
        return message

    # --- methods -------------------------------------------------------------------------------

    async def _m_getMe(self, call: Call) -> Any:
        return self._me()

    async def _m_deleteWebhook(self, call: Call) -> Any:
        return True

    async def _m_getWebhookInfo(self, call: Call) -> Any:
        return {"url": "", "has_custom_certificate": False, "pending_update_count": len(self._updates)}

    async def _m_getUpdates(self, call: Call) -> Any:
        offset = call.params.get("offset") or 0
        limit = call.params.get("limit") or 100
        timeout = call.params.get("timeout") or 0
        allowed = call.params.get("allowed_updates")
        if allowed is not None:
            self._allowed = frozenset(allowed) if allowed else None

        def wanted(update: _Update) -> bool:
            return update.kind in self._allowed if self._allowed is not None else update.kind not in OPT_IN_UPDATES

        async with self._changed:
            # Updates before the offset are confirmed; those of kinds not asked for are dropped.
            self._updates = [u for u in self._updates if u.update_id >= offset and wanted(u)]
            if not self._updates and timeout:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(
                        self._changed.wait_for(lambda: bool(self._updates) or self._closing), timeout
                    )
                self._updates = [u for u in self._updates if wanted(u)]
            return [{"update_id": u.update_id, u.kind: u.payload} for u in self._updates[:limit]]

    async def _m_sendMessage(self, call: Call) -> Any:
        text = call.params.get("text", "")
        if not text.strip():
            raise _bad("message text is empty")
        if len(text) > 4096:
            raise _bad("message is too long")
        message = self._bot_message(call)
        message["text"] = text
        return message

    async def _m_sendPhoto(self, call: Call) -> Any:
        stored = self._upload(call, "photo", "photos", "jpg", PHOTO_LIMIT)
        width, height = _image_size(stored.data)
        if not width or width + height > 10000:
            raise _bad("PHOTO_INVALID_DIMENSIONS")
        message = self._bot_message(call)
        message["photo"] = [
            {
                "file_id": stored.file_id,
                "file_unique_id": stored.unique_id,
                "width": width,
                "height": height,
                "file_size": stored.size,
            }
        ]
        return message

    async def _m_sendVideo(self, call: Call) -> Any:
        stored = self._upload(call, "video", "videos", "mp4", self.upload_limit)
        message = self._bot_message(call)
        video: dict[str, Any] = {
            "file_id": stored.file_id,
            "file_unique_id": stored.unique_id,
            "width": call.params.get("width", 0),
            "height": call.params.get("height", 0),
            "duration": call.params.get("duration", 0),
            "mime_type": "video/mp4",
            "file_size": stored.size,
        }
        thumbnail = call.file("thumbnail")
        if thumbnail is not None:
            width, height = _image_size(thumbnail.data)
            thumb = self._store_file(thumbnail.data, "thumbnails", "jpg", None)
            video["thumbnail"] = {
                "file_id": thumb.file_id,
                "file_unique_id": thumb.unique_id,
                "width": width,
                "height": height,
            }
        message["video"] = video
        return message

    async def _m_sendDocument(self, call: Call) -> Any:
        stored = self._upload(call, "document", "documents", "bin", self.upload_limit)
        upload = call.file("document")
        message = self._bot_message(call)
        message["document"] = {
            "file_id": stored.file_id,
            "file_unique_id": stored.unique_id,
            "file_name": upload.filename if upload else "file",
            "file_size": stored.size,
        }
        return message

    async def _m_editMessageText(self, call: Call) -> Any:
        message = self._edited(call)
        if "text" not in message:
            raise _bad("there is no text in the message to edit")
        text = call.params.get("text", "")
        if not text.strip():
            raise _bad("message text is empty")
        if len(text) > 4096:
            raise _bad("MESSAGE_TOO_LONG")
        markup = call.params.get("reply_markup")
        if text == message["text"] and markup == message.get("reply_markup"):
            raise _bad(
                "message is not modified: specified new message content and reply markup are exactly"
                " the same as a current content and reply markup of the message"
            )
        message["text"] = text
        message["edit_date"] = int(time.time())
        if markup is not None:
            message["reply_markup"] = markup
        else:
            message.pop("reply_markup", None)
        return message

    async def _m_editMessageReplyMarkup(self, call: Call) -> Any:
        message = self._edited(call)
        markup = call.params.get("reply_markup")
        if markup == message.get("reply_markup"):
            raise _bad("message is not modified")
        self._check_markup(markup)
        if markup:
            message["reply_markup"] = markup
        else:
            message.pop("reply_markup", None)
        message["edit_date"] = int(time.time())
        return message

    async def _m_editMessageCaption(self, call: Call) -> Any:
        message = self._edited(call)
        caption = call.params.get("caption", "")
        if len(caption) > 1024:
            raise _bad("message caption is too long")
        message["caption"] = caption
        # As on Telegram, an edit that does not repeat the keyboard drops it.
        if "reply_markup" in call.params:
            message["reply_markup"] = call.params["reply_markup"]
        else:
            message.pop("reply_markup", None)
        return message

    async def _m_editMessageMedia(self, call: Call) -> Any:
        message = self._edited(call)
        if not any(kind in message for kind in ("photo", "video", "document", "animation")):
            raise _bad("there is no media in the message to edit")
        media = call.params.get("media")
        if not isinstance(media, dict) or media.get("type") not in ("photo", "video"):
            raise _bad("can't parse InputMedia: media type is invalid")
        attached = str(media.get("media", ""))
        upload = call.files.get(attached.removeprefix("attach://")) if attached.startswith("attach://") else None
        if upload is None:
            raise _bad(f"there is no {media.get('type')} in the request")
        if media.get("type") == "video":
            video = self._store_file(upload.data, "videos", "mp4", None)
            message.pop("photo", None)
            message["video"] = {
                "file_id": video.file_id,
                "file_unique_id": video.unique_id,
                "width": media.get("width", 0),
                "height": media.get("height", 0),
                "duration": media.get("duration", 0),
                "mime_type": "video/mp4",
                "file_size": video.size,
            }
            message["caption"] = media.get("caption", "")
            message["edit_date"] = int(time.time())
            if "reply_markup" in call.params:
                message["reply_markup"] = call.params["reply_markup"]
            else:
                message.pop("reply_markup", None)
            return message
        stored = self._store_file(upload.data, "photos", "jpg", None)
        width, height = _image_size(stored.data)
        caption = media.get("caption", "")
        if len(caption) > 1024:
            raise _bad("message caption is too long")
        message.pop("video", None)
        message.pop("document", None)
        message["photo"] = [
            {"file_id": stored.file_id, "file_unique_id": stored.unique_id, "width": width, "height": height}
        ]
        message["caption"] = caption
        message["edit_date"] = int(time.time())
        if "reply_markup" in call.params:
            message["reply_markup"] = call.params["reply_markup"]
        else:
            message.pop("reply_markup", None)
        return message

    async def _m_answerCallbackQuery(self, call: Call) -> Any:
        query_id = call.params.get("callback_query_id")
        if self._queries.get(str(query_id), True):
            raise _bad("query is too old and response timeout expired or query ID is invalid")
        self._queries[str(query_id)] = True
        return True

    async def _m_getFile(self, call: Call) -> Any:
        stored = self._files.get(str(call.params.get("file_id")))
        if stored is None:
            raise _bad("invalid file_id")
        if not self.local and stored.size > DOWNLOAD_LIMIT:
            raise _bad("file is too big")
        return {
            "file_id": stored.file_id,
            "file_unique_id": stored.unique_id,
            "file_size": stored.size,
            "file_path": stored.path,
        }

    async def _m_setMyCommands(self, call: Call) -> Any:
        commands = call.params.get("commands") or []
        for command in commands:
            name, description = command.get("command", ""), command.get("description", "")
            if not (1 <= len(name) <= 32 and name.replace("_", "").isalnum() and name.islower()):
                raise _bad("BOT_COMMAND_INVALID")
            if not 1 <= len(description) <= 256:
                raise _bad("BOT_COMMAND_DESCRIPTION_INVALID")
        scope = call.params.get("scope")
        if isinstance(scope, str):
            scope = json.loads(scope)
        if scope and scope.get("type") != "default":
            # A narrower scope (one chat's list: the admins'): kept apart from everyone's list.
            self.scoped_commands[json.dumps(scope, sort_keys=True)] = list(commands)
        else:
            self.commands = list(commands)
        return True

    async def _m_getMyCommands(self, call: Call) -> Any:
        return self.commands

    async def _m_sendChatAction(self, call: Call) -> Any:
        if call.params.get("action") not in CHAT_ACTIONS:
            raise _bad("wrong parameter action in request")
        return True

    async def _m_setMessageReaction(self, call: Call) -> Any:
        self._edited(call)
        return True

    async def _m_deleteMessage(self, call: Call) -> Any:
        key = (call.params.get("chat_id"), call.params.get("message_id"))
        if self._messages.pop(key, None) is None:  # type: ignore[arg-type]
            raise _bad("message to delete not found")
        return True

    async def _m_close(self, call: Call) -> Any:
        return True
