"""The ComfyUI backend against the ComfyUI stand-in: frames, progress, cancel, every fault."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest

from shared.protocol import FailureKind
from tests.comfyui.helpers import generate, open_backend, options, start_picture, user_workflow
from tests.comfyui_standin import ComfyStandIn, expected_frames
from worker.comfyui.errors import PromptRefused, ServerLost, ServerUnavailable
from worker.errors import BadInput, Cancelled, GenerationError, OutOfMemory
from worker.images import prepare_start_image

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def standin() -> AsyncIterator[ComfyStandIn]:
    server = ComfyStandIn(step_delay=0.01)
    await server.start()
    yield server
    await server.stop()


def expected(seed: int = 7, size: int = 64, frames: int = 5) -> np.ndarray:
    return expected_frames(prepare_start_image(start_picture(), size, size), size, size, frames, seed)


async def test_renders_every_frame_losslessly_and_reports_each_step(standin: ComfyStandIn) -> None:
    backend = await open_backend(options(standin.url))
    try:
        assert backend.describe()["comfyui_version"] == "0.3.60"
        steps: list[tuple[int, int]] = []
        result = await generate(backend, start_picture(), on_step=lambda s, t: steps.append((s, t)) and False)
    finally:
        backend.close()
    assert result.seed == 7
    assert np.array_equal(result.frames, expected())  # PNG frames: bit-exact
    assert [s for s in steps if s[0] > 0] == [(1, 4), (2, 4), (3, 4), (4, 4)]
    [body] = standin.received
    graph = body["prompt"]
    # The uploaded start image is exactly the prepared one, at the job's size.
    uploaded = standin.uploads[graph["1"]["inputs"]["image"]]
    assert uploaded.startswith(b"\x89PNG")
    assert graph["11"]["inputs"]["noise_seed"] == graph["12"]["inputs"]["noise_seed"] == 7
    assert (graph["11"]["inputs"]["cfg"], graph["12"]["inputs"]["cfg"]) == (3.5, 3.0)
    assert (graph["10"]["inputs"]["width"], graph["10"]["inputs"]["length"]) == (64, 5)
    # It listened on its websocket before submitting, under the client id it submitted with.
    assert body["client_id"] in standin.sent and standin.sent[body["client_id"]][0]["type"] == "status"


async def test_a_dropped_websocket_falls_back_to_polling_history(standin: ComfyStandIn) -> None:
    standin.faults.drop_ws_at_step = 2
    backend = await open_backend(options(standin.url))
    try:
        result = await generate(backend, start_picture())
    finally:
        backend.close()
    assert standin.faults.refuse_websockets  # no websocket for the rest of the job
    assert np.array_equal(result.frames, expected())


async def test_out_of_memory_on_the_server_is_kind_oom(standin: ComfyStandIn) -> None:
    standin.faults.oom_at_step = 2
    backend = await open_backend(options(standin.url))
    try:
        with pytest.raises(OutOfMemory) as caught:
            await generate(backend, start_picture())
    finally:
        backend.close()
    assert caught.value.kind is FailureKind.OOM
    assert "node 11 (KSamplerAdvanced)" in str(caught.value) and "OutOfMemoryError" in str(caught.value)


async def test_a_prompt_refused_with_node_errors_names_the_node_and_the_file(standin: ComfyStandIn) -> None:
    backend = await open_backend(options(standin.url))
    # Someone removes a model file from the server after the worker started.
    standin.remove_model("UNETLoader", "unet_name", "wan2.2_i2v_low_noise_14B_fp8_scaled.safetensors")
    try:
        with pytest.raises(PromptRefused) as caught:
            await generate(backend, start_picture())
    finally:
        backend.close()
    message = str(caught.value)
    assert "Prompt outputs failed validation" in message
    assert "node 4 (UNETLoader)" in message and "wan2.2_i2v_low_noise_14B_fp8_scaled" in message
    assert caught.value.kind is FailureKind.INTERNAL


async def test_cancel_while_waiting_in_the_server_queue_removes_it_from_the_queue(standin: ComfyStandIn) -> None:
    hold = await standin.hold_foreign_job()  # someone else's job is running there
    backend = await open_backend(options(standin.url))
    asked = asyncio.Event()

    def on_step(step: int, total: int) -> bool:
        if standin.pending:  # ours is waiting behind the other job
            asked.set()
            return True
        return False

    try:
        with pytest.raises(Cancelled, match="waiting in the ComfyUI queue"):
            await generate(backend, start_picture(), on_step=on_step)
    finally:
        backend.close()
        hold.set()
    assert asked.is_set() and len(standin.deletes) == 1 and not standin.pending
    assert standin.interrupts == []  # the other job was left alone


async def test_cancel_while_running_interrupts_our_prompt(standin: ComfyStandIn) -> None:
    standin.step_delay = 0.05
    backend = await open_backend(options(standin.url))
    try:
        with pytest.raises(Cancelled, match="on the ComfyUI server"):
            await generate(backend, start_picture(), steps=20, on_step=lambda step, total: step >= 2)
    finally:
        backend.close()
    [prompt_id] = standin.history
    assert standin.interrupts == [prompt_id]
    status = standin.history[prompt_id]["status"]
    assert status["status_str"] == "error" and status["messages"][-1][0] == "execution_interrupted"


async def test_a_server_that_dies_mid_job_is_lost(standin: ComfyStandIn) -> None:
    standin.faults.die_at_step = 2
    backend = await open_backend(options(standin.url))
    try:
        with pytest.raises(ServerLost):
            await generate(backend, start_picture())
    finally:
        backend.close()


async def test_a_server_down_at_start_is_unavailable() -> None:
    server = ComfyStandIn()
    url = await server.start()
    await server.stop()
    with pytest.raises(ServerUnavailable, match="not reachable"):
        await open_backend(options(url))


async def test_a_server_without_a_node_or_a_model_file_is_refused_at_start(standin: ComfyStandIn) -> None:
    del standin.object_info["WanImageToVideo"]
    standin.remove_model("VAELoader", "vae_name", "wan_2.1_vae.safetensors")
    with pytest.raises(BadInput) as caught:
        await open_backend(options(standin.url))
    message = str(caught.value)
    assert "no node class 'WanImageToVideo'" in message
    assert "vae_name 'wan_2.1_vae.safetensors' is not on the server" in message
    assert standin.received == []  # nothing was queued


async def test_a_user_workflow_with_a_mapping(standin: ComfyStandIn, tmp_path: Path) -> None:
    path, mapping = user_workflow(tmp_path)
    backend = await open_backend(options(standin.url, workflow=path, mapping=mapping))
    try:
        assert backend.describe()["graph"] == "workflow (mapped)"
        steps: list[int] = []
        result = await generate(backend, start_picture(), on_step=lambda s, t: steps.append(s) and False)
    finally:
        backend.close()
    assert np.array_equal(result.frames, expected())
    assert [s for s in steps if s] == [1, 2, 3, 4]
    graph = standin.received[0]["prompt"]
    assert graph["8"]["inputs"]["text"] == "a fox in the snow" and graph["9"]["inputs"]["text"] == "blurry"
    assert graph["1"]["inputs"]["image"] != "peer_start_64.png"
    assert (graph["10"]["inputs"]["width"], graph["10"]["inputs"]["length"]) == (64, 5)
    assert (graph["11"]["inputs"]["cfg"], graph["12"]["inputs"]["cfg"]) == (3.5, 3.0)
    assert graph["15"]["class_type"] == "SaveLatent"  # the rest of the workflow is untouched


async def test_a_user_workflow_with_a_missing_node_is_refused_at_start(standin: ComfyStandIn, tmp_path: Path) -> None:
    path, mapping = user_workflow(tmp_path)
    workflow = json.loads(path.read_text())
    workflow["16"] = {"class_type": "VHS_VideoCombine", "inputs": {"images": ["13", 0], "frame_rate": 16}}
    path.write_text(json.dumps(workflow))
    with pytest.raises(BadInput, match=r"node 16 .*no node class 'VHS_VideoCombine'"):
        await open_backend(options(standin.url, workflow=path, mapping=mapping))


def test_a_mapping_that_does_not_fit_the_workflow_is_refused(tmp_path: Path) -> None:
    path, mapping = user_workflow(tmp_path)
    broken = type(mapping)(**{**mapping.__dict__, "steps": ("11.step_count",), "output": "99"})
    with pytest.raises(BadInput) as caught:
        options("http://127.0.0.1:9", workflow=path, mapping=broken)
    assert "node 11 (KSamplerAdvanced) has no input 'step_count'" in str(caught.value)
    assert "no node 99" in str(caught.value)


async def test_headers_reach_the_server(standin: ComfyStandIn) -> None:
    backend = await open_backend(options(standin.url, headers=("Authorization: Bearer s3cret",)))
    try:
        await generate(backend, start_picture())
    finally:
        backend.close()
    assert standin.headers_seen and all(h.get("Authorization") == "Bearer s3cret" for h in standin.headers_seen)


async def test_an_interrupt_by_someone_else_fails_the_job(standin: ComfyStandIn) -> None:
    standin.step_delay = 0.05
    backend = await open_backend(options(standin.url))

    async def press_cancel_in_the_comfyui_page() -> None:
        while standin.running is None:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.1)
        standin._interrupt = True

    try:
        pressing = asyncio.create_task(press_cancel_in_the_comfyui_page())
        with pytest.raises(GenerationError, match="interrupted"):
            await generate(backend, start_picture(), steps=20)
        await pressing
    finally:
        backend.close()


async def test_an_end_keyframe_is_refused_before_anything_reaches_the_server(standin: ComfyStandIn) -> None:
    backend = await open_backend(options(standin.url))
    try:
        with pytest.raises(BadInput, match="does not take end keyframes"):
            await asyncio.to_thread(
                backend.generate, image=start_picture(), prompt="a fox", negative_prompt="", width=64, height=64,
                frames=5, steps=4, guidance=3.5, guidance_2=3.0, seed=7, end_image=start_picture(),
            )  # fmt: skip
    finally:
        backend.close()
    assert standin.received == [] and standin.uploads == {}
