"""The Python and package versions framechain declares (pyproject.toml, as installed), against
what is installed: the bot's own dependencies always, the ``gpu`` extra where the wan backend
runs here. Plain string work, so no ``packaging`` is needed on a bare install."""

from __future__ import annotations

import importlib.metadata
import re
import sys
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bot.doctor.report import Check, fail, ok

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"
_REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*([^;]*?)\s*(?:;(.*))?$")
_EXTRA = re.compile(r"""extra\s*==\s*["']([^"']+)["']""")


@dataclass(frozen=True)
class Requirement:
    name: str
    #: ((operator, version), ...), e.g. ((">=", "2.4"), ("<", "3")).
    specifiers: tuple[tuple[str, str], ...]
    #: The extra it belongs to ("" for a base dependency).
    extra: str = ""

    def allows(self, version: str) -> bool:
        have = _numbers(version)
        for op, wanted in self.specifiers:
            want = _numbers(wanted)
            n = max(len(have), len(want))
            a, b = have + (0,) * (n - len(have)), want + (0,) * (n - len(want))
            if not {">=": a >= b, ">": a > b, "<=": a <= b, "<": a < b, "==": a == b, "!=": a != b}.get(op, True):
                return False
        return True

    def wanted(self) -> str:
        return ",".join(op + v for op, v in self.specifiers)


def _numbers(version: str) -> tuple[int, ...]:
    """1.26.4 -> (1, 26, 4); 2.5.1+cu124 -> (2, 5, 1); pre-release tails are ignored."""
    out = []
    for part in version.split("+")[0].split("."):
        digits = re.match(r"\d+", part)
        if digits is None:
            break
        out.append(int(digits.group()))
    return tuple(out)


def parse_requirement(text: str) -> Requirement | None:
    m = _REQUIREMENT.match(text)
    if m is None:
        return None
    name, specs, marker = m.group(1), m.group(2), m.group(3) or ""
    specifiers = tuple(
        (s.group(1), s.group(2)) for s in re.finditer(r"(>=|<=|==|!=|~=|>|<)\s*([0-9][^,\s]*)", specs or "")
    )
    extra = _EXTRA.search(marker)
    return Requirement(
        name, tuple((">=" if op == "~=" else op, v) for op, v in specifiers), extra.group(1) if extra else ""
    )


def declared() -> tuple[str, list[Requirement]]:
    """(requires-python, requirements): from the installed framechain, else from pyproject.toml."""
    try:
        meta = importlib.metadata.metadata("framechain")
        lines = importlib.metadata.requires("framechain") or []
        python = meta["Requires-Python"] or ""
    except importlib.metadata.PackageNotFoundError:
        project = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]
        python = project.get("requires-python", "")
        lines = list(project.get("dependencies", []))
        for extra, reqs in project.get("optional-dependencies", {}).items():
            lines += [f'{r}; extra == "{extra}"' for r in reqs]
    reqs = [r for line in lines if (r := parse_requirement(line)) is not None]
    return python, reqs


def python_check(version: str, requires: str) -> Check:
    req = parse_requirement(f"python{requires}")
    if req is not None and req.specifiers and not req.allows(version):
        return fail("python", f"{version} at {sys.executable}, framechain needs {requires}", "install a newer Python")
    return ok("python", f"{version} ({sys.executable})")


def package_checks(version_of: Callable[[str], str | None], *, gpu: bool) -> list[Check]:
    """One line for the bot's packages, one for the gpu extra (when the wan backend runs here)."""
    _, reqs = declared()
    groups = [("packages", "", "pip install -e .")]
    if gpu:
        groups.append(("gpu packages", "gpu", "pip install -e '.[gpu]' (make gpu)"))
    out = []
    for topic, extra, command in groups:
        found, wrong = [], []
        for req in (r for r in reqs if r.extra == extra):
            have = version_of(req.name)
            if have is None:
                wrong.append(f"{req.name} is missing")
            elif not req.allows(have):
                wrong.append(f"{req.name} {have} (needs {req.wanted()})")
            else:
                found.append(f"{req.name} {have}")
        if wrong:
            out.append(fail(topic, "; ".join(wrong), f"run `{command}` in framechain's virtual environment"))
        else:
            out.append(ok(topic, ", ".join(found)))
    return out
