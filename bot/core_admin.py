"""The admin commands' pure side: which commands there are, reading their arguments, who may be
banned, and every text they answer with. No I/O; the service side is ``bot.conversation.admin``.

- ``/queue`` and ``/gpu`` render an :class:`~bot.ops_view.OpsSnapshot`.
- ``/stop <job>`` names a job by its id (the number ``/queue`` shows, with or without ``#``).
- ``/ban <user>`` / ``/unban <user>`` name a user by id on the platform the command came from,
  or as ``telegram:ID`` / ``discord:ID`` / ``web:NAME`` (a web user is their token's name); a
  Discord mention (``<@ID>``) works too. Admins of the target platform cannot be banned.
- Only admins get any of this; anyone else is told so privately, and nothing about the queue.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from bot.conversation.progress import duration, estimate
from bot.ops_view import JobState, OpsSnapshot, QueueEntry, WorkerState

#: The admin commands, in help order.
ADMIN_COMMANDS: tuple[str, ...] = ("queue", "gpu", "stop", "pause", "resume", "ban", "unban")
PLATFORMS = ("telegram", "discord", "web")
#: Jobs listed one by one in /queue; the rest are counted (chat messages have a length limit).
SHOWN = 20

NOT_ADMIN = "That command is only for the bot's admins."

ADMIN_HELP = (
    "Admin commands (only you see these):\n"
    "• /queue: every job, running and waiting, with its owner, session, place, worker and estimate.\n"
    "• /gpu: each worker (GPU or ComfyUI server), its state, running job and memory.\n"
    "• /stop <job>: stop anyone's job (the number /queue shows); its owner is told.\n"
    "• /pause, /resume: hold the queue (running jobs finish, nothing new starts) and let it go; "
    "waiting users are told. The pause outlasts a restart.\n"
    "• /ban <user id>, /unban <user id>: refuse a user everything, like a stranger (telegram:ID, "
    "discord:ID or web:NAME for another platform). Admins cannot be banned."
)


class AdminUsage(ValueError):
    """An admin command's argument is missing or malformed; the message says how to write it."""


@dataclass(frozen=True)
class Target:
    """A user an admin names: on which platform, which id."""

    platform: str
    user_id: str

    def __str__(self) -> str:
        return f"{self.platform}:{self.user_id}"


_JOB = re.compile(r"^(?:job\s*)?#?(?P<id>[0-9]{1,18})$", re.I)
_USER = re.compile(
    r"^(?:(?P<platform>telegram|discord|web):)?"
    r"(?:<@!?(?P<mention>[0-9]{1,20})>|(?P<id>-?[0-9]{1,20})|(?P<name>[A-Za-z0-9_.-]{1,64}))$",
    re.I,
)


def parse_job(argument: str) -> str:
    match = _JOB.match(argument.strip())
    if match is None:
        raise AdminUsage("Which job? Send /stop <job>, with a job number from /queue (e.g. /stop 17).")
    return str(int(match["id"]))


def parse_user(argument: str, platform: str, command: str) -> Target:
    match = _USER.match(argument.strip())
    target_platform = (match["platform"] or platform).lower() if match is not None else platform
    if match is not None and target_platform == "web" and not match["mention"]:
        # A web user is the name of their token (``[[web.tokens]] user``), digits or not.
        return Target("web", match["name"] or match["id"])
    if match is None or match["name"] is not None:
        raise AdminUsage(
            f"Whom? Send /{command} <user id> (e.g. /{command} 123456789), or /{command} telegram:ID / "
            f"discord:ID / web:NAME for a user of another platform."
        )
    user_id = match["mention"] or match["id"]
    return Target(target_platform, str(int(user_id)))


def ban_refusal(target: Target, admins: Mapping[str, frozenset[str]]) -> str | None:
    """Why ``target`` cannot be banned, or None."""
    if target.user_id in admins.get(target.platform, frozenset()):
        where = (
            "an admin token in [[web.tokens]], or the local user"
            if target.platform == "web"
            else (f"{target.platform}.admin_ids")
        )
        return f"{target} is an admin ({where}); admins cannot be banned."
    return None


# -- answers --------------------------------------------------------------------------------------


def banned_text(target: Target, *, already: bool) -> str:
    if already:
        return f"{target} was already banned."
    return (
        f"🚫 Banned {target}: everything they send is refused, as for a stranger. Their jobs already "
        "queued stay; /queue lists them and /stop <job> stops one. /unban lifts the ban."
    )


def unbanned_text(target: Target, *, was: bool) -> str:
    return f"✅ {target} is no longer banned." if was else f"{target} was not banned."


def paused_text(snapshot: OpsSnapshot, *, already: bool) -> str:
    if already:
        return "The queue is already paused. /resume lets it go."
    running = len(snapshot.running)
    finish = f"{_jobs(running)} running will finish, " if running else ""
    return (
        f"⏸ Queue paused: {finish}nothing new starts. {_waiting(len(snapshot.waiting))} "
        "/resume lets it go (a restart keeps the pause)."
    )


def resumed_text(snapshot: OpsSnapshot, *, was_paused: bool) -> str:
    if not was_paused:
        return "The queue isn't paused."
    return f"▶ Queue running again. {_waiting(len(snapshot.waiting))}"


def _waiting(n: int) -> str:
    if n == 0:
        return "No jobs are waiting."
    return f"{_jobs(n)} waiting; " + ("its owner is told." if n == 1 else "their owners are told.")


def paused_note(label: str) -> str:
    """What a waiting user is told, once, when the queue is paused (or their job arrives while it is)."""
    return f"⏸ The bot's admins paused the queue: {label} waits, and starts once the queue runs again."


def resumed_note(label: str, ahead: int) -> str:
    """When the queue runs again: ``ahead`` jobs go before this one (negative: it starts now)."""
    if ahead < 0:
        return f"▶ The queue runs again: {label} starts now."
    place = "next in line" if ahead == 0 else f"waiting, {ahead} ahead of it"
    return f"▶ The queue runs again: {label} is {place}."


def stopped_owner_note(label: str, job_id: str) -> str:
    """The owner's note in their chat, before the core's own "Stopped segment N" answer."""
    return f"⏹ The bot's admins stopped {label} (job {job_id})."


def stopped_text(entry: QueueEntry) -> str:
    return f"⏹ Stopping job {entry.job_id} ({job_what(entry)} of {entry.owner}); its owner is told."


def not_a_job_text(job_id: str) -> str:
    return f"Job {job_id} is not running or waiting; /queue lists those that are."


# -- /queue and /gpu ------------------------------------------------------------------------------


def queue_text(snapshot: OpsSnapshot, *, shown: int = SHOWN) -> str:
    running, waiting = snapshot.running, snapshot.waiting
    head = f"Queue{' (⏸ paused)' if snapshot.paused else ''}: {len(running)} running, {len(waiting)} waiting."
    if not snapshot.queue:
        return head + " Nothing to do."
    lines = [head]
    for entry in snapshot.queue[:shown]:
        lines.append(_queue_line(entry))
    if len(snapshot.queue) > shown:
        lines.append(f"… and {len(snapshot.queue) - shown} more")
    if snapshot.mean_job_seconds is None:
        lines.append("(estimates once a job has been timed)")
    return "\n".join(lines)


def _queue_line(e: QueueEntry) -> str:
    lead = "▶" if e.state is JobState.RUNNING else f"{e.position}."
    tail = job_status(e)
    session = f" · session {e.session_id[:8]}" if e.session_id else ""
    return f"{lead} job {e.job_id} · {e.owner}{session} · {job_what(e)}" + (f" · {tail}" if tail else "")


def job_status(e: QueueEntry) -> str:
    """Where a job stands: its worker, step and time left, or when it should start."""
    if e.state is JobState.RUNNING:
        tail = f"running on {e.slot or '?'}"
        if e.step is not None and e.total:
            tail += f", step {e.step}/{e.total}"
        if e.stopping:
            tail += ", stopping"
        elif e.done_in is not None:
            tail += f", ~{estimate(e.done_in)} left"
        return tail
    tail = ""
    if e.starts_in is not None:
        tail = "starts now" if e.starts_in < 1 else f"starts in ~{estimate(e.starts_in)}"
    if e.tries:
        tail = ", ".join(t for t in (f"try {e.tries + 1}", tail) if t)
    return tail


def gpu_text(snapshot: OpsSnapshot) -> str:
    head = f"Workers{' (queue ⏸ paused)' if snapshot.paused else ''}:"
    lines = [head]
    for w in snapshot.workers:
        kind = "server" if w.kind == "server" else "device"
        where = w.where if w.where == w.slot else f"{w.where} ({w.slot})"
        line = f"• {kind} {where}: {w.state.value}"
        if w.backend:
            line += f", {w.backend}"
        if w.state is WorkerState.BUSY and w.job_id is not None:
            line += f", job {w.job_id} of {w.job_owner}"
        if w.problem:
            line += f" — {w.problem}"
        line += f"\n  memory: {w.memory or 'not reported by this worker'}"
        lines.append(line)
    if snapshot.mean_job_seconds is not None:
        lines.append(f"Recent jobs took {duration(snapshot.mean_job_seconds)} on average.")
    return "\n".join(lines)


def job_what(e: QueueEntry) -> str:
    if e.segment is None:
        return "a take"
    return f"segment {e.segment} · take {e.take}"


def _jobs(n: int) -> str:
    return f"{n} job" if n == 1 else f"{n} jobs"
