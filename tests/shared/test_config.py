"""Configuration: defaults, the example file, environment overrides and every error path."""

from __future__ import annotations

import dataclasses
import logging
import tomllib
from pathlib import Path

import pytest

from shared import params
from shared.config import (
    ENV_DISCORD_TOKEN,
    ENV_TELEGRAM_TOKEN,
    Config,
    ConfigError,
    LoraConfig,
    Secret,
    load_config,
)

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "config.example.toml"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "framechain.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_reproduce_the_reference_generation() -> None:
    g = load_config(None, env={}).generation
    assert (g.width, g.height, g.frames, g.fps) == (640, 640, 81, 16)
    assert (g.steps, g.sampler, g.shift, g.boundary_ratio) == (20, "euler", 8.0, 0.9)
    assert (g.guidance, g.guidance_2) == (3.5, 3.5)
    assert g.negative_prompt == params.WAN_NEGATIVE_PROMPT
    assert g.model == "Wan-AI/Wan2.2-I2V-A14B-Diffusers"
    assert g.backend == "wan"


def test_example_file_matches_the_defaults() -> None:
    example = load_config(EXAMPLE, env={})
    defaults = load_config(None, env={})
    # Relative paths resolve against the file's folder; everything else must be identical.
    assert example.data_dir == ROOT / "data"
    assert dataclasses.replace(example, data_dir=defaults.data_dir) == defaults


def _keys(cls: type, prefix: str = "") -> set[str]:
    keys = set()
    for f in dataclasses.fields(cls):
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        if dataclasses.is_dataclass(default) and not isinstance(default, Secret):
            keys |= _keys(type(default), f"{prefix}{f.name}.")
        else:
            keys.add(prefix + f.name)
    return keys


def _flatten(table: dict[str, object], prefix: str = "") -> set[str]:
    keys = set()
    for key, value in table.items():
        if isinstance(value, dict):
            keys |= _flatten(value, f"{prefix}{key}.")
        else:
            keys.add(prefix + key)
    return keys


def test_example_file_documents_every_key() -> None:
    documented = _flatten(tomllib.loads(EXAMPLE.read_text(encoding="utf-8")))
    assert documented == _keys(Config)
    # And every key has a comment somewhere above it: a bare key line right after another bare
    # key line is fine only when its group is described; check at least that comments exist.
    assert EXAMPLE.read_text(encoding="utf-8").count("\n#") >= 30


def test_values_and_relative_paths(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
data_dir = "media"
database = "db/fc.sqlite"
[generation]
backend = "preview"
frames = 49
guidance = 4
loras = [{path = "/l/high.safetensors", scale = 0.8, target = "high"}]
[workers]
devices = ["cuda:0", "cuda:1"]
[telegram]
allowed_user_ids = [1, 2]
""",
    )
    config = load_config(path, env={})
    assert config.data_dir == tmp_path / "media"
    assert config.database_path == tmp_path / "db" / "fc.sqlite"
    (tmp_path / "examples").mkdir()
    up = write(tmp_path / "examples", 'data_dir = "../out/data"\n')
    assert str(load_config(up, env={}).data_dir) == str(tmp_path / "out" / "data")  # no "examples/.."
    assert config.generation.backend == "preview"
    assert config.generation.frames == 49
    assert config.generation.guidance == 4.0 and isinstance(config.generation.guidance, float)
    assert config.generation.loras == (LoraConfig(path="/l/high.safetensors", scale=0.8, target="high"),)
    assert config.workers.devices == ("cuda:0", "cuda:1")
    assert config.telegram.allowed_user_ids == (1, 2)


def test_default_database_lives_in_the_data_dir(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, 'data_dir = "d"\n'), env={})
    assert config.database_path == tmp_path / "d" / "framechain.db"


def test_environment_tokens_win_over_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, '[discord]\ntoken = "from-file"\n[telegram]\ntoken = "tg-file"\n')
    assert load_config(path, env={}).discord.token.get() == "from-file"
    config = load_config(path, env={ENV_DISCORD_TOKEN: "from-env", ENV_TELEGRAM_TOKEN: "tg-env"})
    assert config.discord.token.get() == "from-env"
    assert config.telegram.token.get() == "tg-env"
    assert config.enabled_platforms == ["discord", "telegram"]
    assert load_config(None, env={}).enabled_platforms == []


def test_tokens_never_show(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    secret = "123456:SUPER-SECRET-TOKEN"
    config = load_config(write(tmp_path, f'[telegram]\ntoken = "{secret}"\n'), env={})
    with caplog.at_level(logging.INFO):
        logging.getLogger("t").info("config %s %r", config, config)
    assert secret not in repr(config) and secret not in str(config) and secret not in caplog.text
    # A token of the wrong type is named but not echoed.
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, "[discord]\ntoken = 12345678\n"), env={})
    assert "12345678" not in str(err.value) and "discord.token" in str(err.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("colour = 1\n", "unknown key colour"),
        ("[generation]\nbackedn = 'wan'\n", "unknown key generation.backedn"),
        ("[generation]\nframes = '81'\n", "generation.frames: expected an integer, got '81'"),
        ("[generation]\nframes = 80\n", "generation.frames: frames must be 4k+1"),
        ("[generation]\nwidth = 650\n", "generation.width: width must be a positive multiple of 16"),
        ("[generation]\nheight = 0\n", "generation.height"),
        ("[generation]\nbackend = 'sdxl'\n", "generation.backend: expected 'wan' or 'preview'"),
        ("[generation]\nsampler = 'dpm'\n", "generation.sampler"),
        ("[generation]\nguidance = 'high'\n", "generation.guidance: expected a number"),
        ("[generation]\nguidance = 40.0\n", "generation.guidance: must be between 0 and 30"),
        ("[generation]\ncompile = 1\n", "generation.compile: expected true or false"),
        ("[generation]\nshift = 0\n", "generation.shift: must be positive"),
        ("[generation]\nboundary_ratio = 1.5\n", "generation.boundary_ratio"),
        ("[generation]\ncolor_strength = 2\n", "generation.color_strength"),
        ("[generation]\nseed = -1\n", "generation.seed"),
        ("[generation]\nsteps = 0\n", "generation.steps: must be positive"),
        ("[generation]\nsteps = 80\n", "exceeds limits.max_steps"),
        ("[generation]\nwidth = 1920\nheight = 1088\n", "exceeds limits.max_pixels"),
        ("[generation]\nloras = [{scale = 1.0}]\n", "generation.loras[0]"),
        ("[generation]\nloras = [{path = 'x', target = 'mid'}]\n", "generation.loras[0].target"),
        ("[generation]\nloras = 'x'\n", "generation.loras: expected a list"),
        ("generation = 3\n", "generation: expected a table"),
        ("[workers]\ndevices = []\n", "workers.devices: needs at least one device"),
        ("[workers]\ndevices = ['gpu0']\n", "workers.devices: 'gpu0'"),
        ("[workers]\ndevices = ['cuda:0', 'cuda:0']\n", "lists a device twice"),
        ("[workers]\ndevices = [0]\n", "workers.devices[0]: expected a string"),
        ("[discord]\nguild_ids = ['abc']\n", "discord.guild_ids[0]: expected an integer"),
        ("[telegram]\napi_base_url = 'localhost:8081'\n", "telegram.api_base_url: must be an http(s) URL"),
        ("[limits]\nprompt_chars = 0\n", "limits.prompt_chars: must be positive"),
        ("[limits]\nimage_min_side = 8\n", "limits.image_min_side: must be at least 16"),
        ("[limits]\nimage_max_aspect = 0.5\n", "limits.image_max_aspect: must be at least 1"),
        ("[limits]\nimage_text_bytes = 0\n", "limits.image_text_bytes: must be positive"),
        ("[limits]\nqueued_jobs_total = 0\n", "limits.queued_jobs_total: must be positive"),
        ("[limits]\nactive_sessions_per_user = 0\n", "limits.active_sessions_per_user: must be positive"),
        ("[limits]\ngpu_seconds_per_user_per_day = -1\n", "limits.gpu_seconds_per_user_per_day: must be 0"),
        ("[limits]\nquota_reset_hour_utc = 24\n", "limits.quota_reset_hour_utc: must be an hour from 0 to 23"),
        ("log_level = 'LOUD'\n", "log_level"),
        ("data_dir = 5\n", "data_dir: expected a path string"),
    ],
)
def test_errors_name_the_key_and_the_file(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_config(path, env={})
    message = str(err.value)
    assert message.startswith(f"{path}: ")
    assert expected in message


def test_missing_and_broken_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "nope.toml", env={})
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(write(tmp_path, "[generation\n"), env={})


def test_log_lines_redact_tokens(capsys: pytest.CaptureFixture[str]) -> None:
    from shared.logs import setup_logging

    token = "123456:SECRET"
    setup_logging("INFO", secrets=[token])
    try:
        raise ConnectionError(f"cannot reach https://api.telegram.org/bot{token}/getMe")
    except ConnectionError:
        logging.getLogger("t").exception("start failed for %s", f"bot{token}")
    err = capsys.readouterr().err
    assert token not in err and "********" in err and "getMe" in err
    logging.getLogger().handlers.clear()


def test_a_lora_brings_its_own_steps_and_guidance(tmp_path: Path) -> None:
    plain = load_config(None, env={}).generation
    assert (plain.sampling_steps, plain.sampling_guidance) == (20, (3.5, 3.5))
    path = write(tmp_path, '[generation]\nloras = [{path = "/l/4step.safetensors"}]\n')
    fast = load_config(path, env={}).generation
    assert (fast.sampling_steps, fast.sampling_guidance) == (4, (1.0, 1.0))


def test_a_token_file_readable_by_others_is_warned_about(tmp_path: Path) -> None:
    from shared.config import token_file_warning

    secret = "123456:SUPER-SECRET-TOKEN"
    path = write(tmp_path, f'[telegram]\ntoken = "{secret}"\n')
    path.chmod(0o644)
    warning = token_file_warning(path)
    assert warning is not None and "telegram token" in warning and "chmod 600" in warning and "644" in warning
    assert secret not in warning
    path.chmod(0o600)
    assert token_file_warning(path) is None
    # A readable file without a token is fine.
    other = tmp_path / "plain.toml"
    other.write_text("[generation]\nsteps = 20\n")
    other.chmod(0o644)
    assert token_file_warning(other) is None
    assert token_file_warning(None) is None


def test_a_crash_report_with_a_token_in_it_is_redacted(capsys: pytest.CaptureFixture[str]) -> None:
    from shared.logs import setup_logging

    secret = "123456:SUPER-SECRET-TOKEN"
    setup_logging("INFO", process="t", secrets=[secret])
    try:
        raise ConnectionError(f"POST https://api.telegram.org/bot{secret}/sendMessage failed")
    except ConnectionError:
        logging.getLogger("t").exception("crashed")
    err = capsys.readouterr().err
    assert "Traceback" in err and "sendMessage" in err and secret not in err
