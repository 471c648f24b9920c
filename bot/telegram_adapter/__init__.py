"""Telegram front end (python-telegram-bot). Named so it never shadows the ``telegram`` library."""

from bot.telegram_adapter.front import TelegramFrontEnd, build_telegram
from bot.telegram_adapter.port import TelegramPort, UploadTooLarge
from bot.telegram_adapter.retry import RetryPolicy

__all__ = ["RetryPolicy", "TelegramFrontEnd", "TelegramPort", "UploadTooLarge", "build_telegram"]
