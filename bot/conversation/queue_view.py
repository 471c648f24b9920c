"""The whole queue, as admins see it with ``/status``: every running and waiting job, whose it is.

Users see only their own session's place (the core's status text); an admin, who may act on any
session, also gets this overview, in the order the fair queue will serve the waiting jobs.
"""

from __future__ import annotations

from bot.dispatcher import Dispatcher

#: Waiting jobs listed one by one; the rest are counted.
SHOWN = 15


def whole_queue(dispatcher: Dispatcher | None) -> str:
    if dispatcher is None:
        return "Queue (admin view): no workers attached."
    running = [job for job, _ in dispatcher.running.values()]
    waiting = dispatcher.queue.order()
    if not running and not waiting:
        return "Queue (admin view): empty, nothing running or waiting."
    lines = [f"Queue (admin view): {len(running)} running, {len(waiting)} waiting."]
    lines += [f"running: job {job.job_id} of {job.owner}" for job in running]
    lines += [f"{i}. job {job.job_id} of {job.owner}" for i, job in enumerate(waiting[:SHOWN], start=1)]
    if len(waiting) > SHOWN:
        lines.append(f"… and {len(waiting) - SHOWN} more")
    return "\n".join(lines)
