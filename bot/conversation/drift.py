"""The drift figures of a session's approved takes (``shared.drift``), as ``/status`` and the
storyboard sheet show them: a line for the newest segment, and a short one per tile."""

from __future__ import annotations

from collections.abc import Sequence

from bot.store import SegmentRow
from shared.drift import DriftFigures, change_text, drift_line, seam, seam_text


def _figures(row: SegmentRow | None) -> DriftFigures | None:
    return None if row is None or row.drift is None else DriftFigures.from_json(row.drift)


def status_line(approved: Sequence[SegmentRow]) -> str:
    """The /status line for the newest approved segment of the chain ``approved`` (in order):
    its last frame against the first picture and the seam into it; "" when it was not measured."""
    if not approved:
        return ""
    figures = _figures(approved[-1])
    if figures is None:
        return ""
    previous = _figures(approved[-2]) if len(approved) > 1 else None
    return drift_line(len(approved), figures, previous)


def tile_lines(approved: Sequence[SegmentRow]) -> list[str]:
    """Per approved segment, in order, a short drift note for its storyboard tile ("" where not
    measured): ``L+4% C−2% S+9% · seam 1.2→2.0 px/f``."""
    figures = [_figures(row) for row in approved]
    lines = []
    for i, current in enumerate(figures):
        if current is None:
            lines.append("")
            continue
        parts = [change_text(current, short=True)] if current.has_reference else []
        previous = figures[i - 1] if i > 0 else None
        if previous is not None:
            parts.append(seam_text(seam(previous, current), short=True))
        lines.append(" · ".join(parts))
    return lines
