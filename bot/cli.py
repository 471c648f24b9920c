"""The ``framechain`` command.

    framechain run     [--config PATH]   the chat bot(s) with their GPU workers
    framechain render  ...               a chained render without any chat
    framechain worker  ...               one worker process (started by run/render)
    framechain check   [--config PATH]   load the configuration and say what would run
    framechain prune   [--config PATH]   remove old sessions' media (storage.retention_days)
    framechain doctor  [--config PATH] [--running]   check this machine and configuration, one line each with the fix

Exit status: 0 success, 1 internal failure, 2 bad input or configuration.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Sequence

from bot import __version__
from bot.access import access_rules
from bot.disk import StartupProblem
from bot.store.errors import StoreError
from shared.config import Config, ConfigError, load_config, token_file_warning
from shared.logs import setup_logging

log = logging.getLogger("framechain")

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="framechain",
        description="Direct a long AI video from a chat: Discord/Telegram bot with a Wan2.2 GPU worker.",
    )
    parser.add_argument("--version", action="version", version=f"framechain {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def with_config(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--config", metavar="PATH", help="TOML configuration (default: built-in defaults)")
        p.add_argument(
            "--log-level",
            choices=["DEBUG", "INFO", "WARNING", "ERROR"],
            help="overrides log_level from the configuration",
        )
        return p

    with_config(sub.add_parser("run", help="run the enabled chat bots and their GPU workers"))
    with_config(sub.add_parser("check", help="load the configuration and print what would run"))
    prune = with_config(
        sub.add_parser(
            "prune",
            help="remove the media of sessions over or abandoned longer than storage.retention_days",
        )
    )
    prune.add_argument("--dry-run", action="store_true", help="say what would be removed, remove nothing")
    prune.add_argument("--days", type=int, default=None, help="overrides storage.retention_days")
    from bot.render_cli import add_render_arguments

    add_render_arguments(
        with_config(
            sub.add_parser(
                "render",
                help="render a chained video from a start image and prompts, without any chat",
                description="Render segments one after another, each starting from the previous one's "
                "last frame, then join them into one video.",
            )
        )
    )
    doctor = sub.add_parser("doctor", help="check that this machine can run the bot: one line per check, with the fix")
    doctor.add_argument("--config", metavar="PATH", help="TOML configuration (default: built-in defaults)")
    doctor.add_argument(
        "--running",
        action="store_true",
        help="the bot runs here now (a health check): skip the GPU and RAM its workers hold",
    )
    worker = sub.add_parser("worker", help="run one worker process speaking JSON lines on stdin/stdout")
    with_config(worker)
    worker.add_argument("--device", default=None, help="auto, cpu or cuda:N (default: first configured)")
    worker.add_argument("--backend", choices=["wan", "preview", "comfyui"], default=None)
    worker.add_argument("--model", default=None, help="overrides generation.model")
    return parser


def _load(args: argparse.Namespace) -> Config:
    config = load_config(args.config)
    tokens = (config.discord.token.get(), config.telegram.token.get())
    # render prints its own progress; its log shows warnings only unless asked for more.
    default = "WARNING" if args.command == "render" else config.log_level
    setup_logging(args.log_level or default, process="framechain", secrets=tokens)
    warning = token_file_warning(args.config)
    if warning:
        log.warning("%s", warning)
    return config


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    try:
        if args.command == "worker":
            from worker.__main__ import main as worker_main

            forwarded = [
                *(["--config", args.config] if args.config else []),
                *(["--device", args.device] if args.device else []),
                *(["--backend", args.backend] if args.backend else []),
                *(["--model", args.model] if args.model else []),
                *(["--log-level", args.log_level] if args.log_level else []),
            ]
            return worker_main(forwarded)
        if args.command == "doctor":
            from bot.doctor import cmd_doctor  # loads the configuration itself, to report on it

            return cmd_doctor(args.config, running=args.running)
        config = _load(args)
        if args.command == "check":
            return cmd_check(config)
        if args.command == "run":
            return cmd_run(config, args.config)
        if args.command == "prune":
            return asyncio.run(cmd_prune(config, dry_run=args.dry_run, days=args.days))
        if args.command == "render":
            from bot.render_cli import cmd_render

            return cmd_render(args, config)
    except ConfigError as exc:
        print(f"framechain: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (StoreError, StartupProblem) as exc:
        # A database or data folder framechain cannot use: one clear sentence, no traceback.
        log.error("%s", exc)
        print(f"framechain: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return 130
    parser.error(f"unknown command {args.command}")
    return EXIT_USAGE  # pragma: no cover - parser.error exits


def cmd_check(config: Config) -> int:
    g = config.generation
    platforms = config.enabled_platforms
    print(f"framechain {__version__}: configuration is valid")
    print(f"  data dir:   {config.data_dir}")
    print(f"  database:   {config.database_path}")
    print(f"  backend:    {g.backend} ({g.model if g.backend == 'wan' else 'no model'})")
    print(
        f"  generation: {g.width}x{g.height} ({g.size_mode}), {g.frames} frames at {g.fps} fps, "
        f"{g.steps} steps, {g.sampler}, shift {g.shift}, CFG {g.guidance}/{g.guidance_2}"
    )
    print(f"  workers:    {', '.join(config.worker_slots)}")
    none = "none enabled: `framechain run` needs a token, or [web] listen for the web chat"
    print(f"  platforms:  {', '.join(platforms) if platforms else none}")
    for rule in access_rules(config):
        print(f"  access:     {rule.summary()}")
    if config.web.listen:
        from bot.web.front import web_access

        print(f"  web:        http://{config.web.listen}/ {web_access(config.web)}")
    if config.comfyui.server_list:
        from worker.comfyui.check import check_lines  # HTTP only: no torch

        ok, lines = check_lines(config)
        print("\n".join(lines))
        if not ok:
            return EXIT_FAILURE
    return EXIT_OK


async def cmd_prune(config: Config, *, dry_run: bool = False, days: int | None = None) -> int:
    import dataclasses

    from bot.retention import prune
    from bot.store import Store

    if days is not None:
        if days <= 0:
            print("framechain: --days must be positive", file=sys.stderr)
            return EXIT_USAGE
        config = dataclasses.replace(config, storage=dataclasses.replace(config.storage, retention_days=days))
    if config.storage.retention_days <= 0:
        print("framechain: storage.retention_days is 0 (keep everything): nothing to prune; set it or pass --days")
        return EXIT_OK
    if not config.database_path.exists():
        print(f"framechain: no database at {config.database_path}: nothing to prune")
        return EXIT_OK
    async with Store.open(config.database_path) as store:
        report = await prune(store, config, dry_run=dry_run)
    print(("would be " if dry_run else "") + report.summary())
    for session_id in report.sessions:
        print(f"  {session_id}{' (abandoned)' if session_id in report.abandoned else ''}")
    return EXIT_OK


def cmd_run(config: Config, config_path: str | None = None) -> int:
    if not config.enabled_platforms:
        print(
            "framechain: nothing is enabled: set discord.token or telegram.token in the configuration, "
            "or FRAMECHAIN_DISCORD_TOKEN / FRAMECHAIN_TELEGRAM_TOKEN in the environment, "
            'or [web] listen = "127.0.0.1:8765" for the web chat',
            file=sys.stderr,
        )
        return EXIT_USAGE
    return asyncio.run(_run(config, config_path))


async def _run(config: Config, config_path: str | None) -> int:
    from bot.app import serve

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    log.info("starting: %s", ", ".join(config.enabled_platforms))
    await serve(config, stop, config_path=config_path)
    log.info("stopped")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
