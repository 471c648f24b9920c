"""docs/configuration.md is generated from the config schema and cannot drift from it; a section
or field added to the schema shows up without touching the generator."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from shared.config import Secret
from shared.config_docs import render

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = ROOT / "docs" / "configuration.md"


def test_the_committed_reference_is_the_generated_one() -> None:
    generated = render()
    assert REFERENCE.read_text(encoding="utf-8") == generated, (
        "docs/configuration.md is out of date: run `python -m shared.config_docs --write docs/configuration.md`"
    )


def test_every_key_of_the_schema_is_in_it() -> None:
    text = REFERENCE.read_text(encoding="utf-8")
    for section, key in (
        ("[generation]", "comfyui_models"),
        ("[[generation.loras]]", "target"),
        ("[comfyui.mapping]", "cfg_2"),
        ("[storage]", "retention_days"),
    ):
        assert f"## `{section}`" in text
        assert f"| `{key}` |" in text.split(f"## `{section}`", 1)[1]
    assert '| `memory_profile` | `"auto"` \\| `"full"`' in text
    assert "| `guidance_2` | number | `3.5` | (as `guidance`) |" in text


@dataclass(frozen=True)
class Panel:
    #: Where the page listens.
    listen: str = "127.0.0.1:8765"
    #: Needed on any other address.
    token: Secret = field(default_factory=Secret)


@dataclass(frozen=True)
class Take:
    """Takes to choose from."""

    #: How many takes a segment keeps.
    keep: int = 3
    prune: bool = True

    #: Colour of the badge.
    badge: Literal["red", "blue"] = "red"


@dataclass(frozen=True)
class Hook:
    #: Command to run.
    command: str
    timeout: float = 5.0


@dataclass(frozen=True)
class Root:
    #: Top-level key.
    name: str = "x"
    web: Panel = field(default_factory=Panel)
    takes: Take = field(default_factory=Take)
    hooks: tuple[Hook, ...] = ()


def test_a_new_section_and_fields_need_no_change_to_the_generator() -> None:
    text = render(Root, header="# test\n")
    assert '| `name` | string | `"x"` | Top-level key. |' in text
    web = text.split("## `[web]`", 1)[1]
    assert '| `listen` | string | `"127.0.0.1:8765"` | Where the page listens. |' in web
    assert '| `token` | string (secret) | `""` | Needed on any other address. |' in web
    takes = text.split("## `[takes]`", 1)[1]
    assert "Takes to choose from." in takes
    assert "| `keep` | integer | `3` | How many takes a segment keeps. |" in takes
    assert "| `prune` | boolean | `true` | (as `keep`) |" in takes  # one comment over the group
    assert '| `badge` | `"red"` \\| `"blue"` | `"red"` | Colour of the badge. |' in takes
    hooks = text.split("## `[[hooks]]`", 1)[1]
    assert "| `command` | string | (required) | Command to run. |" in hooks
    assert "| `hooks` |" not in text  # an array of tables is a section, not a key


def test_the_command_writes_what_render_gives(tmp_path: Path) -> None:
    out = tmp_path / "configuration.md"
    result = subprocess.run(
        [sys.executable, "-m", "shared.config_docs", "--write", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=60, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert out.read_text(encoding="utf-8") == render()
