"""Drift figures of one take, as the worker measures them (``worker.drift``) and the bot shows
them: pure data and text, no numpy, so the bot can read them.

Per take:
- the mean luma, contrast (luma standard deviation) and saturation of its **last frame**, and the
  same of the session's **first picture** (fitted to the take's size), all in [0, 1];
- the motion at its **head** (the first frames, which include the seam: frame 0 re-renders the
  previous hand-off frame) and at its **tail** (the last frames): the global shift in pixels per
  frame (phase correlation) and the frame-difference energy (mean absolute luma change between
  consecutive frames, in [0, 1]).

A seam's motion figure pairs the approved predecessor's tail with this take's head: the same
motion on both sides is a seam nobody sees; a jump in speed or direction is the stutter of
last-frame chaining. Sent as a flat ``{name: float}`` object (``shared.protocol.Done.drift``) and
stored per take as JSON.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields


@dataclass(frozen=True)
class DriftFigures:
    luma: float
    contrast: float
    saturation: float
    #: The same of the session's first picture (the take's own when none was given).
    ref_luma: float
    ref_contrast: float
    ref_saturation: float
    #: Mean global motion (dx, dy, pixels per frame) and difference energy at the take's head.
    head_dx: float
    head_dy: float
    head_energy: float
    #: The same over its last frames.
    tail_dx: float
    tail_dy: float
    tail_energy: float
    #: False when no first picture was given (the ref_* figures are then the take's own).
    has_reference: bool = True

    def to_json(self) -> dict[str, float]:
        body = {k: float(v) for k, v in asdict(self).items()}
        return {k: round(v, 5) for k, v in body.items()}

    @classmethod
    def from_json(cls, body: Mapping[str, object]) -> DriftFigures | None:
        """The figures from their JSON form; None when any is missing or not a finite number
        (a take from before drift was measured, or a newer worker's shape)."""
        values: dict[str, float] = {}
        for f in fields(cls):
            value = body.get(f.name, 1.0 if f.name == "has_reference" else None)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                return None
            values[f.name] = float(value)
        reference = values.pop("has_reference") != 0
        return cls(**values, has_reference=reference)

    @property
    def head_speed(self) -> float:
        return math.hypot(self.head_dx, self.head_dy)

    @property
    def tail_speed(self) -> float:
        return math.hypot(self.tail_dx, self.tail_dy)

    def change(self) -> tuple[float, float, float]:
        """Relative change of luma, contrast and saturation against the first picture (0.05: 5 %
        more)."""
        return (
            _relative(self.luma, self.ref_luma),
            _relative(self.contrast, self.ref_contrast),
            _relative(self.saturation, self.ref_saturation),
        )


@dataclass(frozen=True)
class Seam:
    """The motion across the seam into a take: its predecessor's tail against its own head."""

    before: float
    after: float
    #: |v_after - v_before| in pixels per frame: speed and direction change together.
    jump: float
    energy_before: float
    energy_after: float


def seam(previous: DriftFigures, take: DriftFigures) -> Seam:
    return Seam(
        before=previous.tail_speed,
        after=take.head_speed,
        jump=math.hypot(take.head_dx - previous.tail_dx, take.head_dy - previous.tail_dy),
        energy_before=previous.tail_energy,
        energy_after=take.head_energy,
    )


def _relative(value: float, reference: float) -> float:
    return value / reference - 1.0 if reference > 1e-6 else 0.0


def _percent(change: float) -> str:
    points = round(change * 100)
    return f"{'+' if points > 0 else '−' if points < 0 else '±'}{abs(points)}%"


def change_text(figures: DriftFigures, *, short: bool = False) -> str:
    """``luma +4% · contrast −2% · saturation +9%`` (short: ``L+4% C−2% S+9%``) against the
    first picture."""
    luma, contrast, saturation = figures.change()
    if short:
        return f"L{_percent(luma)} C{_percent(contrast)} S{_percent(saturation)}"
    return f"luma {_percent(luma)} · contrast {_percent(contrast)} · saturation {_percent(saturation)}"


def seam_text(s: Seam, *, short: bool = False) -> str:
    """``motion 1.2 → 2.0 px/frame (velocity jump 0.8)`` (short: ``seam 1.2→2.0 px/f``). The jump
    is the change of velocity, direction included: a pan that reverses at the same speed reads
    "motion 1.0 → 1.0 (velocity jump 2.0)", so the word says what it counts."""
    if short:
        return f"seam {s.before:.1f}→{s.after:.1f} px/f"
    return f"motion {s.before:.1f} → {s.after:.1f} px/frame (velocity jump {s.jump:.1f})"


def drift_line(number: int, figures: DriftFigures, previous: DriftFigures | None) -> str:
    """The /status line for approved segment ``number`` (1-based): its last frame against the
    first picture, and the seam into it when its predecessor was measured too; "" when there is
    nothing to say."""
    bits = []
    if figures.has_reference:
        bits.append(f"{change_text(figures)} against the first picture")
    if previous is not None:
        bits.append(f"seam {number - 1}→{number}: {seam_text(seam(previous, figures))}")
    return f"📈 Drift at segment {number}: " + "; ".join(bits) + "." if bits else ""
