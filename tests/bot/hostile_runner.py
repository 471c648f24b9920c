"""Runs the hostile-input corpus (tests/hostile_text.py, and tests/hostile_images.py where it
exists) through the real front ends and ``framechain render``, and says for each case whether it
got its clear answer with nothing queued or written, and no exception reaching the platform library.

Telegram: the real python-telegram-bot Application against the Bot API stand-in; Discord: the
real discord.py client in simcord; both in front of the real service, store and dispatcher with a
preview worker process. Used by tests/bot/test_reliability_hostile.py and bench/reliability.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import importlib.util
import io
import logging
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import simcord

from bot.discord_adapter import build_discord
from bot.dispatcher import Dispatcher
from bot.service import ConversationService
from bot.store import Store
from bot.telegram_adapter import RetryPolicy, build_telegram
from bot.worker_client import WorkerProcess, worker_command
from shared.config import Config, load_config
from tests.bot.service_harness import picture_bytes, write_config
from tests.bot.telegram_standin import BotApiStandIn
from tests.hostile_text import TEXT_CASES, Kind, State, TextCase

APOLOGY = "something went wrong"
FAST = RetryPolicy(attempts=4, base_delay=0.01, max_delay=0.05)
GUILD_ID = 424242  # its @everyone role has the same id: allowing it lets the harness users in
#: Each job step takes this long: the "generating" chat's 50-step job outlasts the corpus.
STEP_DELAY = 1.0


@dataclass
class Outcome:
    case: str
    platform: str  # telegram | discord | render
    ok: bool
    answer: str = ""
    problem: str = ""
    skipped: str = ""  # why the case does not apply here


def image_cases() -> list[Any]:
    """tests/hostile_images.IMAGE_CASES where that module exists (items with ``name``, ``build()``,
    ``refusal`` (None: accepted) and ``words``), else none."""
    if importlib.util.find_spec("tests.hostile_images") is None:
        return []
    module = importlib.import_module("tests.hostile_images")  # once there, its errors are real
    return list(getattr(module, "IMAGE_CASES", []))


# --- what "nothing changed" means ------------------------------------------------------------


@dataclass(frozen=True)
class Snapshot:
    rows: tuple[Any, ...]
    files: frozenset[tuple[str, int]]

    @classmethod
    def take(cls, config: Config) -> Snapshot:
        with contextlib.closing(sqlite3.connect(f"file:{config.database_path}?mode=ro", uri=True)) as conn:
            rows = tuple(
                tuple(conn.execute(f"SELECT * FROM {table} ORDER BY id").fetchall())
                for table in ("sessions", "segments")
            )
        db = config.database_path.name
        files = frozenset(
            (str(p.relative_to(config.data_dir)), p.stat().st_size)
            for p in config.data_dir.rglob("*")
            if p.is_file() and not p.name.startswith(db)
        )
        return cls(rows, files)

    def changes(self, after: Snapshot) -> str:
        problems = []
        if after.rows[0] != self.rows[0]:
            problems.append("a session row changed")
        if after.rows[1] != self.rows[1]:
            problems.append(f"segments changed ({len(self.rows[1])} -> {len(after.rows[1])} rows)")
        if after.files != self.files:
            problems.append(f"files written: {sorted(after.files - self.files)[:3]}")
        return "; ".join(problems)


async def queued_one_more(config: Config, before: Snapshot) -> None:
    count = len(before.rows[1])
    await until(lambda: len(Snapshot.take(config).rows[1]) > count, "the queued take", 5)


def segment_prompts(config: Config) -> list[str]:
    with contextlib.closing(sqlite3.connect(f"file:{config.database_path}?mode=ro", uri=True)) as conn:
        return [r[0] for r in conn.execute("SELECT prompt FROM segments ORDER BY id")]


def judge(
    case: TextCase, platform: str, answers: Sequence[str], before: Snapshot, after: Snapshot, config: Config
) -> Outcome:
    answer = " | ".join(answers)
    expected = case.expected(platform)

    def outcome(problem: str) -> Outcome:
        return Outcome(case.name, platform, not problem, answer[:300], problem)

    if APOLOGY in answer.lower():
        return outcome("the generic apology: an exception got through")
    if case.accepted:
        new = len(after.rows[1]) - len(before.rows[1])
        if new != 1:
            return outcome(f"{new} segments queued, not 1")
        if segment_prompts(config)[-1] != case.queued:
            return outcome(f"queued prompt {segment_prompts(config)[-1][:60]!r} is not {case.queued[:60]!r}")
        return outcome("")
    changed = before.changes(after)
    if changed:
        return outcome(changed)
    if expected is None:
        return outcome(f"answered {answer[:80]!r} where silence is right" if answers else "")
    if expected.lower() not in answer.lower():
        return outcome(f"answer lacks {expected!r}")
    return outcome("")


class ErrorLog(logging.Handler):
    """Every ERROR record: an exception the front end's error handler caught and logged."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextlib.contextmanager
def error_log() -> Iterator[ErrorLog]:
    handler = ErrorLog()
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield handler
    finally:
        root.removeHandler(handler)


def caught(log: ErrorLog, since: int) -> str:
    return "; ".join(r.getMessage() for r in log.records[since:])[:200]


# --- one bot process -------------------------------------------------------------------------


@dataclass
class Bot:
    config: Config
    store: Store
    service: ConversationService
    dispatcher: Dispatcher
    extra: dict[str, Any] = field(default_factory=dict)


@contextlib.asynccontextmanager
async def bot_process(config: Config, config_path: Path, *, progress_interval: float = 0.0) -> AsyncIterator[Bot]:
    async with Store.open(config.database_path) as store:
        service = ConversationService(store, config, progress_interval=progress_interval)

        def make_worker(device: str) -> WorkerProcess:
            return WorkerProcess(worker_command(device=device, config_path=config_path), name=f"worker-{device}")

        dispatcher = Dispatcher(config.workers.devices, make_worker, service, restart_backoff=0.05)
        service.attach(dispatcher)
        await service.resume()
        await dispatcher.start()
        try:
            yield Bot(config, store, service, dispatcher)
        finally:
            await dispatcher.stop()
            await service.close()


async def until(condition: Callable[[], bool], what: str, timeout: float = 60, tick: Any = None) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)
        if tick is not None:
            await tick()


def session_states(config: Config) -> list[str]:
    with contextlib.closing(sqlite3.connect(f"file:{config.database_path}?mode=ro", uri=True)) as conn:
        return [r[0] for r in conn.execute("SELECT state FROM sessions ORDER BY id")]


def segment_statuses(config: Config) -> list[str]:
    with contextlib.closing(sqlite3.connect(f"file:{config.database_path}?mode=ro", uri=True)) as conn:
        return [r[0] for r in conn.execute("SELECT status FROM segments ORDER BY id")]


# --- Telegram ----------------------------------------------------------------------------------

TG_USERS = {state: 3000 + i for i, state in enumerate(State)}  # a private chat's id is its user's
TG_FRESH = 3100  # accepted cases and pictures: a chat each


async def run_telegram(tmp_path: Path, cases: Sequence[TextCase] = TEXT_CASES) -> list[Outcome]:
    pictures = image_cases()
    fresh = list(range(TG_FRESH, TG_FRESH + len(cases) + len(pictures)))
    async with BotApiStandIn() as api:
        path = write_config(tmp_path, step_delay=STEP_DELAY, steps=4)
        users = [*TG_USERS.values(), *fresh]
        with path.open("a") as fh:
            fh.write(
                f'[telegram]\ntoken = "{api.token}"\napi_base_url = "{api.base_url}"\n'
                f'api_file_url = "{api.file_url}"\nallowed_user_ids = {users}\n'
            )
        config = load_config(path, env={})
        config.data_dir.mkdir(parents=True, exist_ok=True)
        async with bot_process(config, path) as bot:
            front = build_telegram(config, bot.service, retry=FAST, poll_timeout=2, paste_wait=0.1)
            bot.service.add_port(front.port)
            await front.start()
            try:
                with error_log() as errors:
                    return await _telegram_corpus(api, bot, cases, pictures, fresh, errors)
            finally:
                await front.stop()


def _texts(api: BotApiStandIn, chat: int) -> list[str]:
    return [c.params["text"] for c in api.sent("sendMessage") if c.params["chat_id"] == chat]


async def _tg_say(api: BotApiStandIn, chat: int, **message: Any) -> list[str]:
    """Send one message; return the bot's answers to it (a /help after it marks their end)."""
    before = len(_texts(api, chat))
    await api.user_message(chat, chat, **message)
    await api.user_message(chat, chat, text="/help")
    await until(lambda: any("framechain makes" in t for t in _texts(api, chat)[before:]), f"the answer in {chat}")
    answers = _texts(api, chat)[before:]
    return [t for t in answers if "framechain makes" not in t]


async def _telegram_corpus(
    api: BotApiStandIn,
    bot: Bot,
    cases: Sequence[TextCase],
    pictures: list[Any],
    fresh: list[int],
    errors: ErrorLog,
) -> list[Outcome]:
    config, photo = bot.config, picture_bytes()
    chats = TG_USERS
    # Each state's chat: set up once; refused cases must leave it as it is.
    await _tg_say(api, chats[State.AWAITING_IMAGE], text="/start")
    await _tg_say(api, chats[State.AWAITING_PROMPT], photo=photo, caption="/start")
    reviewing = chats[State.REVIEWING]
    await _tg_say(api, reviewing, photo=photo, caption="/start")
    await _tg_say(api, reviewing, text="/settings steps=1")
    await _tg_say(api, reviewing, text="the review take")
    await api.wait_for("sendVideo", where=lambda c: c.params["chat_id"] == reviewing and "reply_markup" in c.params)
    generating = chats[State.GENERATING]
    await _tg_say(api, generating, photo=photo, caption="/start")
    await _tg_say(api, generating, text="/settings steps=50")
    await _tg_say(api, generating, text="a long take")
    await until(lambda: segment_statuses(config)[-1] == "running", "the long take to run")
    await until(lambda: "reviewing" in session_states(config), "the review")
    await asyncio.sleep(0.5)  # the review post's message ids are stored

    outcomes = []
    numbers = iter(fresh)
    for case in cases:
        if "telegram" in case.not_on:
            outcomes.append(Outcome(case.name, "telegram", True, skipped="not a Telegram action"))
            continue
        chat = chats[case.state]
        if case.accepted:
            chat = next(numbers)
            await _tg_say(api, chat, photo=photo, caption="/start")
        before, errors_before = Snapshot.take(config), len(errors.records)
        answers = await _tg_say(api, chat, text=case.typed)
        if case.accepted:
            await queued_one_more(config, before)
        outcome = judge(case, "telegram", answers, before, Snapshot.take(config), config)
        if len(errors.records) > errors_before and outcome.ok:
            outcome = Outcome(case.name, "telegram", False, outcome.answer, f"logged: {caught(errors, errors_before)}")
        outcomes.append(outcome)
    for picture in pictures:
        outcomes.append(await _tg_picture(api, bot, picture, next(numbers), errors))
    await _tg_say(api, generating, text="/cancel")
    return outcomes


async def _tg_picture(api: BotApiStandIn, bot: Bot, picture: Any, chat: int, errors: ErrorLog) -> Outcome:
    """A picture case, sent as a file (Telegram keeps a document's bytes as they are) with /start."""
    before, errors_before = Snapshot.take(bot.config), len(errors.records)
    data = picture.build()
    answers = await _tg_say(
        api, chat, document=data, file_name=getattr(picture, "filename", "picture.png"), caption="/start"
    )
    return _judge_picture(
        picture, "telegram", answers, before, Snapshot.take(bot.config), caught(errors, errors_before)
    )


def _judge_picture(
    picture: Any, platform: str, answers: Sequence[str], before: Snapshot, after: Snapshot, logged: str
) -> Outcome:
    answer = " | ".join(answers)
    name = f"image_{picture.name}"

    def outcome(problem: str) -> Outcome:
        return Outcome(name, platform, not problem, answer[:300], problem)

    if APOLOGY in answer.lower() or logged:
        return outcome(f"an exception got through: {logged}")
    if picture.refusal is None:
        return outcome("" if after.files != before.files else "the accepted picture was not stored")
    changed = before.changes(after)
    if changed:
        return outcome(changed)
    words = getattr(picture, "words", "")
    if not answers or (words and words.lower() not in answer.lower()):
        return outcome(f"answer lacks {words!r}")
    return outcome("")


# --- Discord -----------------------------------------------------------------------------------


async def run_discord(tmp_path: Path, cases: Sequence[TextCase] = TEXT_CASES) -> list[Outcome]:
    path = write_config(tmp_path, step_delay=STEP_DELAY, steps=4)
    with path.open("a") as fh:
        fh.write(f"[discord]\nallowed_role_ids = [{GUILD_ID}]\nprivate_threads = false\n")
    config = load_config(path, env={})
    config.data_dir.mkdir(parents=True, exist_ok=True)
    async with bot_process(config, path) as bot:
        front = build_discord(config, bot.service)
        bot.service.add_port(front.port)
        async with simcord.run(front.client) as env:
            return await _discord_corpus(env, bot, cases)


@dataclass
class _DiscordChat:
    member: simcord.MemberActor
    place: simcord.ChannelHandle  # the session's thread, or the channel where there is none


def _bot_texts(env: simcord.Env, place: simcord.ChannelHandle) -> list[str]:
    bot_id = env.bot.user.id if env.bot.user else 0
    return [m.content for m in place.history() if m.author.id == bot_id and m.content]


async def _dc_act(env: simcord.Env, chat: _DiscordChat, case: TextCase) -> list[str]:
    """Do the case as a Discord user would; return what the bot answered (privately or in the thread)."""
    before = len(_bot_texts(env, chat.place))
    answers: list[str] = []
    try:
        if case.kind is Kind.TEXT:
            await chat.member.send(chat.place, case.text)
        elif case.kind is Kind.SETTINGS:
            options: dict[str, Any] = {}
            for name, value in case.settings:
                options[name] = int(value) if name in ("steps", "seconds") and value.lstrip("-").isdigit() else value
            result = await chat.member.slash(chat.place, "settings", **options)
            answers += _interaction_texts(result)
        else:
            options = {"prompt": case.text} if case.text else {}
            result = await chat.member.slash(chat.place, case.command, **options)
            answers += _interaction_texts(result)
    except (simcord.OptionError, simcord.BackendError) as exc:  # Discord itself refuses: the bot never sees it
        answers.append(f"Discord refused it: {exc}")
    await env.settle()
    return answers + _bot_texts(env, chat.place)[before:]


def _interaction_texts(result: Any) -> list[str]:
    texts = [result.response.content] if result.response is not None and result.response.content else []
    return texts + [f.content for f in result.followups if f.content]


async def _discord_corpus(env: simcord.Env, bot: Bot, cases: Sequence[TextCase]) -> list[Outcome]:
    config, photo = bot.config, picture_bytes()
    guild = env.create_guild("Studio", id=GUILD_ID)
    channel = guild.create_text_channel("animations")
    members = iter(guild.add_member(env.create_user(f"user{i}")) for i in range(10_000))

    async def session(prompt: str | None = None, steps: int | None = None) -> _DiscordChat:
        member = next(members)
        threads = len(channel.threads)
        await member.slash(channel, "start", image=("start.png", photo))
        await env.settle()
        thread = channel.threads[threads]
        chat = _DiscordChat(member, thread)
        if steps is not None:
            await member.slash(thread, "settings", steps=steps)
        if prompt is not None:
            await member.send(thread, prompt)
            await env.settle()
        return chat

    chats = {State.NONE: _DiscordChat(next(members), channel), State.AWAITING_PROMPT: await session()}
    chats[State.REVIEWING] = await session("the review take", steps=1)
    chats[State.GENERATING] = await session("a long take", steps=50)
    await until(lambda: segment_statuses(config)[-1] == "running", "the long take to run", tick=env.settle)
    await until(lambda: "reviewing" in session_states(config), "the review", tick=env.settle)
    await asyncio.sleep(0.5)
    await env.settle()

    outcomes = []
    errors_seen = len(env.errors)
    for case in cases:
        if "discord" in case.not_on or case.state not in chats:
            why = "not a Discord action" if "discord" in case.not_on else "/start on Discord takes the picture"
            outcomes.append(Outcome(case.name, "discord", True, skipped=why))
            continue
        chat = await session() if case.accepted else chats[case.state]
        before = Snapshot.take(config)
        answers = await _dc_act(env, chat, case)
        if case.accepted:
            await queued_one_more(config, before)
        outcome = judge(case, "discord", answers, before, Snapshot.take(config), config)
        errors = env.errors
        if len(errors) > errors_seen:
            outcome = Outcome(case.name, "discord", False, outcome.answer, f"raised: {errors[errors_seen:]!r}"[:200])
            errors_seen = len(errors)
        outcomes.append(outcome)
    for picture in image_cases():
        member = next(members)
        before = Snapshot.take(config)
        data = picture.build()
        result = await member.slash(channel, "start", image=(getattr(picture, "filename", "picture.png"), data))
        await env.settle()
        errors = env.errors
        logged = repr(errors[errors_seen:])[:200] if len(errors) > errors_seen else ""
        errors_seen = len(errors)
        answers = _interaction_texts(result)
        outcomes.append(_judge_picture(picture, "discord", answers, before, Snapshot.take(config), logged))
    await chats[State.GENERATING].member.slash(chats[State.GENERATING].place, "cancel")
    await env.settle()
    return outcomes


# --- framechain render -----------------------------------------------------------------------


def run_render(tmp_path: Path, cases: Sequence[TextCase] = TEXT_CASES) -> list[Outcome]:
    """Prompts and settings through ``framechain render``: a refused one exits 2 with one line and
    writes nothing; an accepted prompt is planned as the chat would queue it. Commands and chat
    states have no meaning there."""
    path = write_config(tmp_path)
    image = tmp_path / "start.png"
    image.write_bytes(picture_bytes())
    config = load_config(path, env={})
    outcomes = []
    for case in cases:
        if case.kind is Kind.COMMAND or case.state is not State.AWAITING_PROMPT:
            outcomes.append(Outcome(case.name, "render", True, skipped="a chat state or command"))
            continue
        out = tmp_path / f"{case.name}.mp4"
        args = ["render", "--config", str(path), "--image", str(image), "--out", str(out)]
        prompt = case.text if case.kind is Kind.TEXT else "a fox"
        flags = {"steps": "--steps", "seed": "--seed", "size": "--size", "seconds": "--frames"}
        unsupported = [n for n, _ in case.settings if n not in flags]
        if unsupported:
            outcomes.append(Outcome(case.name, "render", True, skipped=f"render has no {unsupported[0]} option"))
            continue
        for name, value in case.settings:
            args += [
                flags[name],
                value if name != "seconds" else str(int(value) * 16 + 1) if value.isdigit() else value,
            ]
        args += ["--prompt", prompt]
        outcomes.append(_render_one(case, args, out, config))
    for picture in image_cases():
        out = tmp_path / f"image_{picture.name}.mp4"
        file = tmp_path / f"image_{picture.name}_{getattr(picture, 'filename', 'picture.png')}"
        file.write_bytes(picture.build())
        args = ["render", "--config", str(path), "--image", str(file), "--out", str(out), "--prompt", "a fox"]
        outcomes.append(_render_picture(picture, args, out, config))
    return outcomes


def _render_call(args: list[str]) -> tuple[int | None, str, str]:
    import contextlib as cl

    from bot.cli import main

    err, std = io.StringIO(), io.StringIO()
    try:
        with cl.redirect_stderr(err), cl.redirect_stdout(std):
            code: int | None = main(args)
    except SystemExit as exc:  # argparse refusing a value
        code = exc.code if isinstance(exc.code, int) else 2
    except Exception as exc:  # a traceback would reach the user
        return None, f"{type(exc).__name__}: {exc}", std.getvalue()
    return code, err.getvalue(), std.getvalue()


def _render_one(case: TextCase, args: list[str], out: Path, config: Config) -> Outcome:
    if case.accepted:
        # Planned only: rendering each would take a worker start apiece.
        import argparse

        from bot.cli import build_parser
        from bot.render_cli import plan_render

        namespace: argparse.Namespace = build_parser().parse_args(args)
        plan = plan_render(namespace, config)
        queued = plan.segments[0].prompt
        ok = queued == case.queued
        return Outcome(case.name, "render", ok, "planned", "" if ok else f"planned {queued[:60]!r}")
    code, err, _ = _render_call(args)
    lines = [line for line in err.splitlines() if line.strip()]
    answer = " | ".join(lines)[:300]
    if code is None or "Traceback" in err:
        return Outcome(case.name, "render", False, answer, "an exception escaped")
    if code != 2 or len(lines) != 1:
        return Outcome(case.name, "render", False, answer, f"exit {code} with {len(lines)} lines")
    if out.exists() or out.with_suffix("").exists():
        return Outcome(case.name, "render", False, answer, "wrote output")
    return Outcome(case.name, "render", True, answer)


def _render_picture(picture: Any, args: list[str], out: Path, config: Config) -> Outcome:
    name = f"image_{picture.name}"
    if picture.refusal is None:
        return Outcome(name, "render", True, skipped="accepted: rendering it is test_render's work")
    code, err, _ = _render_call(args)
    lines = [line for line in err.splitlines() if line.strip()]
    answer = " | ".join(lines)[:300]
    words = getattr(picture, "words", "")
    if code is None or "Traceback" in err:
        return Outcome(name, "render", False, answer, "an exception escaped")
    if code != 2 or out.with_suffix("").exists():
        return Outcome(name, "render", False, answer, f"exit {code}, or it wrote output")
    if words and words.lower() not in answer.lower():
        return Outcome(name, "render", False, answer, f"answer lacks {words!r}")
    return Outcome(name, "render", True, answer)
