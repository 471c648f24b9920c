"""Where adapters, ``bot.app`` and tests import the conversation service from; it lives in
``bot.conversation.service`` (see the ``bot.conversation`` package for its parts)."""

from bot.conversation.service import ConversationService, _memory_max_pixels

__all__ = ["ConversationService", "_memory_max_pixels"]
