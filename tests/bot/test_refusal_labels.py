"""The answers that name a review button name it as the button reads."""

from __future__ import annotations

from bot import core
from bot.conversation.review_pages import review_controls
from bot.core_refusals import finish_under_review
from tests.bot.test_core import reviewing


def test_finish_under_review_names_the_buttons_as_they_read() -> None:
    labels = {label for label, _ in review_controls(1)}
    for session in (reviewing(approved=0), reviewing(approved=1)):
        text = finish_under_review(session, core.Finish(user_id=session.owner_id)).text
        named = [label for label in ("✅ Approve & finish", "🏁 Approve & finish", "↩ Undo") if label in text]
        assert named and set(named) <= labels, text
