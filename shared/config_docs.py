"""The configuration reference, generated from the schema: every dataclass reachable from
:class:`shared.config.Config`, each field with its TOML key, type, default and the ``#:`` comment
above it in the source. New sections and fields appear without any change here.

    python -m shared.config_docs > docs/configuration.md      (or --write docs/configuration.md)

``tests/shared/test_config_docs.py`` regenerates it and fails when the committed file differs.

A ``#:`` comment documents the field under it and the fields that follow it directly (no blank
line, no comment of their own), as in ``guidance`` / ``guidance_2``; a class docstring describes
its section.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import re
import sys
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

from shared.config import ENV_DISCORD_TOKEN, ENV_TELEGRAM_TOKEN, Config, Secret

#: Defaults longer than this are shortened in the table (the full value is in the source).
MAX_DEFAULT = 48

HEADER = f"""# Configuration reference

<!-- Generated from shared/config.py by `python -m shared.config_docs`; do not edit by hand.
     tests/shared/test_config_docs.py fails when this file and the schema differ. -->

framechain reads one TOML file (`framechain run --config config.toml`). Every key is optional:
the defaults reproduce the reference ComfyUI workflow. Unknown keys and wrong types stop
start-up with a message naming the key and the file. Relative paths are relative to the file.
The bot tokens may instead come from `{ENV_DISCORD_TOKEN}` and `{ENV_TELEGRAM_TOKEN}`, which win
over the file. `config.example.toml` is a commented starting point; `framechain check` and
`framechain doctor` say what a file amounts to on this machine.
"""


@dataclass(frozen=True)
class Key:
    name: str
    type: str
    default: str
    doc: str


@dataclass(frozen=True)
class Section:
    #: "generation", "comfyui.mapping", "" for the top level.
    path: str
    #: A list of tables ([[generation.loras]]) rather than one table.
    array: bool
    doc: str
    keys: tuple[Key, ...]


def _class_lines(cls: type) -> list[str]:
    """The source lines of ``cls``'s body, found by its ``class`` line in its module's file.

    Plain text, not ``inspect.getsource``: that parses the whole module with ``ast`` each time,
    which is slow and has failed (SystemError) late in long test runs."""
    module = sys.modules.get(cls.__module__)
    filename = getattr(module, "__file__", None)
    if not filename:
        return []
    try:
        lines = Path(filename).read_text(encoding="utf-8").splitlines()
    except OSError:
        return []
    head = re.compile(rf"^(\s*)class {re.escape(cls.__name__)}\b")
    for i, line in enumerate(lines):
        m = head.match(line)
        if m is None:
            continue
        indent = len(m.group(1))
        body = []
        for rest in lines[i + 1 :]:
            if rest.strip() and len(rest) - len(rest.lstrip()) <= indent:
                break
            body.append(rest)
        return body
    return []


def field_comments(cls: type) -> dict[str, str]:
    """Field name -> its ``#:`` comment, a comment carrying on to the fields right below it."""
    body = _class_lines(cls)
    if not body:
        return {}
    names = {f.name for f in dataclasses.fields(cls)}
    first = next((ln for ln in body if ln.strip()), "")
    indent = len(first) - len(first.lstrip())
    out: dict[str, str] = {}
    pending: list[str] = []
    carried = ""
    for raw in body:
        line = raw.strip()
        if line.startswith("#:"):
            pending.append(line[2:].strip())
            continue
        name = line.split(":", 1)[0].strip() if ":" in line else ""
        if name in names and len(raw) - len(raw.lstrip()) == indent:
            if pending:
                carried = " ".join(pending)
            out[name] = carried
            pending = []
            continue
        if not line:
            carried = ""
        pending = [] if not line.startswith("#") else pending
    return out


def type_name(tp: Any) -> str:
    origin = get_origin(tp)
    if origin is Literal:
        return " \\| ".join(f'`"{a}"`' if isinstance(a, str) else f"`{a}`" for a in get_args(tp))
    if origin in (typing.Union, types.UnionType):
        parts = [type_name(a) for a in get_args(tp) if a is not type(None)]
        return " \\| ".join(parts) + (" or empty" if type(None) in get_args(tp) else "")
    if origin is tuple:
        return f"list of {type_name(get_args(tp)[0])}"
    if dataclasses.is_dataclass(tp):
        return "table"
    return {
        str: "string",
        int: "integer",
        float: "number",
        bool: "boolean",
        Path: "path",
        Secret: "string (secret)",
    }.get(tp, getattr(tp, "__name__", str(tp)))


def toml_value(value: Any) -> str:
    if isinstance(value, Secret):
        return '""'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        shown = value if len(value) <= MAX_DEFAULT else value[: MAX_DEFAULT - 1] + "…"
        return '"' + shown.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, Path):
        return toml_value(str(value))
    if isinstance(value, tuple | list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if value is None:
        return "(empty)"
    return repr(value)


def _default(f: dataclasses.Field[Any]) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def _item_dataclass(tp: Any) -> type | None:
    """The dataclass of a ``tuple[SomeConfig, ...]`` field (an array of tables), else None."""
    if get_origin(tp) is tuple:
        item = get_args(tp)[0]
        if dataclasses.is_dataclass(item) and isinstance(item, type):
            return item
    return None


def sections(root: type = Config, path: str = "", array: bool = False) -> list[Section]:
    """The section of ``root`` and, after it, the sections of every table it holds (depth first)."""
    hints = typing.get_type_hints(root)
    comments = field_comments(root)
    keys: list[Key] = []
    nested: list[Section] = []
    for f in dataclasses.fields(root):
        tp = hints[f.name]
        sub = f"{path}.{f.name}" if path else f.name
        if dataclasses.is_dataclass(tp) and isinstance(tp, type):
            nested += sections(tp, sub)
            continue
        item = _item_dataclass(tp)
        if item is not None:  # an array of tables: its own section, not a key
            nested += sections(item, sub, array=True)
            continue
        default = _default(f)
        shown = "(required)" if default is dataclasses.MISSING else toml_value(default)
        keys.append(Key(f.name, type_name(tp), shown, comments.get(f.name, "")))
    doc = inspect.getdoc(root) or ""
    if doc.startswith(root.__name__ + "("):  # dataclasses' generated signature is not a description
        doc = ""
    return [Section(path, array, doc, tuple(keys)), *nested]


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render(root: type = Config, header: str = HEADER) -> str:
    out = [header.rstrip("\n"), ""]
    for section in sections(root):
        if not section.keys:
            continue
        if not section.path:
            out += ["## Top level", ""]
        else:
            out += [f"## `[[{section.path}]]`" if section.array else f"## `[{section.path}]`", ""]
        if section.array:
            out += [f"A list of tables: each `[[{section.path}]]` block adds one.", ""]
        if section.doc:
            out += [section.doc, ""]
        out += ["| key | type | default | what it does |", "|---|---|---|---|"]
        leader: Key | None = None
        for key in section.keys:
            default = key.default if key.default.startswith("(") else f"`{_cell(key.default)}`"
            if leader is not None and key.doc and key.doc == leader.doc:
                doc = f"(as `{leader.name}`)"  # one comment over several fields
            else:
                leader, doc = key, _cell(key.doc)
            out.append(f"| `{key.name}` | {key.type} | {default} | {doc} |")
        out.append("")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m shared.config_docs", description=__doc__.split("\n\n")[0])
    parser.add_argument("--write", metavar="PATH", help="write the reference there instead of to stdout")
    args = parser.parse_args(argv)
    text = render()
    if args.write:
        Path(args.write).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
