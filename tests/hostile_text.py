"""A corpus of hostile and odd text input: prompts, settings and commands, each with the session
state it is sent in and what must come of it. Built in code, reusable by any harness (the chat
front ends, ``framechain render``, the reliability figures):

    for case in TEXT_CASES:
        ...  # put a chat in case.state, send case.action / case.text, then check case.answer

A refused case must get an answer containing ``case.answer`` (case-insensitive) and change
nothing: no job queued, no row or file written. An accepted case (``accepted=True``: odd, but a
real prompt) is queued with the prompt as ``case.queued`` says, invisible ends trimmed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class State(StrEnum):
    """Where the chat stands when the case is sent."""

    NONE = "none"  # no session in this chat
    AWAITING_IMAGE = "awaiting_image"
    AWAITING_PROMPT = "awaiting_prompt"
    GENERATING = "generating"
    REVIEWING = "reviewing"


class Kind(StrEnum):
    TEXT = "text"  # a plain message: a prompt
    COMMAND = "command"  # /name argument
    SETTINGS = "settings"  # /settings with (name, value) pairs


#: The words every "no session" answer has.
NO_SESSION = "no session here"
PROMPT_LIMIT = "the limit is 2000"
NO_TEXT = "send the prompt as text"


@dataclass(frozen=True)
class TextCase:
    name: str
    state: State
    kind: Kind
    #: TEXT: the message; COMMAND: the argument.
    text: str = ""
    #: COMMAND: its name, without the slash.
    command: str = ""
    #: SETTINGS: the changes, as a user types them (``/settings steps=0``) or picks them.
    settings: tuple[tuple[str, str], ...] = ()
    #: Words the answer must contain; "" with accepted=True: the "queued" acknowledgement.
    answer: str = ""
    accepted: bool = False
    #: accepted: the prompt as it must be queued.
    queued: str = ""
    #: Per platform, a different expected answer where the platform itself differs (e.g. Discord
    #: threads leave chatter alone, so no answer is the right one: ``None``).
    per_platform: dict[str, str | None] = field(default_factory=dict)
    #: Platforms without this action (Discord has no /approve slash command, no free-form /settings).
    not_on: frozenset[str] = frozenset()

    def expected(self, platform: str) -> str | None:
        """The words the answer must contain on ``platform``; None: no answer is right there."""
        return self.per_platform.get(platform, self.answer)

    @property
    def typed(self) -> str:
        """The message a Telegram user types for it."""
        if self.kind is Kind.TEXT:
            return self.text
        if self.kind is Kind.SETTINGS:
            return "/settings " + " ".join(f"{n}={v}" for n, v in self.settings)
        return f"/{self.command} {self.text}".rstrip()


S, K = State, Kind
INVISIBLE = "\u200b\u200c\u200d\u2060\ufeff\u00ad\u200e\u200f\u202a\u202c"
CONTROLS = "\x00\x01\x07\x08\x1b\x7f"
RTL = "الكاميرا تتحرك نحو البحر שלום"  # Arabic and Hebrew: "the camera moves towards the sea", "hello"
EMOJI = "🦊🌅 a fox 👨‍👩‍👧 watches the dawn 🏳️‍🌈✨"
LONG = "a fox runs through the snow " * 358  # 10,024 characters
NO_DISCORD_THREAD_CHATTER: dict[str, str | None] = {"discord": None}
#: What Discord itself refuses before the bot sees it: messages over 2000 characters (4000 with
#: Nitro), empty ones, slash-command options outside their declared range or choices.
DISCORD_REFUSES: dict[str, str | None] = {"discord": "discord refused it"}

_prompts = [
    TextCase(
        "prompt_10000_chars",
        S.AWAITING_PROMPT,
        K.TEXT,
        per_platform=DISCORD_REFUSES,
        text=LONG[:10_000],
        answer=PROMPT_LIMIT,
    ),
    TextCase(
        "prompt_10000_emoji",
        S.AWAITING_PROMPT,
        K.TEXT,
        per_platform=DISCORD_REFUSES,
        text="🦊" * 10_000,
        answer=PROMPT_LIMIT,
    ),
    TextCase(
        "prompt_2001_chars",
        S.AWAITING_PROMPT,
        K.TEXT,
        "b" * 2001,
        answer="2001 characters",
        per_platform=DISCORD_REFUSES,
    ),
    TextCase("prompt_only_controls", S.AWAITING_PROMPT, K.TEXT, CONTROLS, answer=NO_TEXT),
    TextCase("prompt_only_invisible", S.AWAITING_PROMPT, K.TEXT, INVISIBLE, answer=NO_TEXT),
    TextCase(
        "prompt_only_whitespace",
        S.AWAITING_PROMPT,
        K.TEXT,
        " \t\n\u3000\u2028\u00a0 ",
        answer=NO_TEXT,
        per_platform=DISCORD_REFUSES,
    ),
    TextCase("prompt_while_generating", S.GENERATING, K.TEXT, "a bird flies", answer="still working on segment"),
    TextCase("prompt_while_reviewing", S.REVIEWING, K.TEXT, "a bird flies", answer="is waiting for review"),
    TextCase(
        "prompt_without_session",
        S.NONE,
        K.TEXT,
        "a bird flies",
        answer="send /start with a picture",
        per_platform=NO_DISCORD_THREAD_CHATTER,
    ),
    TextCase("prompt_2000_chars", S.AWAITING_PROMPT, K.TEXT, "c" * 2000, accepted=True, queued="c" * 2000),
    TextCase("prompt_right_to_left", S.AWAITING_PROMPT, K.TEXT, RTL, accepted=True, queued=RTL),
    TextCase(
        "prompt_bidi_override",
        S.AWAITING_PROMPT,
        K.TEXT,
        "\u202ea fox runs\u202c",
        accepted=True,
        queued="a fox runs",
    ),
    TextCase("prompt_emoji", S.AWAITING_PROMPT, K.TEXT, EMOJI, accepted=True, queued=EMOJI),
    TextCase(
        "prompt_wrapped_in_invisible",
        S.AWAITING_PROMPT,
        K.TEXT,
        INVISIBLE + "a fox runs" + CONTROLS,
        accepted=True,
        queued="a fox runs",
    ),
    TextCase(
        "prompt_controls_inside",
        S.AWAITING_PROMPT,
        K.TEXT,
        "a fox\x07 runs\x1b[31m red",
        accepted=True,
        queued="a fox\x07 runs\x1b[31m red",
    ),
    TextCase(
        "prompt_markup_and_sql",
        S.AWAITING_PROMPT,
        K.TEXT,
        "<b>fox</b> *bold* `x`'); DROP TABLE segments;--",
        accepted=True,
        queued="<b>fox</b> *bold* `x`'); DROP TABLE segments;--",
    ),
]

NO_FREE_SETTINGS = frozenset({"discord"})  # Discord's /settings takes typed options, checked there
_settings = [
    TextCase(
        "settings_steps_zero",
        S.AWAITING_PROMPT,
        K.SETTINGS,
        settings=(("steps", "0"),),
        answer="steps must be",
        per_platform=DISCORD_REFUSES,
    ),
    TextCase(
        "settings_steps_huge",
        S.AWAITING_PROMPT,
        K.SETTINGS,
        settings=(("steps", "1000"),),
        answer="steps must be",
        per_platform=DISCORD_REFUSES,
    ),
    TextCase(
        "settings_steps_negative",
        S.AWAITING_PROMPT,
        K.SETTINGS,
        settings=(("steps", "-5"),),
        answer="steps must be",
        per_platform=DISCORD_REFUSES,
    ),
    TextCase(
        "settings_seconds_99",
        S.AWAITING_PROMPT,
        K.SETTINGS,
        settings=(("seconds", "99"),),
        answer="seconds must be",
        per_platform=DISCORD_REFUSES,
    ),
    TextCase(
        "settings_seed_negative", S.AWAITING_PROMPT, K.SETTINGS, settings=(("seed", "-1"),), answer="seed must be"
    ),
    TextCase(
        "settings_seed_over_2_63",
        S.AWAITING_PROMPT,
        K.SETTINGS,
        settings=(("seed", "99999999999999999999"),),
        answer="seed must be",
    ),
    TextCase(
        "settings_size_huge", S.AWAITING_PROMPT, K.SETTINGS, settings=(("size", "16384x16384"),), answer="too large"
    ),
    TextCase("settings_size_zero", S.AWAITING_PROMPT, K.SETTINGS, settings=(("size", "0x0"),), answer="size must be"),
    TextCase(
        "settings_size_not_16", S.AWAITING_PROMPT, K.SETTINGS, settings=(("size", "641x480"),), answer="multiple of 16"
    ),
    TextCase(
        "settings_negative_10000_chars",
        S.AWAITING_PROMPT,
        K.SETTINGS,
        settings=(("negative", "blurry " * 1500),),
        answer="negative prompt is",
        not_on=NO_FREE_SETTINGS,
    ),
    TextCase(
        "settings_unknown_name",
        S.AWAITING_PROMPT,
        K.SETTINGS,
        settings=(("frobnicate", "3"),),
        answer="unknown setting",
        not_on=NO_FREE_SETTINGS,
    ),
    TextCase(
        "settings_one_good_one_bad",
        S.AWAITING_PROMPT,
        K.SETTINGS,
        settings=(("steps", "8"), ("seconds", "7")),
        answer="settings not changed",
        per_platform=DISCORD_REFUSES,
    ),
    TextCase(
        "settings_while_generating",
        S.GENERATING,
        K.SETTINGS,
        settings=(("steps", "8"),),
        answer="can't change while segment",
    ),
]

#: Commands that need a session: in a chat without one, each is answered the same way.
SESSION_COMMANDS = ("finish", "undo", "cancel", "status", "regenerate", "approve", "settings")
NO_APPROVE = frozenset({"discord"})  # approving is a button or a reaction there
_commands = [
    TextCase(
        f"{name}_without_session",
        S.NONE,
        K.COMMAND,
        command=name,
        answer=NO_SESSION,
        not_on=NO_APPROVE if name == "approve" else frozenset(),
    )
    for name in SESSION_COMMANDS
] + [
    TextCase(
        "finish_before_picture", S.AWAITING_IMAGE, K.COMMAND, command="finish", answer="send the start picture first"
    ),
    TextCase("undo_before_picture", S.AWAITING_IMAGE, K.COMMAND, command="undo", answer="send the start picture first"),
    TextCase("approve_before_picture", S.AWAITING_IMAGE, K.COMMAND, command="approve", answer="no segment waiting"),
    TextCase(
        "regenerate_before_picture", S.AWAITING_IMAGE, K.COMMAND, command="regenerate", answer="no segment waiting"
    ),
    TextCase(
        "start_again_before_picture", S.AWAITING_IMAGE, K.COMMAND, command="start", answer="send me the start picture"
    ),
    TextCase("finish_without_segments", S.AWAITING_PROMPT, K.COMMAND, command="finish", answer="nothing to join"),
    TextCase("undo_without_segments", S.AWAITING_PROMPT, K.COMMAND, command="undo", answer="nothing to undo"),
    TextCase(
        "approve_without_take",
        S.AWAITING_PROMPT,
        K.COMMAND,
        command="approve",
        answer="no segment waiting",
        not_on=NO_APPROVE,
    ),
    TextCase(
        "regenerate_without_take", S.AWAITING_PROMPT, K.COMMAND, command="regenerate", answer="nothing to regenerate"
    ),
    TextCase(
        "regenerate_with_10000_chars",
        S.REVIEWING,
        K.COMMAND,
        command="regenerate",
        text=LONG[:10_000],
        answer=PROMPT_LIMIT,
        per_platform=DISCORD_REFUSES,
    ),
    TextCase(
        "approve_while_generating",
        S.GENERATING,
        K.COMMAND,
        command="approve",
        answer="still being made",
        not_on=NO_APPROVE,
    ),
    TextCase("regenerate_while_generating", S.GENERATING, K.COMMAND, command="regenerate", answer="still being made"),
    TextCase("finish_while_generating", S.GENERATING, K.COMMAND, command="finish", answer="still"),
    TextCase("finish_while_reviewing", S.REVIEWING, K.COMMAND, command="finish", answer="still under review"),
    TextCase(
        "unknown_command",
        S.AWAITING_PROMPT,
        K.COMMAND,
        command="frobnicate",
        answer="i don't know /frobnicate",
        not_on=frozenset({"discord"}),  # Discord offers only the registered slash commands
    ),
]

TEXT_CASES: list[TextCase] = _prompts + _settings + _commands
CASES_BY_NAME = {case.name: case for case in TEXT_CASES}
assert len(CASES_BY_NAME) == len(TEXT_CASES), "case names are unique"
