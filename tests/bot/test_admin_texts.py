"""The /pause and /resume answers read right for no job, one job and several."""

from __future__ import annotations

from bot.core_admin import paused_text, resumed_text
from bot.ops_view import JobState, OpsSnapshot, QueueEntry


def snapshot(running: int, waiting: int) -> OpsSnapshot:
    def entry(n: int, state: JobState) -> QueueEntry:
        return QueueEntry(str(n), "web:local", "web", "local", state, 0 if state is JobState.RUNNING else n)

    jobs = [entry(n, JobState.RUNNING) for n in range(running)]
    jobs += [entry(n + 1, JobState.WAITING) for n in range(waiting)]
    return OpsSnapshot(paused=True, queue=tuple(jobs), workers=())


def test_pause_answers() -> None:
    tail = " /resume lets it go (a restart keeps the pause)."
    assert (
        paused_text(snapshot(0, 0), already=False) == "⏸ Queue paused: nothing new starts. No jobs are waiting." + tail
    )
    assert paused_text(snapshot(1, 1), already=False) == (
        "⏸ Queue paused: 1 job running will finish, nothing new starts. 1 job waiting; its owner is told." + tail
    )
    assert paused_text(snapshot(2, 3), already=False) == (
        "⏸ Queue paused: 2 jobs running will finish, nothing new starts. 3 jobs waiting; their owners are told." + tail
    )


def test_resume_answers() -> None:
    assert resumed_text(snapshot(0, 0), was_paused=True) == "▶ Queue running again. No jobs are waiting."
    assert resumed_text(snapshot(0, 1), was_paused=True) == "▶ Queue running again. 1 job waiting; its owner is told."
    assert resumed_text(snapshot(0, 2), was_paused=True) == (
        "▶ Queue running again. 2 jobs waiting; their owners are told."
    )
