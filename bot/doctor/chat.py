"""The chat side: each platform's token (present and well formed, never shown), who may use the
bot (bot.access, the same words as ``framechain check`` and the start-up log), the configuration
file's permissions when it holds a token, and each ComfyUI server."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping
from pathlib import Path

from bot.access import access_rules
from bot.doctor.report import Check, fail, ok, warn
from shared.config import ENV_DISCORD_TOKEN, ENV_TELEGRAM_TOKEN, Config, token_file_warning

#: Discord: three base64url parts (user id, timestamp, HMAC). Telegram: "<bot id>:<35 chars>".
_SHAPES = {
    "discord": re.compile(r"^[A-Za-z0-9_-]{20,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{20,}$"),
    "telegram": re.compile(r"^\d{5,}:[A-Za-z0-9_-]{30,}$"),
}
_ENV = {"discord": ENV_DISCORD_TOKEN, "telegram": ENV_TELEGRAM_TOKEN}
_WHERE = {
    "discord": "the Discord Developer Portal (your application → Bot → Reset Token)",
    "telegram": "@BotFather (/token)",
}


def token_checks(config: Config, env: Mapping[str, str]) -> list[Check]:
    checks = []
    for platform in ("discord", "telegram"):
        token = getattr(config, platform).token.get()
        topic = f"{platform} token"
        if not token:
            checks.append(ok(topic, f"none, {platform} is off"))
            continue
        source = _ENV[platform] if env.get(_ENV[platform]) else f"{platform}.token in the configuration"
        if _SHAPES[platform].match(token):
            checks.append(ok(topic, f"set ({source}), well formed"))
            continue
        why = "is not shaped like a bot token"
        if token.lower().startswith("bot "):
            why = 'starts with "Bot ": give the token alone'
        elif any(ch in token for ch in "\"' \t"):
            why = "holds quotes or spaces: give the token alone"
        checks.append(fail(topic, f"{source} {why}", f"copy the token again from {_WHERE[platform]}"))
    if not config.enabled_platforms:
        checks.append(
            fail(
                "platforms",
                "no chat platform has a token: `framechain run` has nothing to serve",
                f"set {ENV_TELEGRAM_TOKEN} and/or {ENV_DISCORD_TOKEN} (or telegram.token / discord.token), "
                'or [web] listen = "127.0.0.1:8765" for the web chat in a browser (`make demo` shows it)',
            )
        )
    return checks


def web_check(config: Config) -> Check | None:
    """Where the web chat is served and who may use it (as ``framechain check`` says)."""
    if not config.web.listen:
        return None
    from bot.web.front import web_access  # aiohttp only

    return ok("web chat", f"http://{config.web.listen}/ {web_access(config.web)}")


def access_checks(config: Config) -> list[Check]:
    checks = []
    for rule in access_rules(config):
        topic = f"{rule.platform} access"
        summary = rule.summary().removeprefix(f"{rule.platform}: ")
        if rule.open:
            checks.append(
                warn(
                    topic,
                    summary,
                    f"set {rule.platform}.open = false and list who may use it ({rule.platform}.allowed_user_ids)",
                )
            )
        elif not (rule.admins or rule.users or rule.roles or rule.guilds or rule.chats):
            checks.append(warn(topic, summary.split(";")[0], f"add your user id to {rule.platform}.admin_ids"))
        else:
            checks.append(ok(topic, summary))
    return checks


def config_file_check(path: str | None) -> Check | None:
    """A warning when the configuration file holds a token and others may read it."""
    warning = token_file_warning(path)
    if warning is None:
        return None
    found, _, fix = warning.partition(": run ")
    return warn("config file", found, "run " + fix if fix else "")


def comfyui_checks(config: Config) -> list[Check]:
    """Each configured server: reachable within the configured timeouts, with the graph's nodes
    and model files (worker.comfyui.check, which ``framechain check`` prints too)."""
    if not config.comfyui.server_list:
        return []
    from worker.comfyui.check import check_servers  # HTTP only: no torch
    from worker.comfyui.graph import MappingError
    from worker.errors import GenerationError

    try:
        reports = asyncio.run(check_servers(config))
    except (MappingError, GenerationError, OSError, ValueError) as exc:
        return [fail("comfyui", str(exc), "fix comfyui.workflow / [comfyui.mapping]")]
    checks = []
    for report in reports:
        topic = f"comfyui {report.url}"
        if not report.reachable:
            reason = report.problems[0] if report.problems else "no answer"
            checks.append(
                fail(
                    topic,
                    f"not reachable: {reason}",
                    "start ComfyUI there (with --listen for another machine), or fix comfyui.urls",
                )
            )
        elif report.problems:
            checks.append(
                fail(
                    topic,
                    f"ComfyUI {report.version} lacks: {'; '.join(report.problems)}",
                    "install the missing nodes or model files on that server",
                )
            )
        else:
            on = f" on {report.gpu}" if report.gpu else ""
            checks.append(ok(topic, f"ComfyUI {report.version}{on}, with every node and model file the graph needs"))
    return checks


def shown_path(path: str | None) -> str:
    return str(Path(path).resolve()) if path else "none (built-in defaults)"
