"""``framechain doctor`` against good and broken set-ups: the four model files at their real
size (sparse: headers only), a card and RAM of a given size (injected through the Probe), and
the ComfyUI stand-in; each with the lines and exit status the operator gets."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.doctor import Diagnosis, Probe, diagnose
from bot.doctor.probe import Cuda, Ffmpeg, Gpu
from shared.memory_plan import GIB
from tests.comfy_files import wan_vae_original_shapes, write_real_size_comfyui_models, write_sparse_safetensors
from tests.comfyui_standin import ComfyStandIn

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw0"
RTX_4090 = Gpu(0, "NVIDIA GeForce RTX 4090", int(23.5 * GIB), 24 * GIB)
HIGH = "diffusion_models/wan2.2_i2v_high_noise_14B_fp8_scaled.safetensors"
VAE = "vae/wan_2.1_vae.safetensors"
TEXT = "text_encoders/umt5_xxl_fp8_e4m3fn_scaled.safetensors"


def probe(
    *,
    gpus: tuple[Gpu, ...] = (RTX_4090,),
    ram: float = 62,
    disk: float = 200e9,
    ffmpeg: Ffmpeg | None = None,
    missing: tuple[str, ...] = (),
    env: dict[str, str] | None = None,
) -> Probe:
    from bot.doctor.probe import package_version

    return Probe(
        python_version=lambda: "3.11.7",
        package_version=lambda name: None if name in missing else package_version(name),
        cuda=lambda: Cuda("2.5.1+cu124", "12.4", gpus),
        ram_available=lambda: int(ram * GIB),
        disk_free=lambda _path: int(disk),
        ffmpeg=lambda: ffmpeg or Ffmpeg("/usr/bin/ffmpeg", "ffmpeg version 6.1.1"),
        env={"FRAMECHAIN_TELEGRAM_TOKEN": TOKEN} if env is None else env,
    )


@pytest.fixture(scope="module")
def real_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_real_size_comfyui_models(tmp_path_factory.mktemp("real") / "models")


def models_copy(real: Path, into: Path, *, without: tuple[str, ...] = ()) -> Path:
    """A models folder of hard links to the sparse real-size files, less ``without``."""
    for file in real.rglob("*.safetensors"):
        name = str(file.relative_to(real))
        if name not in without:
            (into / name).parent.mkdir(parents=True, exist_ok=True)
            os.link(file, into / name)
    return into


def config(tmp_path: Path, body: str, *, mode: int = 0o600) -> str:
    path = tmp_path / "config.toml"
    path.write_text(f'data_dir = "{tmp_path / "data"}"\n' + body)
    path.chmod(mode)
    return str(path)


def wan_config(tmp_path: Path, models: Path, extra: str = "", generation: str = "") -> str:
    return config(
        tmp_path, f'[generation]\ncomfyui_models = "{models}"\n{generation}\n[telegram]\nadmin_ids = [7]\n{extra}'
    )


def marked(diagnosis: Diagnosis, topic: str) -> list[str]:
    return [line for line in diagnosis.lines() if line[2:].startswith(topic + ":")]


def test_a_good_24gb_box_with_the_four_files_can_run(tmp_path: Path, real_models: Path) -> None:
    d = diagnose(wan_config(tmp_path, real_models), probe())
    lines = "\n".join(d.lines())
    assert d.exit_status == 0, lines
    assert "✗" not in lines
    assert lines.startswith("✓ python: 3.11.7")
    assert marked(d, "cuda") == ["✓ cuda: torch 2.5.1+cu124 (CUDA 12.4), 1 GPU"]
    (gpu,) = marked(d, "gpu auto")
    assert gpu.startswith(
        "✓ gpu auto: NVIDIA GeForce RTX 4090, 23.5 GiB free of 24.0 GiB; expert_offload (auto) needs ~"
    )
    assert gpu.endswith("at 640x640x81")
    (ram,) = marked(d, "ram")
    assert ram.startswith("✓ ram: 62.0 GiB available; the expert_offload profile needs ~37.")
    (high,) = marked(d, "generation.transformer")
    assert f"{real_models / HIGH} (Wan2.2 I2V expert, 40 layers of width 5120, fp8_scaled" in high
    assert "(Wan 2.1 VAE, base width 96" in marked(d, "generation.vae")[0]
    assert "(UMT5 encoder, width 4096, carries its tokenizer" in marked(d, "generation.text_encoder")[0]
    assert not marked(d, "generation.model")  # the four files give everything
    assert marked(d, "telegram token") == ["✓ telegram token: set (FRAMECHAIN_TELEGRAM_TOKEN), well formed"]
    assert marked(d, "telegram access") == ["✓ telegram access: only admins 7; everyone else is refused"]
    assert marked(d, "disk") == [f"✓ disk: 200.0 GB free in {tmp_path / 'data'}"]
    assert marked(d, "ffmpeg") == ["✓ ffmpeg: ffmpeg version 6.1.1 (/usr/bin/ffmpeg)"]
    assert not marked(d, "config file")


def test_too_little_ram_for_the_chosen_profile_names_low_ram(tmp_path: Path, real_models: Path) -> None:
    d = diagnose(wan_config(tmp_path, real_models), probe(ram=31))
    assert d.exit_status == 1
    (ram,) = marked(d, "ram")
    assert ram.startswith("✗ ram: 31.0 GiB available; the expert_offload profile needs ~37.")
    assert "— set generation.low_ram = true (needs ~19.7 GiB" in ram
    # with low_ram the same machine is fine
    d = diagnose(wan_config(tmp_path, real_models, generation="low_ram = true"), probe(ram=31))
    assert d.exit_status == 0, d.lines()
    assert marked(d, "ram")[0].startswith("✓ ram: 31.0 GiB available; the expert_offload profile (low_ram) needs ~19.7")


def test_two_workers_need_the_ram_twice(tmp_path: Path, real_models: Path) -> None:
    cards = (RTX_4090, Gpu(1, "NVIDIA GeForce RTX 4090", int(23.5 * GIB), 24 * GIB))
    path = wan_config(tmp_path, real_models, generation='[workers]\ndevices = ["cuda:0", "cuda:1"]')
    d = diagnose(path, probe(gpus=cards, ram=62))
    assert d.exit_status == 1
    assert "per worker, 74." in marked(d, "ram")[0] and "for 2 workers" in marked(d, "ram")[0]


def test_a_size_the_card_cannot_hold_and_a_device_that_is_not_there(tmp_path: Path, real_models: Path) -> None:
    path = wan_config(
        tmp_path, real_models, generation='memory_profile = "full"\n[workers]\ndevices = ["cuda:0", "cuda:1"]'
    )
    d = diagnose(path, probe(ram=200))
    assert d.exit_status == 1
    (gpu0,) = marked(d, "gpu cuda:0")
    assert "✗ gpu cuda:0: NVIDIA GeForce RTX 4090, 23.5 GiB free of 24.0 GiB; full (configured) needs ~" in gpu0
    assert gpu0.endswith('— the weights alone do not fit: set generation.memory_profile = "auto" (or a lighter one)')
    assert marked(d, "gpu cuda:1") == [
        "✗ gpu cuda:1: no such GPU here (visible: cuda:0) — fix workers.devices, or CUDA_VISIBLE_DEVICES"
    ]


def test_a_missing_model_file(tmp_path: Path, real_models: Path) -> None:
    models = models_copy(real_models, tmp_path / "models", without=(TEXT,))
    d = diagnose(wan_config(tmp_path, models), probe())
    assert d.exit_status == 1
    assert marked(d, "generation.text_encoder") == [
        f"✗ generation.text_encoder: {models / 'text_encoders'} holds no file for it — put the UMT5-XXL text "
        "encoder (e.g. umt5_xxl_fp8_e4m3fn_scaled.safetensors) there, or set generation.text_encoder"
    ]
    assert marked(d, "generation.transformer")[0].startswith("✓")


def test_a_truncated_model_file(tmp_path: Path, real_models: Path) -> None:
    models = models_copy(real_models, tmp_path / "models", without=(VAE,))
    vae = write_sparse_safetensors(models / VAE, {k: ("F16", s) for k, s in wan_vae_original_shapes().items()})
    whole = vae.stat().st_size
    with vae.open("r+b") as fh:
        fh.truncate(whole - 1_000_000)
    d = diagnose(wan_config(tmp_path, models), probe())
    assert d.exit_status == 1
    (line,) = marked(d, "generation.vae")
    assert line.startswith(f"✗ generation.vae: {vae} is truncated (a download cut short?)")
    assert line.endswith("— download the file again (compare its size with the one published)")


def test_a_vae_where_an_expert_should_be(tmp_path: Path, real_models: Path) -> None:
    path = wan_config(tmp_path, real_models, generation=f'transformer = "{real_models / VAE}"')
    d = diagnose(path, probe())
    assert d.exit_status == 1
    assert marked(d, "generation.transformer") == [
        f"✗ generation.transformer: {real_models / VAE} is a VAE; generation.transformer needs the Wan2.2 I2V A14B "
        "high-noise expert (e.g. wan2.2_i2v_high_noise_14B_fp8_scaled.safetensors) — point generation.transformer "
        "(or the file in generation.comfyui_models) at the Wan2.2 I2V A14B high-noise expert "
        "(e.g. wan2.2_i2v_high_noise_14B_fp8_scaled.safetensors)"
    ]


@pytest.mark.parametrize(
    ("body", "why"),
    [("[generation\n", "not valid TOML"), ("[generation]\nsteps = 'many'\n", "generation.steps: expected an integer")],
)
def test_a_config_that_cannot_be_loaded(tmp_path: Path, body: str, why: str) -> None:
    d = diagnose(config(tmp_path, body), probe())
    assert d.exit_status == 2
    (line,) = marked(d, "config")
    assert line.startswith("✗ config: ") and why in line
    assert line.endswith("— fix the file (config.example.toml lists every key)")
    assert marked(d, "ffmpeg")  # what does not need the configuration is still checked


def test_a_config_that_is_not_a_readable_file(tmp_path: Path) -> None:
    folder = tmp_path / "config.toml"
    folder.mkdir()
    d = diagnose(str(folder), probe())
    assert d.exit_status == 2
    assert marked(d, "config") == [
        f"✗ config: {folder}: cannot read: Is a directory — fix the file (config.example.toml lists every key)"
    ]


def preview(tmp_path: Path, extra: str = "", *, mode: int = 0o600) -> str:
    return config(tmp_path, f'[generation]\nbackend = "preview"\n[telegram]\nadmin_ids = [7]\n{extra}', mode=mode)


def test_a_token_file_others_can_read(tmp_path: Path) -> None:
    path = preview(tmp_path, f'token = "{TOKEN}"\n', mode=0o644)
    d = diagnose(path, probe(env={}))
    assert d.exit_status == 0  # a warning: the bot runs
    assert marked(d, "config file") == [
        f"! config file: {path} holds the telegram token and can be read by other users (mode 644) — run "
        f"`chmod 600 {path}`, or move the token to FRAMECHAIN_TELEGRAM_TOKEN in the environment"
    ]
    assert marked(d, "telegram token") == ["✓ telegram token: set (telegram.token in the configuration), well formed"]
    assert TOKEN not in "\n".join(d.lines())


def test_an_open_bot_is_a_warning(tmp_path: Path) -> None:
    d = diagnose(preview(tmp_path, "open = true\n"), probe())
    assert d.exit_status == 0
    assert marked(d, "telegram access") == [
        "! telegram access: OPEN, anyone can use your GPU (telegram.open = true) — set telegram.open = false and "
        "list who may use it (telegram.allowed_user_ids)"
    ]


def test_a_bot_nobody_may_use_yet(tmp_path: Path) -> None:
    d = diagnose(config(tmp_path, '[generation]\nbackend = "preview"\n'), probe())
    assert d.exit_status == 0
    assert marked(d, "telegram access") == [
        "! telegram access: CLOSED, nobody can use the bot yet — add your user id to telegram.admin_ids"
    ]


@pytest.mark.parametrize(
    ("token", "why"),
    [
        ("Bot MTIzNDU2Nzg5MDEyMzQ1Njc4.GaBcDe.abcdefghijklmnopqrstuvwxyz012345", 'starts with "Bot "'),
        ("'MTIzNDU2Nzg5MDEyMzQ1Njc4.GaBcDe.abcdefghijklmnopqrstuvwxyz012345'", "holds quotes or spaces"),
        ("not-a-token", "is not shaped like a bot token"),
    ],
)
def test_a_malformed_token_is_named_never_shown(tmp_path: Path, token: str, why: str) -> None:
    d = diagnose(preview(tmp_path), probe(env={"FRAMECHAIN_DISCORD_TOKEN": token, "FRAMECHAIN_TELEGRAM_TOKEN": TOKEN}))
    assert d.exit_status == 1
    (line,) = marked(d, "discord token")
    assert line.startswith(f"✗ discord token: FRAMECHAIN_DISCORD_TOKEN {why}")
    assert "Developer Portal" in line
    text = "\n".join(d.lines())
    assert token.strip("'").removeprefix("Bot ") not in text and TOKEN not in text


def test_no_token_at_all_cannot_run(tmp_path: Path) -> None:
    d = diagnose(preview(tmp_path), probe(env={}))
    assert d.exit_status == 1
    assert marked(d, "platforms")[0].startswith("✗ platforms: no chat platform has a token")


def test_no_ffmpeg(tmp_path: Path) -> None:
    d = diagnose(preview(tmp_path), probe(ffmpeg=Ffmpeg(None, "No ffmpeg exe could be found")))
    assert d.exit_status == 1
    assert marked(d, "ffmpeg") == [
        "✗ ffmpeg: no usable ffmpeg (No ffmpeg exe could be found) — run `pip install imageio-ffmpeg` (its wheel "
        "carries ffmpeg), or install ffmpeg and set IMAGEIO_FFMPEG_EXE"
    ]


def test_missing_packages_and_a_full_disk(tmp_path: Path, real_models: Path) -> None:
    d = diagnose(wan_config(tmp_path, real_models), probe(missing=("diffusers",), disk=100e6))
    assert d.exit_status == 1
    assert marked(d, "gpu packages") == [
        "✗ gpu packages: diffusers is missing — run `pip install -e '.[gpu]' (make gpu)` in framechain's virtual "
        "environment"
    ]
    assert marked(d, "disk")[0].startswith(f"✗ disk: 0.1 GB free in {tmp_path / 'data'}; new segments are refused")


def test_no_torch_on_a_wan_box(tmp_path: Path, real_models: Path) -> None:
    no_torch = Probe(**{**probe().__dict__, "cuda": lambda: Cuda()})
    d = diagnose(wan_config(tmp_path, real_models), no_torch)
    assert d.exit_status == 1
    assert marked(d, "torch") == ["✗ torch: not installed — run `pip install -e '.[gpu]'` (make gpu) for CUDA torch"]


def test_a_hub_model_not_downloaded_is_a_warning(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)  # the tests' own setting
    path = config(tmp_path, "[telegram]\nadmin_ids = [7]\n")
    d = diagnose(path, probe(ram=200, gpus=(Gpu(0, "NVIDIA H100 80GB HBM3", 79 * GIB, 80 * GIB),)))
    assert d.exit_status == 0, [line for line in d.lines() if line.startswith("✗")]
    assert "full (auto) needs" in marked(d, "gpu auto")[0]
    (model,) = marked(d, "generation.model")
    assert model.startswith("! generation.model: Wan-AI/Wan2.2-I2V-A14B-Diffusers is not downloaded yet")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert diagnose(path, probe(ram=200)).exit_status == 1


@pytest.fixture
async def standin() -> AsyncIterator[ComfyStandIn]:
    server = ComfyStandIn()
    await server.start()
    yield server
    await server.stop()


async def test_comfyui_servers_reachable_or_not(tmp_path: Path, standin: ComfyStandIn) -> None:
    dead = ComfyStandIn()
    dead_url = await dead.start()
    await dead.stop()
    body = (
        f'[generation]\nbackend = "comfyui"\n[comfyui]\nurls = ["{standin.url}", "{dead_url}"]\nconnect_timeout = 2\n'
        "[telegram]\nadmin_ids = [7]\n"
    )
    # the doctor runs its own event loop: keep it off the stand-in's
    d = await asyncio.to_thread(diagnose, config(tmp_path, body), probe())
    assert d.exit_status == 1
    assert marked(d, f"comfyui {standin.url}") == [
        f"✓ comfyui {standin.url}: ComfyUI 0.3.60 on cuda:0 NVIDIA GeForce RTX 4090 : cudaMallocAsync, "
        "with every node and model file the graph needs"
    ]
    (line,) = marked(d, f"comfyui {dead_url}")
    assert line.startswith(f"✗ comfyui {dead_url}: not reachable: ") and "fix comfyui.urls" in line
    assert not marked(d, "gpu auto") and not marked(d, "gpu packages")  # ComfyUI has the GPU


def test_the_command(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FRAMECHAIN_")}
    env |= {"PYTHONPATH": str(ROOT), "FRAMECHAIN_TELEGRAM_TOKEN": TOKEN}
    run = [sys.executable, "-m", "bot.cli", "doctor", "--config"]
    result = subprocess.run([*run, preview(tmp_path)], capture_output=True, text=True, timeout=60, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "✓ ffmpeg: ffmpeg version" in result.stdout  # the real imageio-ffmpeg binary
    assert result.stdout.rstrip().endswith("framechain can run.")
    assert TOKEN not in result.stdout
    (tmp_path / "config.toml").write_text("[generation\n")
    result = subprocess.run([*run, str(tmp_path / "config.toml")], capture_output=True, text=True, timeout=60, env=env)
    assert result.returncode == 2
    assert "✗ config:" in result.stdout and "1 problem to fix before framechain can run." in result.stdout


def test_the_real_cuda_query_without_a_gpu() -> None:
    """On this CPU-only machine torch is a CPU build: the query says so instead of failing."""
    from bot.doctor.probe import query_cuda

    cuda = query_cuda()
    if shutil.which("nvidia-smi") is None:
        assert cuda.torch_version is not None and cuda.gpus == ()


def test_the_doctor_imports_torch_only_for_the_cuda_query() -> None:
    probe = (
        "import sys, bot.cli, bot.doctor, bot.doctor.model, bot.doctor.machine, bot.doctor.chat\n"
        "print(','.join(m for m in ('torch', 'diffusers', 'transformers') if m in sys.modules) or 'none')"
    )
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, env=env)
    assert result.stdout.strip() == "none", result.stderr


def test_running_leaves_the_gpu_alone(tmp_path: Path, real_models: Path) -> None:
    """As a container's health check the bot's own workers hold the card and the RAM: --running
    neither queries CUDA nor compares memory, and still checks the rest."""

    def no_cuda() -> Cuda:
        raise AssertionError("the GPU was queried")

    busy = Probe(**{**probe(ram=1).__dict__, "cuda": no_cuda})
    d = diagnose(wan_config(tmp_path, real_models), busy, running=True)
    assert d.exit_status == 0, d.lines()
    assert marked(d, "gpu and ram") == ["✓ gpu and ram: not checked while the bot runs (its workers hold them)"]
    assert not marked(d, "ram") and marked(d, "generation.transformer")[0].startswith("✓")


def test_a_diffusers_folder_with_a_shard_missing(tmp_path: Path) -> None:
    folder = tmp_path / "Wan2.2-I2V-A14B-Diffusers"
    small = {"w": ("F16", (4, 4))}
    for part in ("transformer", "transformer_2", "text_encoder", "vae"):
        write_sparse_safetensors(folder / part / "model-00001-of-00002.safetensors", small)
        write_sparse_safetensors(folder / part / "model-00002-of-00002.safetensors", small)
    (folder / "tokenizer").mkdir()
    (folder / "tokenizer" / "spiece.model").write_bytes(b"x")
    index = '{"weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}'
    (folder / "transformer" / "model.safetensors.index.json").write_text(index)
    path = config(tmp_path, f'[generation]\nmodel = "{folder}"\n[telegram]\nadmin_ids = [7]\n')
    d = diagnose(path, probe(ram=200))
    assert d.exit_status == 0, [line for line in d.lines() if line.startswith("✗")]
    assert marked(d, "generation.model") == [
        f"✓ generation.model: {folder} gives transformer, transformer_2, vae, text_encoder, tokenizer"
    ]
    assert marked(d, "generation.model vae/")[0].startswith("✓ generation.model vae/: 2 files")
    (folder / "transformer" / "model-00002-of-00002.safetensors").unlink()
    d = diagnose(path, probe(ram=200))
    assert d.exit_status == 1
    assert marked(d, "generation.model transformer/") == [
        f"✗ generation.model transformer/: {folder / 'transformer'} lacks model-00002-of-00002.safetensors "
        "(an interrupted download?) — download them again"
    ]


def test_a_second_card_not_in_use_is_named(tmp_path: Path, real_models: Path) -> None:
    cards = (RTX_4090, Gpu(1, "NVIDIA RTX A6000", 47 * GIB, 48 * GIB))
    d = diagnose(wan_config(tmp_path, real_models), probe(gpus=cards))
    assert d.exit_status == 0
    assert marked(d, "gpu cuda:1") == [
        '✓ gpu cuda:1: NVIDIA RTX A6000, 47.0 GiB free of 48.0 GiB; unused: add "cuda:1" to workers.devices to '
        "render on it too"
    ]


def test_a_data_dir_that_cannot_be_used(tmp_path: Path) -> None:
    (tmp_path / "data").write_text("not a folder")
    d = diagnose(preview(tmp_path), probe())
    assert d.exit_status == 1
    (line,) = marked(d, "disk")
    assert line.startswith(f"✗ disk: the data folder {tmp_path / 'data'} cannot be created")
    assert line.endswith("— make it a writable folder of the user framechain runs as")


def test_no_token_points_to_the_web_chat_too(tmp_path: Path) -> None:
    d = diagnose(preview(tmp_path), probe(env={}))
    assert '[web] listen = "127.0.0.1:8765" for the web chat' in marked(d, "platforms")[0]


def test_the_web_chat_says_where_and_for_whom(tmp_path: Path) -> None:
    d = diagnose(preview(tmp_path, '[web]\nlisten = "127.0.0.1:8765"\n'), probe(env={}))
    assert d.exit_status == 0
    assert marked(d, "web chat") == ["✓ web chat: http://127.0.0.1:8765/ for the local user only (no tokens, loopback)"]
