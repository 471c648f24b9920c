"""deploy/: what can be checked offline. The systemd unit through ``systemd-analyze verify``
where it is installed, and always parsed for what it must (and must not) say; the Dockerfile
with ``docker build --check`` where a daemon answers, and always structurally: every path it
copies exists, every framechain command it runs parses, its config loads and matches its volumes;
the compose file's build, volumes and GPU reservation."""

from __future__ import annotations

import fnmatch
import json
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from bot.cli import build_parser
from shared.config import load_config

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"


def unit_sections(text: str) -> dict[str, list[tuple[str, str]]]:
    """systemd's ini dialect: sections of (key, value) pairs, keys may repeat, \\ continues a line."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current = ""
    for raw in text.replace("\\\n", " ").splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = line[1:-1]
            sections.setdefault(current, [])
            continue
        key, sep, value = line.partition("=")
        assert sep, f"not a key=value line: {line!r}"
        sections[current].append((key.strip(), value.strip()))
    return sections


def framechain_args(command: list[str]) -> list[str]:
    assert Path(command[0]).name == "framechain", command
    return command[1:]


@pytest.fixture(scope="module")
def service() -> dict[str, str]:
    sections = unit_sections((DEPLOY / "framechain.service").read_text())
    assert set(sections) == {"Unit", "Service", "Install"}
    keys = [k for k, _ in sections["Service"]]
    assert len(keys) == len(set(keys)), "a key given twice"
    return dict(sections["Service"])


def test_the_unit_runs_framechain_unprivileged_with_its_tokens_from_a_file(service: dict[str, str]) -> None:
    assert service["User"] not in ("", "root", "0") and service["Group"] not in ("", "root", "0")
    assert service["Restart"] == "on-failure"
    assert service["EnvironmentFile"].startswith("/")
    args = build_parser().parse_args(framechain_args(shlex.split(service["ExecStart"])))
    assert args.command == "run" and args.config
    pre = build_parser().parse_args(framechain_args(shlex.split(service["ExecStartPre"])))
    assert pre.command == "doctor" and pre.config == args.config


def test_the_unit_hardens_without_breaking_cuda(service: dict[str, str]) -> None:
    assert service["NoNewPrivileges"] == "yes" and service["ProtectSystem"] == "strict"
    assert service["CapabilityBoundingSet"] == ""
    # what would hide or refuse /dev/nvidia*, or stop the CUDA JIT
    assert service.get("PrivateDevices", "no") == "no"
    assert service.get("DevicePolicy", "auto") == "auto" and "DeviceAllow" not in service
    assert service.get("MemoryDenyWriteExecute", "no") == "no" and service.get("PrivateUsers", "no") == "no"
    families = service["RestrictAddressFamilies"].split()
    assert {"AF_UNIX", "AF_INET", "AF_INET6"} <= set(families)


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_analyze_verifies_the_unit(tmp_path: Path) -> None:
    # verify checks that the programs and files exist: point them at ones that do here
    text = (DEPLOY / "framechain.service").read_text()
    text = text.replace("/opt/framechain/.venv/bin/framechain", "/bin/true")
    text = text.replace("/etc/framechain/secrets.env", str(tmp_path / "secrets.env"))
    (tmp_path / "secrets.env").write_text((DEPLOY / "secrets.env.example").read_text())
    unit = tmp_path / "framechain.service"
    unit.write_text(text)
    result = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    # unknown or misspelt keys are only warnings to verify: none may appear
    assert "Unknown key" not in result.stderr and "ignoring" not in result.stderr, result.stderr


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments), continuation lines joined, comments dropped."""
    lines = [ln for ln in (DEPLOY / "Dockerfile").read_text().splitlines() if not ln.lstrip().startswith("#")]
    joined = "\n".join(lines).replace("\\\n", " ")
    out = []
    for line in joined.splitlines():
        if line.strip():
            word, _, rest = line.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def context_ignores(patterns: list[str], path: str) -> bool:
    """Docker's rule: the last pattern matching ``path`` (or a folder above it) decides; ``!`` re-includes."""
    decided = False
    parts = Path(path).parts
    for pattern in patterns:
        negated, glob = pattern.startswith("!"), pattern.lstrip("!")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(fnmatch.fnmatch(p, glob) or fnmatch.fnmatch(p, glob.removeprefix("**/")) for p in prefixes):
            decided = not negated
    return decided


def test_the_dockerfile_builds_from_the_repository() -> None:
    steps = dockerfile()
    assert steps[0][0] == "FROM"
    image = steps[0][1]
    assert image.startswith("nvidia/cuda:") and "runtime" in image
    copies = [shlex.split(args) for word, args in steps if word == "COPY"]
    for parts in copies:
        for source in parts[:-1]:
            assert (ROOT / source).exists(), f"COPY {source}: not in the repository"
    ignored = [ln.strip() for ln in (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()]
    for parts in copies:
        for source in parts[:-1]:
            assert not context_ignores([p for p in ignored if p and not p.startswith("#")], source), source
    runs = " ".join(args for word, args in steps if word == "RUN")
    assert "pip install '.[gpu]'" in runs
    users = [args for word, args in steps if word == "USER"]
    assert users and users[-1] not in ("root", "0")


def test_the_image_runs_framechain_and_checks_itself_with_the_doctor() -> None:
    steps = dict(dockerfile())
    volumes = set(json.loads(steps["VOLUME"]))
    assert {"/data", "/models"} <= volumes
    health = steps["HEALTHCHECK"]
    assert "--interval=" in health and "CMD [" in health
    check = build_parser().parse_args(framechain_args(json.loads(health.split("CMD", 1)[1])))
    assert check.command == "doctor" and check.running
    run = build_parser().parse_args(framechain_args(json.loads(steps["CMD"])))
    assert run.command == "run" and run.config == check.config
    # the configuration baked in is the one these commands name, and it lives on the volumes
    (baked,) = [shlex.split(a) for w, a in dockerfile() if w == "COPY" and a.endswith(run.config)]
    config = load_config(ROOT / baked[0], env={})
    assert str(config.data_dir) in volumes
    assert config.generation.comfyui_models in volumes


def docker_daemon() -> bool:
    if shutil.which("docker") is None:
        return False
    return subprocess.run(["docker", "info"], capture_output=True, timeout=30).returncode == 0


@pytest.mark.skipif(not docker_daemon(), reason="no docker daemon")
def test_docker_build_check() -> None:
    result = subprocess.run(
        ["docker", "build", "--check", "-f", str(DEPLOY / "Dockerfile"), str(ROOT)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_reserves_the_gpu_and_mounts_the_volumes() -> None:
    yaml = pytest.importorskip("yaml")
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    service = compose["services"]["framechain"]
    context = (DEPLOY / service["build"]["context"]).resolve()
    assert context == ROOT and (context / service["build"]["dockerfile"]).is_file()
    assert (DEPLOY / (service["env_file"] + ".example")).is_file()
    (device,) = service["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]
    # source:target[:ro]; the source may be ${VAR:-default}
    targets = {v.removesuffix(":ro").rsplit(":", 1)[1] for v in service["volumes"]}
    assert {"/data", "/models"} <= targets
    assert service["restart"] in ("unless-stopped", "on-failure", "always")


def test_the_readme_points_to_both() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "deploy/framechain.service" in readme and "deploy/docker-compose.yml" in readme
    assert "framechain doctor" in readme
