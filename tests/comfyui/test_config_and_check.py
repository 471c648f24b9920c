"""The [comfyui] configuration (slots per server, mixing with local devices, errors) and
``framechain check`` against stand-in servers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.cli import main
from shared.config import ConfigError, load_config
from tests.comfyui.helpers import user_workflow
from tests.comfyui_standin import ComfyStandIn


def config_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "framechain.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_the_three_lines_of_the_readme_give_one_slot_per_server(tmp_path: Path) -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")
    section = readme.split("### Already running ComfyUI?", 1)[1]
    three_lines = section.split("```toml\n", 1)[1].split("```", 1)[0]
    assert len(three_lines.splitlines()) == 3
    config = load_config(config_file(tmp_path, three_lines), env={})
    assert config.worker_slots == ("comfyui:0",)
    assert config.comfyui.server_list[0].url == "http://127.0.0.1:8188"
    two = three_lines.replace('["http://127.0.0.1:8188"]', '["http://gpu1:8188", "https://gpu2.example/comfy"]')
    config = load_config(config_file(tmp_path, two), env={})
    assert config.worker_slots == ("comfyui:0", "comfyui:1")


def test_servers_serve_beside_local_devices_with_their_own_headers(tmp_path: Path) -> None:
    text = (
        '[generation]\nbackend = "preview"\n[workers]\ndevices = ["cpu:0"]\n'
        '[comfyui]\nurls = ["http://a:8188"]\nheaders = ["X-Team: video"]\n'
        '[[comfyui.servers]]\nurl = "https://b.example"\nheaders = ["Authorization: Bearer t"]\n'
    )
    config = load_config(config_file(tmp_path, text), env={})
    assert config.worker_slots == ("cpu:0", "comfyui:0", "comfyui:1")
    assert [s.headers for s in config.comfyui.server_list] == [
        ("X-Team: video",),
        ("X-Team: video", "Authorization: Bearer t"),
    ]


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ('[generation]\nbackend = "comfyui"\n', "comfyui.urls"),
        ('[comfyui]\nurls = ["gpu1:8188"]\n', "comfyui.urls"),
        ('[comfyui]\nurls = ["http://a", "http://a/"]\n', "comfyui.urls"),
        ('[comfyui]\nheaders = ["no colon"]\nurls = ["http://a"]\n', "comfyui.headers"),
        ("[comfyui]\njob_timeout = 0\n", "comfyui.job_timeout"),
        ('[comfyui]\nworkflow = "w.json"\n[comfyui.mapping]\nimage = "1.image"\n', "comfyui.mapping.prompt"),
        ('[comfyui.mapping]\nseed = ["3"]\n', "comfyui.mapping.seed"),
        ('[comfyui.mapping]\nsteps_2 = ["3.steps"]\n', "comfyui.mapping.steps_2"),
    ],
)
def test_bad_comfyui_settings_name_the_key(tmp_path: Path, text: str, key: str) -> None:
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(config_file(tmp_path, text), env={})


def test_a_workflow_path_is_relative_to_the_config_file(tmp_path: Path) -> None:
    text = '[comfyui]\nworkflow = "flows/i2v_api.json"\n'
    text += '[comfyui.mapping]\nimage = "1.image"\nprompt = "2.text"\noutput = "9"\n'
    config = load_config(config_file(tmp_path, text), env={})
    assert config.comfyui.workflow == tmp_path / "flows" / "i2v_api.json"


@pytest.fixture
async def standin() -> AsyncIterator[ComfyStandIn]:
    server = ComfyStandIn()
    await server.start()
    yield server
    await server.stop()


async def run_check(path: Path) -> int:
    import asyncio

    # `framechain check` runs its own event loop: keep it off the stand-in's.
    return await asyncio.to_thread(main, ["check", "--config", str(path)])


async def test_check_reports_each_server(
    tmp_path: Path, standin: ComfyStandIn, capsys: pytest.CaptureFixture[str]
) -> None:
    dead = ComfyStandIn()
    dead_url = await dead.start()
    await dead.stop()
    path = config_file(tmp_path, f'[generation]\nbackend = "comfyui"\n[comfyui]\nurls = ["{standin.url}"]\n')
    assert await run_check(path) == 0
    out = capsys.readouterr().out
    assert "workers:    comfyui:0" in out
    assert f"{standin.url}: ComfyUI 0.3.60 on cuda:0 NVIDIA GeForce RTX 4090" in out
    assert "WanImageToVideo" in out and "KSamplerAdvanced" in out
    assert "wan2.2_i2v_high_noise_14B_fp8_scaled.safetensors" in out and "wan_2.1_vae.safetensors" in out
    assert "everything the graph needs is there" in out

    standin.remove_model("CLIPLoader", "clip_name", "umt5_xxl_fp8_e4m3fn_scaled.safetensors")
    path.write_text(f'[generation]\nbackend = "comfyui"\n[comfyui]\nurls = ["{standin.url}", "{dead_url}"]\n')
    assert await run_check(path) == 1
    out = capsys.readouterr().out
    assert (
        "MISSING: node 2 (CLIPLoader): clip_name 'umt5_xxl_fp8_e4m3fn_scaled.safetensors' is not on the server" in out
    )
    assert f"{dead_url}: NOT REACHABLE" in out


async def test_check_a_mapped_workflow(
    tmp_path: Path, standin: ComfyStandIn, capsys: pytest.CaptureFixture[str]
) -> None:
    workflow, _ = user_workflow(tmp_path)
    text = (
        f'[generation]\nbackend = "comfyui"\n[comfyui]\nurls = ["{standin.url}"]\nworkflow = "{workflow.name}"\n'
        '[comfyui.mapping]\nimage = "1.image"\nprompt = "8.text"\nsteps = ["11.steps", "12.steps"]\noutput = "14"\n'
    )
    del standin.object_info["SaveLatent"]
    assert await run_check(config_file(tmp_path, text)) == 1
    assert "MISSING: node 15 (SaveLatent): the server has no node class 'SaveLatent'" in capsys.readouterr().out
