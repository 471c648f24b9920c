"""Whole Telegram sessions: the real python-telegram-bot Application against the Bot API stand-in,
in front of the real service, store and dispatcher with preview worker processes."""

from __future__ import annotations

import asyncio
import contextlib
import io
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from bot.dispatcher import Dispatcher
from bot.ports import Action, control_id, parse_control
from bot.service import ConversationService
from bot.store import SegmentStatus, Store
from bot.telegram_adapter import RetryPolicy, TelegramFrontEnd, build_telegram
from bot.telegram_adapter.front import NOT_A_PICTURE
from bot.worker_client import WorkerProcess, worker_command
from shared.config import Config, load_config
from tests.bot.service_harness import picture_bytes, write_config
from tests.bot.telegram_standin import BotApiStandIn, Call
from worker.video import probe

FAST = RetryPolicy(attempts=4, base_delay=0.01, max_delay=0.05)
GROUP = -100500
ALICE, BOB = 1001, 1002


@dataclass
class Bot:
    store: Store
    service: ConversationService
    front: TelegramFrontEnd


@contextlib.asynccontextmanager
async def bot_process(config: Config, config_path: Path, *, paste_wait: float = 0.5) -> AsyncIterator[Bot]:
    async with Store.open(config.database_path) as store:
        service = ConversationService(store, config, progress_interval=0.0)
        front = build_telegram(config, service, retry=FAST, poll_timeout=2, paste_wait=paste_wait)
        service.add_port(front.port)

        def make_worker(device: str) -> WorkerProcess:
            return WorkerProcess(worker_command(device=device, config_path=config_path), name=f"worker-{device}")

        dispatcher = Dispatcher(config.workers.devices, make_worker, service, restart_backoff=0.05)
        service.attach(dispatcher)
        await service.resume()
        await dispatcher.start()
        await front.start()
        try:
            yield Bot(store, service, front)
        finally:
            await front.stop()
            await dispatcher.stop()
            await service.close()


def telegram_config(tmp_path: Path, api: BotApiStandIn, telegram: str = "", **kwargs: Any) -> tuple[Config, Path]:
    path = write_config(tmp_path, **kwargs)
    # These flows are about sessions, not access: they serve everyone unless they say who.
    access = "" if "allowed_" in telegram or "open" in telegram else "open = true\n"
    with path.open("a") as fh:
        fh.write(
            f'[telegram]\ntoken = "{api.token}"\napi_base_url = "{api.base_url}"\n'
            f'api_file_url = "{api.file_url}"\n{access}{telegram}\n'
        )
    config = load_config(path, env={})
    config.data_dir.mkdir(parents=True, exist_ok=True)
    return config, path


async def until(condition: Callable[[], bool], what: str, timeout: float = 60) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def controls(markup: dict[str, Any] | None) -> list[tuple[int, Action]]:
    found = []
    for row in (markup or {}).get("inline_keyboard", []):
        for button in row:
            parsed = parse_control(button.get("callback_data", ""))
            if parsed is not None:
                found.append(parsed)
    return found


def takes(api: BotApiStandIn) -> list[Call]:
    """The review posts: videos with review buttons."""
    return [c for c in api.sent("sendVideo") if controls(c.params.get("reply_markup"))]


def segment_of(take: Call) -> int:
    return controls(take.params["reply_markup"])[0][0]


def kept_approve_only(api: BotApiStandIn, take: Call) -> bool:
    """A take kept beside a newer one: its Approve is all that is left."""
    left = controls(api.message(GROUP, take.result["message_id"]).get("reply_markup"))
    return [action for _, action in left] == [Action.APPROVE]


def buttons_closed(api: BotApiStandIn, take: Call) -> bool:
    """The take's review is over: no controls are left, but a 🏁 Finish on an approved take."""
    left = controls(api.message(GROUP, take.result["message_id"]).get("reply_markup"))
    return all(action is Action.FINISH for _, action in left)


async def settle(api: BotApiStandIn) -> None:
    """Updates of one chat are handled in order: once a /status after them is answered, they were."""
    before = len(api.sent("sendMessage"))
    await api.user_message(GROUP, ALICE, text="/status")
    await api.wait_for("sendMessage", before + 1)


async def test_a_whole_session_on_telegram(tmp_path: Path) -> None:
    async with BotApiStandIn() as api:
        config, config_path = telegram_config(tmp_path, api, step_delay=0.05)
        process = contextlib.AsyncExitStack()  # one bot process; Telegram (the stand-in) outlives it
        try:
            bot = await process.enter_async_context(bot_process(config, config_path))
            await session(api, process, config, config_path, bot, tmp_path)
        finally:
            await process.aclose()


async def session(
    api: BotApiStandIn,
    process: contextlib.AsyncExitStack,
    config: Config,
    config_path: Path,
    bot: Bot,
    tmp_path: Path,
) -> None:
    # A PDF is not a picture: a clear answer, and no session.
    await api.user_message(
        GROUP, ALICE, document=b"%PDF-1.7", file_name="a.pdf", mime_type="application/pdf", caption="/start"
    )
    (answer,) = await api.wait_for("sendMessage")
    assert answer.params["text"] == NOT_A_PICTURE
    assert await bot.store.find_active_session("telegram", str(GROUP), "", str(ALICE)) is None

    # A photo with /start and the first prompt: the first take, with its review keyboard.
    await api.user_message(GROUP, ALICE, photo=picture_bytes(), caption="/start the sun rises")
    await until(lambda: len(takes(api)) == 1, "the first take")
    take1 = takes(api)[0]
    first = segment_of(take1)
    assert [action for _, action in controls(take1.params["reply_markup"])] == [
        Action.APPROVE,
        Action.REGENERATE,
        Action.UNDO,
        Action.APPROVE_FINISH,
    ]
    assert take1.params["supports_streaming"] and (take1.params["width"], take1.params["height"]) == (64, 64)
    assert take1.file("thumbnail") is not None
    await until(  # the hand-off frame follows the video
        lambda: any(p.params["caption"].startswith("Last frame of segment 1") for p in api.sent("sendPhoto")),
        "the first take's hand-off frame",
    )

    # Bob's press and reaction on Alice's take change nothing; his press is answered (once),
    # and nothing about either appears in the chat.
    in_chat = len(api.sent("sendMessage"))
    bob = await api.press(GROUP, BOB, take1.result["message_id"], control_id(first, Action.APPROVE))
    await api.react(GROUP, BOB, take1.result["message_id"], ["👍"])
    await settle(api)
    assert (await bot.store.get_segment(first)).status is SegmentStatus.DONE
    assert api.query_answered(bob) and len(api.sent("answerCallbackQuery", ok_only=False)) == 1
    assert len(api.sent("sendMessage")) == in_chat + 1  # settle's /status only

    # Regenerate, with Telegram's flood control hitting a progress edit: the second take comes,
    # the first take's buttons but its Approve go (it is kept until one take is approved).
    api.fail("editMessageText", retry_after=1)
    await api.press(GROUP, ALICE, take1.result["message_id"], control_id(first, Action.REGENERATE))
    await until(lambda: len(takes(api)) == 2, "the second take")
    await until(lambda: kept_approve_only(api, take1), "the first take's buttons but Approve to go")
    take2 = takes(api)[1]

    def waited_out() -> bool:  # progress edits go out in the background, after the flood wait
        edits = api.sent("editMessageText", ok_only=False)
        flooded = next(e for e in edits if e.status == 429)
        return any(e.ok and e.at - flooded.at >= 1.0 for e in edits)

    await until(waited_out, "a progress edit after the flood wait", timeout=10)

    # 👍 approves; the next prompt makes segment 2.
    await api.react(GROUP, ALICE, take2.result["message_id"], ["👍"])
    await until(lambda: buttons_closed(api, take2), "the approval")
    await until(lambda: buttons_closed(api, take1), "the kept take's Approve to go")
    assert (await bot.store.get_segment(segment_of(take2))).status is SegmentStatus.APPROVED
    await api.user_message(GROUP, ALICE, text="a bird flies past")
    await until(lambda: len(takes(api)) == 3, "segment 2")
    segment2 = takes(api)[2]

    # A restart: a new process on the same database; segment 2's old Approve button still works.
    await process.aclose()
    bot = await process.enter_async_context(bot_process(config, config_path))
    await api.press(GROUP, ALICE, segment2.result["message_id"], control_id(segment_of(segment2), Action.APPROVE))
    await until(lambda: buttons_closed(api, segment2), "the approval after the restart")
    assert (await bot.store.get_segment(segment_of(segment2))).status is SegmentStatus.APPROVED

    # /finish: the final video, 33 frames and 32 more after the shared frame.
    await api.user_message(GROUP, ALICE, text="/finish")
    await until(lambda: len(api.sent("sendVideo")) == 4, "the final video")
    final = api.sent("sendVideo")[3]
    assert not controls(final.params.get("reply_markup")) and final.params["supports_streaming"]
    path = tmp_path / "final.mp4"
    upload = final.file("video")
    assert upload is not None
    path.write_bytes(upload.data)
    info = probe(path)
    assert info.frames == 33 + 32
    assert (final.params["width"], final.params["height"]) == (info.width, info.height)


def noise_picture(side: int) -> bytes:
    rng = np.random.default_rng(3)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (side, side, 3), dtype=np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


async def test_a_final_video_over_the_upload_limit(tmp_path: Path) -> None:
    async with BotApiStandIn() as api:
        config, config_path = telegram_config(tmp_path, api, telegram="upload_limit_mb = 1")
        # Noise barely compresses: a 480×480 final is several MB before it is made to fit.
        config_path.write_text(config_path.read_text().replace("width = 64\nheight = 64", "width = 480\nheight = 480"))
        config = load_config(config_path, env={})
        async with bot_process(config, config_path):
            await api.user_message(GROUP, ALICE, photo=noise_picture(480), caption="/start static")
            await until(lambda: len(takes(api)) == 1, "the take")
            take = takes(api)[0]
            await api.press(GROUP, ALICE, take.result["message_id"], control_id(segment_of(take), Action.APPROVE))
            await until(lambda: buttons_closed(api, take), "the approval")
            await api.user_message(GROUP, ALICE, text="/finish")
            await until(lambda: len(api.sent("sendVideo")) >= 2, "the final video")
            await asyncio.sleep(0.5)  # parts, if any, follow one another
        finals = api.sent("sendVideo")[1:]
        assert all(len(f.file("video").data) <= 1024 * 1024 for f in finals)  # type: ignore[union-attr]
        assert "re-encoded" in finals[0].params["caption"] or "parts" in finals[0].params["caption"]
        frames = 0
        for number, part in enumerate(finals):
            path = tmp_path / f"part{number}.mp4"
            path.write_bytes(part.file("video").data)  # type: ignore[union-attr]
            frames += probe(path).frames
        assert frames == 33
        assert not [c for c in api.sent(ok_only=False) if c.status == 413]


async def test_a_session_on_the_tiny_wan_model(tmp_path: Path, tiny_wan_dir: Path) -> None:
    model = tiny_wan_dir
    async with BotApiStandIn() as api:
        config, config_path = telegram_config(tmp_path, api)
        text = config_path.read_text().replace(
            'backend = "preview"\nwidth = 64\nheight = 64',
            f'backend = "wan"\nmodel = "{model}"\nwidth = 32\nheight = 32',
        )
        config_path.write_text(text.replace("steps = 4", "steps = 2"))
        config = load_config(config_path, env={})
        async with bot_process(config, config_path):
            await api.user_message(GROUP, ALICE, photo=picture_bytes(), caption="/start the sun rises")
            await until(lambda: len(takes(api)) == 1, "the take", timeout=240)
            take = takes(api)[0]
            assert (take.params["width"], take.params["height"]) == (32, 32)
            await api.press(GROUP, ALICE, take.result["message_id"], control_id(segment_of(take), Action.APPROVE))
            await until(lambda: buttons_closed(api, take), "the approval")
            await api.user_message(GROUP, ALICE, text="/finish")
            await until(lambda: len(api.sent("sendVideo")) == 2, "the final video")
        path = tmp_path / "final.mp4"
        path.write_bytes(api.sent("sendVideo")[1].file("video").data)  # type: ignore[union-attr]
        assert probe(path).frames == 33


def keyboard_labels(markup: dict[str, Any] | None) -> list[str]:
    return [button["text"] for row in (markup or {}).get("inline_keyboard", []) for button in row]


def keyboard_data(markup: dict[str, Any] | None, ending: str) -> str:
    return next(
        button["callback_data"]
        for row in (markup or {}).get("inline_keyboard", [])
        for button in row
        if button["callback_data"].endswith(ending)
    )


def texts(api: BotApiStandIn) -> list[str]:
    return [c.params["text"] for c in api.sent("sendMessage")]


async def test_long_pastes_and_the_settings_keyboard(tmp_path: Path) -> None:
    async with BotApiStandIn() as api:
        config, config_path = telegram_config(tmp_path, api)
        config_path.write_text(config_path.read_text() + "[limits]\nprompt_chars = 5000\n")
        config = load_config(config_path, env={})
        async with bot_process(config, config_path) as bot:
            await api.user_message(GROUP, ALICE, photo=picture_bytes(), caption="/start")
            await until(lambda: len(api.sent("sendMessage")) == 1, "the request for a prompt")

            # The settings keyboard shows the values in use, and what a tap changed.
            await api.user_message(GROUP, ALICE, text="/settings")
            (keyboard,) = await api.wait_for("sendMessage", where=lambda c: "reply_markup" in c.params)
            marked = [label for label in keyboard_labels(keyboard.params["reply_markup"]) if label.startswith("• ")]
            assert marked == ["• 2 s", "• 4 steps", "• 🎲 Random seed", "• 1 take"]
            keyboard_id = keyboard.result["message_id"]
            three = keyboard_data(keyboard.params["reply_markup"], ":seconds=3")
            await api.press(GROUP, ALICE, keyboard_id, three)
            await api.wait_for("editMessageReplyMarkup")
            assert "• 3 s" in keyboard_labels(api.message(GROUP, keyboard_id)["reply_markup"])
            row = await bot.store.find_active_session("telegram", str(GROUP), "", str(ALICE))
            assert row is not None and row.settings["seconds"] == 3

            # Bob's tap changes nothing and is answered privately, once.
            in_chat = len(api.sent("sendMessage"))
            bob = await api.press(GROUP, BOB, keyboard_id, keyboard_data(keyboard.params["reply_markup"], ":seconds=5"))
            answers = await api.wait_for("answerCallbackQuery", 2)
            await settle(api)
            assert api.query_answered(bob) and len(api.sent("answerCallbackQuery", ok_only=False)) == 2
            assert answers[1].params["text"] == "Only the person who started this session can do that."
            in_chat += 1  # settle's /status
            assert (await bot.store.get_session(row.id)).settings["seconds"] == 3
            assert len(api.sent("sendMessage")) == in_chat

            # A 10,000-character paste arrives as 4096 + 4096 + 1808: one refusal, nothing made.
            sentence = "The camera glides over misty hills while a red kite circles above the valley. "
            long = (sentence * 200)[:10_000]
            for start in range(0, len(long), 4096):
                await api.user_message(GROUP, ALICE, text=long[start : start + 4096])
            await until(lambda: any("characters" in t for t in texts(api)), "the refusal")
            await asyncio.sleep(1.0)  # longer than the paste wait: nothing else follows
            (refusal,) = [t for t in texts(api) if "characters" in t]
            assert "10000 characters" in refusal and "limit is 5000" in refusal
            assert await bot.store.list_segments(row.id) == []

            # A 4100-character prompt under the 5000 limit, cut 4096 + 4: one take of the whole.
            prompt = (sentence * 60)[:4100]
            await api.user_message(GROUP, ALICE, text=prompt[:4096])
            await api.user_message(GROUP, ALICE, text=prompt[4096:])
            await until(lambda: len(takes(api)) == 1, "the take")
            (segment,) = await bot.store.list_segments(row.id)
            assert segment.prompt == prompt and segment.params["frames"] == 49  # the 3 s chosen on the keyboard

            # After /cancel, a tap closes the keyboard with a note.
            await api.user_message(GROUP, ALICE, text="/cancel")
            await until(lambda: any(t.startswith("Cancelled") for t in texts(api)), "the cancellation")
            late = await api.press(GROUP, ALICE, keyboard_id, three)
            await until(lambda: api.query_answered(late), "the answer to the late tap")
            closed = api.message(GROUP, keyboard_id)
            assert "reply_markup" not in closed and "ended" in closed["text"]
