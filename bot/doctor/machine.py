"""The machine's side: torch and CUDA, each GPU with the memory profile the worker would choose
there at the configured size, RAM against what that profile needs, the data dir's disk, ffmpeg.

The profile and its needs are the worker's own arithmetic (shared.memory_plan: the same choice
from free memory as worker.wan.memory, the plan from the configured files' headers as
worker.wan.source_sizes reads them), so what the doctor says is what the worker will do.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bot.disk import MB, writable_problem
from bot.doctor.probe import Cuda, Ffmpeg, Gpu
from bot.doctor.report import Check, fail, ok, warn
from shared import memory_plan
from shared.config import Config
from shared.memory_plan import GIB, ModelSizes, Plan

#: Below this much free beyond storage.min_free_mb, the disk gets a warning (a few dozen masters).
DISK_HEADROOM = 5_000 * MB


def _gib(n: int) -> str:
    return f"{n / GIB:.1f} GiB"


def uses_wan_here(config: Config) -> bool:
    """The wan backend runs on this machine (not only on ComfyUI servers or the preview)."""
    return config.generation.backend == "wan"


@dataclass(frozen=True)
class WorkerPlan:
    """What one local worker will hold, as planned."""

    device: str
    profile: str
    plan: Plan
    sizes: ModelSizes


def choose_placement(config: Config, gpu: Gpu | None) -> str:
    """The worker's choice (worker.wan.memory.choose_memory_profile): "cpu" without a GPU."""
    if gpu is None:
        return "cpu"
    g = config.generation
    return memory_plan.auto_profile(gpu.free) if g.memory_profile == "auto" else g.memory_profile


def plan_placement(config: Config, placement: str, sizes: ModelSizes, *, low_ram: bool | None = None) -> Plan:
    g = config.generation
    profile = "expert_offload" if placement == "cpu" else placement  # the CPU holds what offload holds
    return memory_plan.plan(
        profile, g.width, g.height, g.frames, sizes,
        vae_bytes_per_value=memory_plan.vae_bytes(g.vae_dtype, placement),
        low_ram=g.low_ram if low_ram is None else low_ram,
    )  # fmt: skip


def cuda_checks(config: Config, cuda: Cuda) -> list[Check]:
    if cuda.torch_version is None:
        return [fail("torch", "not installed", "run `pip install -e '.[gpu]'` (make gpu) for CUDA torch")]
    build = f"CUDA {cuda.cuda_version}" if cuda.cuda_version else "a CPU-only build"
    if cuda.error:
        return [
            fail(
                "cuda",
                f"torch {cuda.torch_version} ({build}) cannot use the GPU: {cuda.error}",
                "check the NVIDIA driver with `nvidia-smi`; its CUDA version must be at least torch's",
            )
        ]
    if not cuda.gpus:
        fix = (
            "install the CUDA build of torch (`pip install -e '.[gpu]'` on a machine with the NVIDIA driver)"
            if not cuda.cuda_version
            else "check the NVIDIA driver with `nvidia-smi` (and CUDA_VISIBLE_DEVICES)"
        )
        return [warn("cuda", f"torch {cuda.torch_version} ({build}) sees no GPU", fix)]
    return [ok("cuda", f"torch {cuda.torch_version} ({build}), {len(cuda.gpus)} GPU{'s' * (len(cuda.gpus) > 1)}")]


def gpu_checks(
    config: Config, cuda: Cuda, sizes_for: Callable[[str], ModelSizes]
) -> tuple[list[Check], list[WorkerPlan]]:
    """One line per local worker device: the card, its free memory, the profile and its VRAM."""
    checks: list[Check] = []
    plans: list[WorkerPlan] = []
    g = config.generation
    size = f"{g.width}x{g.height}x{g.frames}"
    for device in config.workers.devices:
        topic = f"gpu {device}"
        gpu: Gpu | None = None
        if device == "auto":
            gpu = cuda.gpus[0] if cuda.gpus else None
        elif device.startswith("cuda:"):
            index = int(device.split(":")[1])
            if index >= len(cuda.gpus):
                seen = ", ".join(f"cuda:{x.index}" for x in cuda.gpus) or "none"
                checks.append(
                    fail(topic, f"no such GPU here (visible: {seen})", "fix workers.devices, or CUDA_VISIBLE_DEVICES")
                )
                continue
            gpu = cuda.gpus[index]
        placement = choose_placement(config, gpu)
        sizes = sizes_for(placement)
        planned = WorkerPlan(device, placement, plan_placement(config, placement, sizes), sizes)
        plans.append(planned)
        need = planned.plan
        if gpu is None:
            checks.append(
                warn(
                    topic,
                    "runs on the CPU (no CUDA GPU): float32 without offload, practical for tiny test models only",
                    'use a CUDA GPU, or generation.backend = "preview" to try framechain without one',
                )
            )
            continue
        where = f"{gpu.name}, {_gib(gpu.free)} free of {_gib(gpu.total)}"
        chosen = f"{planned.profile} ({'auto' if g.memory_profile == 'auto' else 'configured'})"
        usable = memory_plan.usable_vram(gpu.total)
        if need.vram > usable:
            largest = memory_plan.largest_pixels(
                planned.profile, usable, g.frames, planned.sizes,
                vae_bytes_per_value=memory_plan.vae_bytes(g.vae_dtype, planned.profile), low_ram=need.low_ram,
            )  # fmt: skip
            if largest:
                fix = (
                    f"lower generation.width x height (at most {largest:,} pixels per frame fit), "
                    "or choose another generation.memory_profile"
                )
            else:
                fix = 'the weights alone do not fit: set generation.memory_profile = "auto" (or a lighter one)'
            checks.append(
                fail(
                    topic,
                    f"{where}; {chosen} needs ~{_gib(need.vram)} of GPU memory at {size}, more than the card offers",
                    fix,
                )
            )
        elif need.vram > gpu.free:
            checks.append(
                warn(
                    topic,
                    f"{where}; {chosen} needs ~{_gib(need.vram)} at {size}, more than is free now",
                    "other processes hold the card (`nvidia-smi` lists them): stop them before starting framechain",
                )
            )
        else:
            checks.append(ok(topic, f"{where}; {chosen} needs ~{_gib(need.vram)} at {size}"))
    used = {p.device for p in plans} | ({"cuda:0"} if any(p.device == "auto" for p in plans) else set())
    for gpu in cuda.gpus:
        name = f"cuda:{gpu.index}"
        if name not in used:
            where = f"{gpu.name}, {_gib(gpu.free)} free of {_gib(gpu.total)}"
            checks.append(ok(f"gpu {name}", f'{where}; unused: add "{name}" to workers.devices to render on it too'))
    return checks, plans


def ram_check(config: Config, ram: int | None, plans: list[WorkerPlan]) -> Check:
    if not plans:
        shown = f"{_gib(ram)} available" if ram is not None else "unknown"
        return ok("ram", f"{shown}; the {config.generation.backend} backend loads no model here")
    need = sum(p.plan.ram for p in plans)
    per = plans[0]
    who = "the CPU worker" if per.profile == "cpu" else f"the {per.profile} profile"
    what = f"{who}{' (low_ram)' if per.plan.low_ram else ''} needs ~{_gib(per.plan.ram)}"
    if len(plans) > 1:
        what += f" per worker, {_gib(need)} for {len(plans)} workers"
    if ram is None:
        return warn("ram", f"cannot tell how much is available; {what}")
    if need <= ram:
        return ok("ram", f"{_gib(ram)} available; {what}")
    fix = "add RAM, or close what holds it"
    g = config.generation
    if per.profile == "expert_offload" and not g.low_ram and per.sizes.experts_mapped:
        low = sum(plan_placement(config, p.profile, p.sizes, low_ram=True).ram for p in plans)
        fix = f"set generation.low_ram = true (needs ~{_gib(low)}; idle experts are read back from disk), or add RAM"
    elif len(plans) > 1:
        fix = "run fewer workers (workers.devices), or add RAM"
    return fail("ram", f"{_gib(ram)} available; {what}", fix)


def disk_check(config: Config, disk_free: Callable[[Path], int]) -> Check:
    data = config.data_dir
    topic = "disk"
    if data.exists():
        problem = writable_problem(data)
        if problem:
            return fail(topic, problem, "make it a writable folder of the user framechain runs as")
    else:
        parent = data.parent
        while not parent.exists() and parent != parent.parent:
            parent = parent.parent
        if not os.access(parent, os.W_OK):
            return fail(topic, f"the data folder {data} does not exist and {parent} is not writable", f"create {data}")
    try:
        free = disk_free(data)
    except OSError as exc:
        return warn(topic, f"cannot tell the free space of {data}: {exc.strerror or exc}")
    reserve = config.storage.min_free_mb * MB
    shown = f"{free / 1e9:.1f} GB free in {data}"
    if free < reserve:
        return fail(
            topic,
            f"{shown}; new segments are refused below storage.min_free_mb ({config.storage.min_free_mb} MB)",
            "free some space, or prune old sessions (`framechain prune`, storage.retention_days)",
        )
    if free < reserve + DISK_HEADROOM:
        return warn(
            topic, f"{shown}: room for a few dozen segments only", "free some space, or set storage.retention_days"
        )
    return ok(topic, shown)


def ffmpeg_check(found: Ffmpeg) -> Check:
    if found.path is None:
        return fail(
            "ffmpeg",
            f"no usable ffmpeg ({found.version})" if found.version else "no usable ffmpeg",
            "run `pip install imageio-ffmpeg` (its wheel carries ffmpeg), or install ffmpeg and set IMAGEIO_FFMPEG_EXE",
        )
    return ok("ffmpeg", f"{found.version or 'found'} ({found.path})")
