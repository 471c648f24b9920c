"""The texts of a job's progress message: one short line, edited as the job moves on.

The prompt is not repeated here: it is in the take's caption. Every text starts with the same
label, so a user who sees only the latest edit knows which take it is about.
"""

from __future__ import annotations


def label(idx: int, attempt: int) -> str:
    return f"Segment {idx + 1} · take {attempt}"


def duration(seconds: float) -> str:
    """An exact length of time: ``42 s``, ``3 min 05 s``, ``1 h 02 min``."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    return f"{minutes} min {seconds:02d} s" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"


def estimate(seconds: float) -> str:
    """A rough time left: ``10 s`` steps under a minute, whole minutes under an hour."""
    seconds = max(0.0, seconds)
    if seconds < 55:
        return f"{max(5, round(seconds / 5) * 5)} s"
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60:02d} min"


def queued(name: str, position: int | None = None, *, restarted: bool = False, paused: bool = False) -> str:
    """Waiting for a worker; ``position`` is the 1-based place in the queue when known;
    ``paused``: the admins paused the queue (/pause)."""
    where = "restarted, queued again" if restarted else "queued"
    if position == 1:
        where += ", next in line"
    elif position is not None and position > 1:
        where += f", {position - 1} ahead in the queue"
    if paused:
        return f"⏸ {name} — {where}; the queue is paused by the bot's admins."
    return f"⏳ {name} — {where}."


def delayed(name: str, reason: str) -> str:
    return f"⚠️ {name} — still queued: {reason}. It will start when the worker is back."


def starting(name: str, *, again: bool = False) -> str:
    return f"⏳ {name} — starting again…" if again else f"⏳ {name} — starting…"


def waiting(name: str, ahead: int, where: str, eta: float | None = None) -> str:
    """Running on its slot, but behind other people's jobs there (a ComfyUI server's queue)."""
    jobs = "1 other job" if ahead == 1 else f"{ahead} other jobs"
    text = f"⏳ {name} — waiting on {where or 'the server'}: {jobs} ahead there"
    return f"{text}, about {estimate(eta)} until it starts." if eta is not None else f"{text}."


def retrying(name: str, reason: str) -> str:
    """Its worker went away mid-job; ``reason`` says what, and where the job goes next."""
    return f"🔁 {name} — {reason}."


def step(name: str, done: int, total: int, left: float | None = None) -> str:
    text = f"⏳ {name} — step {done}/{total}"
    return text if left is None else f"{text}, about {estimate(left)} left"


def ready(name: str, seconds: float) -> str:
    return f"✅ {name} — ready ({duration(seconds)})."


def ended(name: str, *, cancelled: bool) -> str:
    return f"⏹ {name} — {'stopped' if cancelled else 'failed'}."
