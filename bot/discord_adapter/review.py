"""Review buttons that keep working after a restart.

Each button is a :class:`discord.ui.DynamicItem`: its state (segment id, action) lives in its
``custom_id`` (``bot.ports.control_id``), and the client registers the class with
``add_dynamic_items``, so a click on a message posted by an earlier process still reaches the
conversation. Nothing is kept in memory per message.
"""

from __future__ import annotations

import re
from typing import Any, Protocol, Self, runtime_checkable

import discord

from bot.ports import Action, control_id, parse_control

#: The same shape as ``bot.ports`` control ids; ``parse_control`` stays the one parser.
TEMPLATE = re.compile(r"seg:(?P<segment>[0-9]{1,18}):(?P<action>" + "|".join(a.value for a in Action) + ")")

STYLES = {
    Action.APPROVE: discord.ButtonStyle.success,
    Action.REGENERATE: discord.ButtonStyle.primary,
    Action.UNDO: discord.ButtonStyle.secondary,
    Action.FINISH: discord.ButtonStyle.secondary,
    Action.APPROVE_FINISH: discord.ButtonStyle.success,
    Action.STOP: discord.ButtonStyle.danger,
    Action.SHOW: discord.ButtonStyle.secondary,
    Action.RESEND: discord.ButtonStyle.primary,
    Action.RESEND_FINAL: discord.ButtonStyle.primary,
}
LABELS = {
    Action.APPROVE: "Approve",
    Action.REGENERATE: "Regenerate",
    Action.UNDO: "Undo",
    Action.FINISH: "Finish",
    Action.APPROVE_FINISH: "Approve & finish",
    Action.STOP: "Stop",
    Action.SHOW: "Show",
    Action.RESEND: "Send again",
    Action.RESEND_FINAL: "Send again",
}


@runtime_checkable
class ReviewHandler(Protocol):
    """What a click is handed to: the client (kept as a protocol to avoid an import cycle)."""

    async def review_pressed(self, interaction: discord.Interaction[Any], segment_id: int, action: Action) -> None: ...


class ReviewButton(discord.ui.DynamicItem[discord.ui.Button[discord.ui.View]], template=TEMPLATE):
    def __init__(self, segment_id: int, action: Action, label: str | None = None, row: int | None = None) -> None:
        super().__init__(
            discord.ui.Button(
                label=label or LABELS[action],
                style=STYLES[action],
                custom_id=control_id(segment_id, action),
                row=row,
            )
        )
        self.segment_id = segment_id
        self.action = action

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction[Any], item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> Self:
        parsed = parse_control(match.string)
        if parsed is None:  # cannot happen while TEMPLATE and bot.ports agree
            raise ValueError(f"not a review control: {match.string!r}")
        label = item.label if isinstance(item, discord.ui.Button) else None
        return cls(*parsed, label=label)

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        client = interaction.client
        if isinstance(client, ReviewHandler):
            await client.review_pressed(interaction, self.segment_id, self.action)


def review_view(controls: tuple[tuple[str, str], ...], pager: tuple[tuple[str, str], ...] = ()) -> discord.ui.View:
    """A view (no timeout) with one button per ``(label, control id)`` pair, in order, and the
    ◀ ▶ ``pager`` in a row of its own (a pair with an empty id is a disabled label)."""
    view = discord.ui.View(timeout=None)
    for label, data in controls:
        parsed = parse_control(data)
        if parsed is None:
            raise ValueError(f"not a review control id: {data!r}")
        view.add_item(ReviewButton(*parsed, label=label, row=0 if pager else None))
    for i, (label, data) in enumerate(pager):
        parsed = parse_control(data)
        if parsed is None:
            view.add_item(discord.ui.Button(label=label, disabled=True, custom_id=f"page:{i}", row=1))
        else:
            view.add_item(ReviewButton(*parsed, label=label, row=1))
    return view
