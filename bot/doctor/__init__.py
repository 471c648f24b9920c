"""``framechain doctor``: whether this machine can run the bot, one line per check, with the fix.

It reads what it checks and loads nothing (no weights; torch only for the CUDA query, and only
when installed), so it takes seconds. The machine's figures come through a :class:`Probe`, which
tests replace. Exit status 0 when the bot can run (warnings allowed), 1 when a check failed, 2
when the configuration itself cannot be loaded.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from bot.doctor import chat, machine, packages
from bot.doctor.probe import Probe
from bot.doctor.report import Check, Mark, can_run, fail, ok
from shared.config import Config, ConfigError, load_config

__all__ = ["Check", "Diagnosis", "Mark", "Probe", "diagnose"]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_CONFIG = 2


@dataclass(frozen=True)
class Diagnosis:
    checks: tuple[Check, ...]
    #: The configuration could not be loaded: nothing past the environment was checked.
    config_failed: bool = False

    @property
    def exit_status(self) -> int:
        if self.config_failed:
            return EXIT_CONFIG
        return EXIT_OK if can_run(self.checks) else EXIT_FAILED

    def lines(self) -> list[str]:
        return [c.line() for c in self.checks]


def diagnose(config_path: str | None, probe: Probe | None = None, *, running: bool = False) -> Diagnosis:
    """Every check; ``running``: the bot runs on this machine now (a container's health check),
    so the GPU and RAM its own workers hold are not checked, and the GPU is not touched."""
    probe = probe or Probe()
    env = dict(os.environ) if probe.env is None else probe.env
    python, _ = packages.declared()
    checks: list[Check] = [packages.python_check(probe.python_version(), python)]
    try:
        config = load_config(config_path, env=env)
    except ConfigError as exc:
        checks.append(fail("config", str(exc), "fix the file (config.example.toml lists every key)"))
        checks += packages.package_checks(probe.package_version, gpu=False)
        checks.append(machine.ffmpeg_check(probe.ffmpeg()))
        return Diagnosis(tuple(checks), config_failed=True)
    checks.append(ok("config", f"{chat.shown_path(config_path)} is valid"))
    checks += _environment(config, probe, running=running)
    checks += chat.comfyui_checks(config)
    checks += chat.token_checks(config, env)
    checks += chat.access_checks(config)
    if (web := chat.web_check(config)) is not None:
        checks.append(web)
    warning = chat.config_file_check(config_path)
    if warning is not None:
        checks.append(warning)
    return Diagnosis(tuple(checks))


def _environment(config: Config, probe: Probe, *, running: bool) -> list[Check]:
    wan = machine.uses_wan_here(config)
    checks = packages.package_checks(probe.package_version, gpu=wan)
    plans: list[machine.WorkerPlan] = []
    model_lines: list[Check] = []
    if wan:
        from bot.doctor.model import model_checks  # reads headers only, no torch

        model_lines, sizes_for = model_checks(config.generation)
    if wan and running:
        checks.append(ok("gpu and ram", "not checked while the bot runs (its workers hold them)"))
    elif wan:
        cuda = probe.cuda()
        checks += machine.cuda_checks(config, cuda)
        if cuda.torch_version is not None:
            gpu_lines, plans = machine.gpu_checks(config, cuda, sizes_for)
            checks += gpu_lines
    if not (wan and running):
        checks.append(machine.ram_check(config, probe.ram_available(), plans))
    checks.append(machine.disk_check(config, probe.disk_free))
    checks.append(machine.ffmpeg_check(probe.ffmpeg()))
    return checks + model_lines


def cmd_doctor(config_path: str | None, probe: Probe | None = None, *, running: bool = False) -> int:
    diagnosis = diagnose(config_path, probe, running=running)
    for line in diagnosis.lines():
        print(line)
    failed = sum(c.mark is Mark.FAIL for c in diagnosis.checks)
    warned = sum(c.mark is Mark.WARN for c in diagnosis.checks)
    if failed:
        print(f"{failed} problem{'s' * (failed > 1)} to fix before framechain can run.")
    else:
        print("framechain can run" + (f" ({warned} warning{'s' * (warned > 1)})." if warned else "."))
    return diagnosis.exit_status
