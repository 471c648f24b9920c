"""Settings as users type them, prompts as users send them, and the texts that describe a
session or a take: pure, no I/O. Re-exported by :mod:`bot.core`."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import replace

from bot.core_model import MAX_TAKES, SEED_LIMIT, Limits, Quota, Segment, Session, Settings, State, joined_seconds
from bot.core_quotas import quota_text
from shared.color_reference import COLOR_MATCHES
from shared.params import SECONDS_TO_FRAMES, SIDE_MULTIPLE, WAN_NEGATIVE_PROMPT

# -- settings -------------------------------------------------------------------------------------


class SettingsError(ValueError):
    """A settings change the user typed is not valid; the message says what is allowed."""


_SETTING_NAMES = {
    "seconds": "seconds",
    "length": "seconds",
    "steps": "steps",
    "seed": "seed",
    "negative": "negative",
    "negative_prompt": "negative",
    "size": "size",
    "color": "color",
    "color_match": "color",
    "continuity": "continuity",
    "takes": "takes",
}


def parse_settings(text: str) -> tuple[tuple[str, str], ...]:
    """``"seconds=3 steps=8 negative=blurry, static"`` -> pairs; ``"seed 42"`` (one setting)
    also works. A value runs to the next ``name=``, so a negative prompt may contain spaces."""
    text = text.strip()
    if not text:
        return ()
    matches = list(re.finditer(r"(?:^|\s)(\w+)\s*=", text))
    if not matches:
        name, _, value = text.partition(" ")
        return ((name.lower(), value.strip()),)
    if text[: matches[0].start()].strip():
        raise SettingsError(f"Write settings as name=value, e.g. seconds=3 steps=20 (got {clip(text, 40)!r}).")
    pairs = []
    for i, m in enumerate(matches):
        end = matches[i + 1].start() if i + 1 < len(matches) else len(text)
        pairs.append((m.group(1).lower(), text[m.end() : end].strip()))
    return tuple(pairs)


def apply_settings(
    settings: Settings, changes: tuple[tuple[str, str], ...], *, limits: Limits, size_lock: str | None = None
) -> Settings:
    """Validate every change and apply all of them, or raise SettingsError and apply none.

    ``size_lock`` is the reason the size may not change now, if it may not."""
    values: dict[str, object] = {}
    problems: list[str] = []
    for raw_name, raw_value in changes:
        name = _SETTING_NAMES.get(raw_name.lower())
        value = raw_value.strip()
        try:
            if name is None:
                raise SettingsError(
                    f"unknown setting {raw_name!r} (try {', '.join(sorted(set(_SETTING_NAMES.values())))})"
                )
            values.update(_parse_setting(name, value, limits, size_lock))
        except SettingsError as exc:
            problems.append(str(exc))
    if problems:
        raise SettingsError("Settings not changed: " + "; ".join(problems) + ".")
    return replace(settings, **values)  # type: ignore[arg-type]


def _parse_setting(name: str, value: str, limits: Limits, size_lock: str | None) -> dict[str, object]:
    lowered = value.lower()
    if name == "seconds":
        seconds = _parse_int(lowered.removesuffix("s").strip())
        if seconds not in SECONDS_TO_FRAMES:
            raise SettingsError("seconds must be 2, 3, 4 or 5")
        return {"seconds": seconds}
    if name == "steps":
        steps = _parse_int(lowered)
        if steps is None or not 1 <= steps <= limits.max_steps:
            raise SettingsError(f"steps must be a whole number from 1 to {limits.max_steps}")
        return {"steps": steps}
    if name == "seed":
        if lowered in ("random", "none", "off", ""):
            return {"seed": None}
        seed = _parse_int(lowered)
        if seed is None or not 0 <= seed < SEED_LIMIT:
            raise SettingsError("seed must be a whole number from 0 to 2^63-1, or 'random'")
        return {"seed": seed}
    if name == "negative":
        if lowered == "default":
            return {"negative_prompt": WAN_NEGATIVE_PROMPT}
        if lowered in ("none", "off"):
            return {"negative_prompt": ""}
        if len(value) > limits.max_negative_chars:
            raise SettingsError(
                f"the negative prompt is {len(value)} characters; the limit is {limits.max_negative_chars}"
            )
        return {"negative_prompt": value}
    if name == "color":
        for mode in COLOR_MATCHES:
            if lowered == mode:
                return {"color_match": mode}
        raise SettingsError("color must be auto, first (the first picture), start (each start image) or off")
    if name == "continuity":
        if lowered not in ("frame", "svi"):
            raise SettingsError("continuity must be 'frame' (from the last frame) or 'svi' (from the last latents)")
        if lowered == "svi" and not limits.svi:
            raise SettingsError("continuity=svi needs the SVI 2.0 Pro LoRAs, which this server does not have")
        return {"continuity": lowered}
    if name == "takes":
        takes = _parse_int(lowered)
        if takes is None or not 1 <= takes <= MAX_TAKES:
            raise SettingsError(f"takes must be a whole number from 1 to {MAX_TAKES}")
        return {"takes": takes}
    assert name == "size"
    if size_lock is not None:
        raise SettingsError(size_lock)
    m = re.fullmatch(r"(\d+)\s*[x×*]\s*(\d+)", lowered)
    width, height = (int(m.group(1)), int(m.group(2))) if m else (0, 0)
    if not m or width % SIDE_MULTIPLE or height % SIDE_MULTIPLE or not width or not height:
        raise SettingsError(f"size must be WIDTHxHEIGHT, each a multiple of {SIDE_MULTIPLE} (e.g. 832x480)")
    if width * height > limits.max_pixels:
        raise SettingsError(f"{width}×{height} is too large; the limit is {limits.max_pixels:,} pixels")
    return {"width": width, "height": height}


def _parse_int(text: str) -> int | None:
    return int(text) if re.fullmatch(r"\d{1,19}", text) else None


# -- texts ----------------------------------------------------------------------------------------


def settings_text(settings: Settings) -> str:
    if settings.negative_prompt == WAN_NEGATIVE_PROMPT:
        negative = "standard"
    elif not settings.negative_prompt:
        negative = "none"
    else:
        negative = f"“{clip(settings.negative_prompt, 60)}”"
    seed = "random" if settings.seed is None else str(settings.seed)
    # Said only when not the default, so a server without SVI never mentions it.
    continuity = ", continuity svi (from the last latents)" if settings.continuity == "svi" else ""
    takes = f"{settings.takes} takes per prompt, " if settings.takes > 1 else ""
    return (
        f"{settings.seconds} s per segment ({settings.frames} frames), {settings.steps} steps, "
        f"seed {seed}, {takes}size {settings.width}×{settings.height}, negative prompt {negative}, "
        f"colour match {settings.color_match}{continuity}."
    )


def status_text(s: Session, queue_position: int | None = None, quota: Quota | None = None, *, drift: str = "") -> str:
    """Where the session stands, with the newest segment's ``drift`` line; then, given
    ``quota``, what is left of the asking user's quotas."""
    text = _session_status(s, queue_position)
    if s.end_image is not None and not s.state.over and s.state is not State.ASSEMBLING:
        text += " 🎯 An end keyframe is set for the next take (/end clear removes it)."
    if drift and s.approved:
        text += f"\n{drift}"
    return text if quota is None else f"{text}\n{quota_text(quota)}"


def _session_status(s: Session, queue_position: int | None) -> str:
    n = len(s.approved)
    so_far = f"{n} segment{'' if n == 1 else 's'} approved ({s.seconds:.1f} s)" if n else "No segment approved yet"
    cur = s.current
    if s.state is State.AWAITING_IMAGE:
        return "Waiting for the start picture."
    if s.state is State.AWAITING_PROMPT:
        failed = f" Segment {cur.number} failed: /regenerate to retry." if cur is not None else ""
        return f"{so_far}. Waiting for the {'next' if n or cur else 'first'} prompt.{failed}"
    if s.state is State.GENERATING and cur is not None:
        if queue_position is None:
            where = "queued or running"
        elif queue_position == 0:
            where = "running now"
        elif queue_position == 1:
            where = "queued, next in line"
        else:
            ahead = queue_position - 1
            where = f"queued, {ahead} job{'' if ahead == 1 else 's'} ahead"
        return f"{so_far}. Segment {cur.number} (take {cur.attempt}) is {where}."
    if s.state is State.REVIEWING and cur is not None:
        return f"{so_far}. Segment {cur.number} is ready for review."
    if s.state is State.ASSEMBLING:
        return f"Joining {so_far.replace(' approved', '')} into the final video."
    if s.state is State.FINISHED:
        return f"Finished: {n} segment{'' if n == 1 else 's'}, {s.seconds:.1f} s."
    return "This session was cancelled."


def review_caption(seg: Segment) -> str:
    """The caption of a take posted for review (also when it is posted again after a restart):
    two short lines, the take's numbers (and whether it was aimed at an end keyframe) and its
    prompt, clipped."""
    assert seg.result is not None
    aimed = " · 🎯 aimed at your end keyframe" if seg.end_image is not None else ""
    return (
        f"Segment {seg.number} · take {seg.attempt} · {joined_seconds([seg]):.1f} s · seed {seg.result.seed}{aimed}\n"
        f"“{clip(seg.prompt, CAPTION_PROMPT_CHARS)}”"
    )


#: How much of the prompt a review caption repeats.
CAPTION_PROMPT_CHARS = 150

#: Unicode categories that draw nothing on their own: controls, format characters (zero-width
#: spaces and joiners, word joiner, BOM, soft hyphen, bidi marks), lone surrogates, and
#: separators (spaces, line and paragraph separators). Private-use and unassigned code points
#: are kept: a platform or a newer Unicode may draw them.
_INVISIBLE = frozenset({"Cc", "Cf", "Cs", "Zs", "Zl", "Zp"})


def _invisible(ch: str) -> bool:
    return unicodedata.category(ch) in _INVISIBLE


def clean_prompt(text: str) -> str:
    """The prompt as it is used: invisible characters trimmed from both ends; "" when nothing
    visible is left (so a prompt of zero-width characters counts as no prompt)."""
    start, end = 0, len(text)
    while start < end and _invisible(text[start]):
        start += 1
    while end > start and _invisible(text[end - 1]):
        end -= 1
    return text[start:end]


def clip(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"
