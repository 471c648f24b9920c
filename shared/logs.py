"""Logging, set up once per process: human-readable lines on stderr.

stdout stays free: the worker uses it for protocol messages only. Secrets (bot tokens) are
redacted from every line, tracebacks included: HTTP libraries put the Telegram token in URLs.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable

FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
REDACTED = "********"


class RedactingFormatter(logging.Formatter):
    def __init__(self, fmt: str, datefmt: str, secrets: Iterable[str]) -> None:
        super().__init__(fmt, datefmt)
        # Longest first, so a secret containing another is replaced whole.
        self.secrets = sorted({s for s in secrets if s}, key=len, reverse=True)

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        for secret in self.secrets:
            text = text.replace(secret, REDACTED)
        return text


def setup_logging(level: str = "INFO", *, process: str = "", secrets: Iterable[str] = ()) -> None:
    name = f"[{process}] " if process else ""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(RedactingFormatter(name + FORMAT, "%H:%M:%S", secrets))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Chat libraries log every HTTP request at INFO; keep those for DEBUG.
    for noisy in ("httpx", "httpcore", "discord.gateway", "discord.http", "telegram.ext.Updater"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
