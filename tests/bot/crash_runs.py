"""Crash consistency, many times over: a scripted session (start with a picture and a prompt,
approve, a second prompt, approve, finish) on the crash bot (tests/bot/crash_bot.py: the real
store, service, dispatcher and preview worker), killed with SIGKILL once per run at a random
moment (or right after a random message went out), then restarted on the same data and driven
on to its final video.

Checked after each kill and at the end: ``PRAGMA integrity_check`` is ok; every approved segment
has its video and hand-off frame, on disk and in the chat; no segment message and no final was
posted twice; the session finished with exactly one final video in the chat. The scripted user
acts on what the chat shows, as a person would: where a restart's notice says a message may be
missing (the platform, like Telegram, cannot be asked to send it again safely) and it is missing,
it taps 📤 Send again. Used by tests/bot/test_reliability_crash.py (a few runs)
and bench/reliability.py (100).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.bot.service_harness import picture_bytes, write_config

ROOT = Path(__file__).resolve().parents[2]
#: Roles whose delivery the bot can be made to die in the middle of (FileChat.die_after).
POST_ROLES = ("video", "frame", "final.1")
#: The moments of a delivery it can die at: right after the platform accepted the message and
#: before the service heard back (the bare role), once the service was told, and once the service
#: recorded it will send it but before the platform got it.
KILL_POINTS = tuple(f"{moment}{role}" for role in POST_ROLES for moment in ("", "told:", "before:"))
SEGMENTS = 2
_SEND_AGAIN = re.compile(r"^seg:(?P<segment>[0-9]+):(?P<action>resend|refinal)$")


class CrashBot:
    """The crash bot as a child process; actions as JSON lines. Survives being killed under it."""

    def __init__(self, config: Path, log: Path, die_after: str = "") -> None:
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.bot.crash_bot", str(config), str(log), die_after],
            cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )  # fmt: skip
        assert self.proc.stdout is not None
        self.ready = self.proc.stdout.readline().strip() == "READY"

    def send(self, **action: Any) -> bool:
        """False when the process died before it took the action in."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        try:
            self.proc.stdin.write(json.dumps(action) + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, ValueError):
            return False
        return self.proc.stdout.readline().startswith("DONE")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.proc.kill()
        self.proc.wait()
        for pipe in (self.proc.stdin, self.proc.stdout):
            with contextlib.suppress(OSError):
                if pipe is not None:
                    pipe.close()


def _query(db: Path, sql: str) -> list[tuple[Any, ...]]:
    if not db.exists():
        return []
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)) as conn:
        return conn.execute(sql).fetchall()


def integrity(db: Path) -> str:
    if not db.exists():
        return "ok"  # killed before the database was made
    with contextlib.closing(sqlite3.connect(db, timeout=10)) as conn:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])


def _sent(log: Path) -> list[dict[str, Any]]:
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]


def _missing(sent: list[dict[str, Any]], segment_id: int, action: str) -> bool:
    """What a notice offers to send again is not in the chat."""
    if action == "refinal":
        return not any(r["kind"] == "final" for r in sent)
    roles = {r["role"] for r in sent if r["kind"] == "segment" and r["segment_id"] == segment_id}
    return not {"video", "frame"} <= roles


def press_send_again(bot: CrashBot, log: Path, pressed: set[str]) -> bool:
    """Tap 📤 Send again on a notice (once each) whose message is not in the chat; True if tapped."""
    sent = _sent(log)
    for record in sent:
        if record["kind"] != "text" or record["message_id"] in pressed:
            continue
        for data in record.get("controls", []):
            match = _SEND_AGAIN.match(data)
            if match and _missing(sent, int(match["segment"]), match["action"]):
                pressed.add(record["message_id"])
                bot.send(op="control", segment=int(match["segment"]), action=match["action"])
                return True
    return False


def step(bot: CrashBot, db: Path, image: Path, started: list[bool]) -> str:
    """Take the script's next action for the session's state (so a restarted run carries on where
    the store says it is); return the state."""
    rows = _query(db, "SELECT state FROM sessions")
    state = str(rows[0][0]) if rows else "none"
    if state == "none" and not started[0]:
        started[0] = bot.send(op="start", image=str(image), prompt="segment 1")
        return state
    approved = _query(db, "SELECT COUNT(*) FROM segments WHERE status = 'approved'")[0][0] if rows else 0
    if state == "awaiting_prompt":
        if approved < SEGMENTS:
            bot.send(op="text", text=f"segment {approved + 1}")
        else:
            bot.send(op="command", name="finish")
    elif state == "awaiting_image":  # killed between creating the session and saving the picture
        bot.send(op="image", image=str(image))
    elif state == "reviewing":
        done = _query(db, "SELECT id FROM segments WHERE status = 'done' ORDER BY id DESC LIMIT 1")
        if done:
            bot.send(op="control", segment=done[0][0], action="approve")
    return state


@dataclass
class Run:
    number: int
    kill: str  # "at 1.23 s" or "after video"
    seconds: float = 0.0  # from start-up to the final video, when it was not killed first
    killed: bool = False  # the process did die under the script (not finishing first)
    integrity_after_kill: str = "ok"
    integrity_at_end: str = "ok"
    finished: bool = False
    duplicate_posts: int = 0
    duplicate_finals: int = 0
    missing_files: int = 0
    #: Approved segments' messages (video, frame) and final videos that never reached the chat.
    lost_posts: int = 0
    #: Notices a restart posted instead of a message in doubt, and the user's taps on Send again.
    notices: int = 0
    sent_again: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def run_once(
    folder: Path,
    number: int,
    rng: random.Random,
    *,
    window: float = 6.0,
    timeout: float = 90,
    die_after: str | None = None,
) -> Run:
    """One run: a fresh data dir, one kill, one restart, then on to the final video. ``die_after``:
    the kill point (KILL_POINTS; "" for a kill at a random moment); by default drawn."""
    folder.mkdir(parents=True, exist_ok=True)
    config = write_config(folder, step_delay=0.05)
    db, log, image = folder / "data" / "framechain.db", folder / "sent.jsonl", folder / "start.png"
    image.write_bytes(picture_bytes())
    if die_after is None:
        die_after = rng.choice(KILL_POINTS) if window < 1e9 and rng.random() < 0.25 else ""
    at = rng.uniform(0.0, window)
    run = Run(number, f"after {die_after}" if die_after else f"at {at:.2f} s")
    started = [False]

    bot = CrashBot(config, log, die_after)
    began = time.monotonic()
    timer = None if die_after else threading.Timer(at, bot.kill)
    if timer is not None:
        timer.start()
    deadline = time.monotonic() + timeout
    while bot.alive() and time.monotonic() < deadline:
        if step(bot, db, image, started) == "finished":
            run.seconds = time.monotonic() - began
            break
        time.sleep(0.05)
    if timer is not None:
        timer.cancel()
    if die_after and bot.alive():
        # The state says finished before the final is posted: let a kill point in its post come.
        with contextlib.suppress(subprocess.TimeoutExpired):
            bot.proc.wait(timeout=3)
    run.killed = not bot.alive()
    bot.kill()
    run.integrity_after_kill = integrity(db)

    bot = CrashBot(config, log)
    pressed: set[str] = set()
    try:
        while time.monotonic() < deadline:
            if press_send_again(bot, log, pressed):
                continue
            if step(bot, db, image, started) == "finished" and any(r["kind"] == "final" for r in _sent(log)):
                run.finished = True
                break
            time.sleep(0.05)
        time.sleep(0.3)  # anything that would be posted again has been by now
        press_send_again(bot, log, pressed)  # a notice that came meanwhile: wrongly, if tapped
        time.sleep(0.1)
    finally:
        bot.kill()
    run.sent_again = len(pressed)
    check(run, db, log)
    return run


def check(run: Run, db: Path, log: Path) -> None:
    run.integrity_at_end = integrity(db)
    sent = _sent(log)
    posts = Counter((r["segment_id"], r["role"]) for r in sent if r["kind"] == "segment")
    finals = Counter(r["part"] for r in sent if r["kind"] == "final")
    run.duplicate_posts = sum(n - 1 for n in posts.values())
    run.duplicate_finals = sum(n - 1 for n in finals.values())
    approved = _query(db, "SELECT video, last_frame FROM segments WHERE status = 'approved'")
    run.missing_files = sum(1 for files in approved for f in files if not f or not Path(f).exists())
    approved_ids = [r[0] for r in _query(db, "SELECT id FROM segments WHERE status = 'approved'")]
    run.lost_posts = sum(1 for s in approved_ids for role in ("video", "frame") if (s, role) not in posts)
    run.lost_posts += 0 if finals else 1
    run.notices = sum(
        1 for r in sent if r["kind"] == "text" and any(_SEND_AGAIN.match(c) for c in r.get("controls", []))
    )
    for what, value in (("integrity after the kill", run.integrity_after_kill), ("integrity", run.integrity_at_end)):
        if value != "ok":
            run.problems.append(f"{what}: {value}")
    if not run.finished:
        run.problems.append("the session did not reach its final video")
    if len(approved) != SEGMENTS:
        run.problems.append(f"{len(approved)} approved segments, not {SEGMENTS}")
    if not finals:
        run.problems.append("no final video was posted")
    if run.duplicate_posts or run.duplicate_finals:
        run.problems.append(f"posted twice: {run.duplicate_posts} segment messages, {run.duplicate_finals} finals")
    if run.missing_files:
        run.problems.append(f"{run.missing_files} files of approved segments missing")
    if run.lost_posts:
        run.problems.append(f"{run.lost_posts} messages of approved segments or finals never reached the chat")


def session_seconds(folder: Path) -> float:
    """How long the scripted session takes undisturbed, once the bot is up: the kill window."""
    run = run_once(folder, -1, random.Random(0), window=1e9)
    assert run.ok and not run.killed, run.problems
    return run.seconds


def run_targeted(folder: Path, points: tuple[str, ...] = KILL_POINTS) -> list[Run]:
    """One run per kill point (KILL_POINTS), each killed in the middle of that delivery."""
    rng = random.Random(0)
    return [run_once(folder / f"at-{p.replace(':', '-')}", n, rng, die_after=p) for n, p in enumerate(points)]


def run_many(folder: Path, kills: int, seed: int = 12) -> tuple[float, list[Run]]:
    """Runs until ``kills`` of them were killed mid-session (a timer may fire after the session
    finished: that run counts as a check, not a kill). Returns the kill window and the runs."""
    rng = random.Random(seed)
    window = session_seconds(folder / "undisturbed")
    runs: list[Run] = []
    while sum(r.killed for r in runs) < kills and len(runs) < 2 * kills:
        runs.append(run_once(folder / f"run{len(runs):03d}", len(runs), rng, window=window))
    return window, runs
