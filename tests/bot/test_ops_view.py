"""The operator's snapshot (``bot.ops_view``) and the admin commands' pure side (``bot.core_admin``):
estimates, worker states, memory reports, argument parsing and the texts."""

from __future__ import annotations

import json

import pytest

from bot import core_admin
from bot.core_admin import AdminUsage, Target
from bot.ops_view import (
    DispatchFacts,
    JobFacts,
    JobState,
    JobTiming,
    RunningFacts,
    SlotFacts,
    WaitingFacts,
    WorkerState,
    as_dict,
    build_snapshot,
)

WAN_INFO = {"device": "cuda:0", "memory_profile": "expert_offload", "memory_plan": "RAM 37.4 GiB, VRAM 21.0 GiB"}


def facts(*, paused: bool = False) -> DispatchFacts:
    return DispatchFacts(
        paused=paused,
        running=(RunningFacts("7", "telegram:11", "cuda:0", tries=1),),
        waiting=(WaitingFacts("8", "discord:22"), WaitingFacts("9", "telegram:11", tries=1), WaitingFacts("10", "x:1")),
        slots=(
            SlotFacts("cuda:0", alive=True, backend="wan", info=WAN_INFO),
            SlotFacts("cuda:1", alive=True, backend="wan", info={"device": "cuda:1"}),
            SlotFacts("comfyui:0", alive=False, failing="the ComfyUI server is not answering"),
            SlotFacts("cuda:2", alive=False, unavailable="missing model file"),
        ),
    )


JOBS = {"7": JobFacts("sess-a", 2, 1, "waves"), "8": JobFacts("sess-b", 1, 3, "fox"), "9": JobFacts("sess-c", 1, 1)}


def test_snapshot_lists_every_job_with_owner_session_position_slot_and_estimates() -> None:
    snap = build_snapshot(
        facts(),
        JOBS,
        {"7": JobTiming(started_at=100.0, step=5, total=20)},
        now=110.0,
        mean_job_seconds=60.0,
        servers={"comfyui:0": "http://gpu2:8188"},
    )
    running, *waiting = snap.queue
    assert (running.job_id, running.state, running.position, running.slot) == ("7", JobState.RUNNING, 0, "cuda:0")
    assert (running.platform, running.user_id, running.session_id) == ("telegram", "11", "sess-a")
    assert (running.segment, running.take, running.step, running.total) == (2, 1, 5, 20)
    assert running.done_in == pytest.approx(30.0)  # 2 s a step so far, 15 steps to go
    assert [(e.job_id, e.position, e.state) for e in waiting] == [
        ("8", 1, JobState.WAITING),
        ("9", 2, JobState.WAITING),
        ("10", 3, JobState.WAITING),
    ]
    # Usable slots: cuda:0 (free in 30 s), cuda:1 (idle now), comfyui:0 (restarting, counted);
    # cuda:2 is unavailable. Jobs go to whichever frees first, each taking the mean 60 s.
    assert [e.starts_in for e in waiting] == [0.0, 0.0, 30.0]
    assert [e.done_in for e in waiting] == [60.0, 60.0, 90.0]
    assert waiting[2].session_id is None and waiting[2].segment is None  # unknown to the store
    assert waiting[1].tries == 1
    assert snap.entry("8") is waiting[0] and snap.entry("nope") is None

    busy, idle, server, broken = snap.workers
    assert (busy.state, busy.job_id, busy.job_owner, busy.kind) == (WorkerState.BUSY, "7", "telegram:11", "device")
    assert busy.memory == "expert_offload, RAM 37.4 GiB, VRAM 21.0 GiB"
    assert (idle.state, idle.memory, idle.where) == (WorkerState.IDLE, None, "cuda:1")
    assert (server.state, server.kind, server.where) == (WorkerState.RESTARTING, "server", "http://gpu2:8188")
    assert server.problem == "the ComfyUI server is not answering"
    assert (broken.state, broken.problem) == (WorkerState.UNAVAILABLE, "missing model file")
    json.dumps(as_dict(snap))  # plain values all the way down
    assert as_dict(snap)["workers"][0]["state"] == "busy"


def test_nothing_is_estimated_while_paused_or_before_a_job_was_timed() -> None:
    paused = build_snapshot(facts(paused=True), JOBS, {}, now=0.0, mean_job_seconds=60.0)
    assert paused.paused and all(e.starts_in is None for e in paused.waiting)
    untimed = build_snapshot(facts(), JOBS, {"7": JobTiming(started_at=0.0)}, now=5.0)
    assert untimed.mean_job_seconds is None
    assert untimed.running[0].done_in is None and all(e.starts_in is None for e in untimed.waiting)
    # Before its first step a running job is estimated from the mean, less what it has run.
    early = build_snapshot(facts(), JOBS, {"7": JobTiming(started_at=0.0)}, now=20.0, mean_job_seconds=60.0)
    assert early.running[0].done_in == pytest.approx(40.0)


def test_queue_and_gpu_texts() -> None:
    snap = build_snapshot(
        facts(), JOBS, {"7": JobTiming(100.0, 5, 20)}, now=110.0, mean_job_seconds=60.0, servers={"comfyui:0": "u"}
    )
    text = core_admin.queue_text(snap)
    lines = text.splitlines()
    assert lines[0] == "Queue: 1 running, 3 waiting."
    assert lines[1] == (
        "▶ job 7 · telegram:11 · session sess-a · segment 2 · take 1 · running on cuda:0, step 5/20, ~30 s left"
    )
    assert lines[2] == "1. job 8 · discord:22 · session sess-b · segment 1 · take 3 · starts now"
    assert lines[3].endswith("segment 1 · take 1 · try 2, starts now")
    assert lines[4] == "3. job 10 · x:1 · a take · starts in ~30 s"
    assert "… and 2 more" in core_admin.queue_text(snap, shown=2)
    empty = build_snapshot(DispatchFacts(paused=True), {}, {}, now=0.0)
    assert core_admin.queue_text(empty) == "Queue (⏸ paused): 0 running, 0 waiting. Nothing to do."

    gpu = core_admin.gpu_text(snap)
    assert "• device cuda:0: busy, wan, job 7 of telegram:11\n  memory: expert_offload, RAM 37.4 GiB" in gpu
    assert "• device cuda:1: idle, wan\n  memory: not reported by this worker" in gpu
    assert "• server u (comfyui:0): restarting — the ComfyUI server is not answering" in gpu
    assert "• device cuda:2: unavailable — missing model file" in gpu
    assert gpu.endswith("Recent jobs took 1 min 00 s on average.")


def test_arguments_and_who_may_be_banned() -> None:
    assert core_admin.parse_job(" 17 ") == "17" and core_admin.parse_job("#17") == "17"
    assert core_admin.parse_job("job 17") == "17"
    for bad in ("", "seventeen", "17 18", "-3"):
        with pytest.raises(AdminUsage, match="/stop <job>"):
            core_admin.parse_job(bad)
    assert core_admin.parse_user("123", "telegram", "ban") == Target("telegram", "123")
    assert core_admin.parse_user("<@!456>", "discord", "ban") == Target("discord", "456")
    assert core_admin.parse_user("discord:456", "telegram", "ban") == Target("discord", "456")
    assert str(core_admin.parse_user("TELEGRAM:-5", "discord", "unban")) == "telegram:-5"
    with pytest.raises(AdminUsage, match="/unban <user id>"):
        core_admin.parse_user("bob", "telegram", "unban")
    admins = {"telegram": frozenset({"1"}), "discord": frozenset({"2"})}
    refusal = core_admin.ban_refusal(Target("telegram", "1"), admins)
    assert refusal is not None and "admins cannot be banned" in refusal
    assert core_admin.ban_refusal(Target("discord", "1"), admins) is None  # another platform's id


def test_resumed_notes_say_where_the_job_stands() -> None:
    label = "Segment 1 · take 1"
    assert core_admin.resumed_note(label, -1) == "▶ The queue runs again: Segment 1 · take 1 starts now."
    assert core_admin.resumed_note(label, 0) == "▶ The queue runs again: Segment 1 · take 1 is next in line."
    assert core_admin.resumed_note(label, 2).endswith("is waiting, 2 ahead of it.")
