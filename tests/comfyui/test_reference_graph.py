"""The reference graph: valid for ComfyUI's node definitions, the seed's numbers, the same graph as
Comfy-Org's own Wan2.2 14B I2V template (each accepted difference named), and a stand-in that
speaks as the recorded server did."""

from __future__ import annotations

import asyncio
import io
from collections import Counter
from typing import Any

import aiohttp
import numpy as np
from PIL import Image

from shared import params
from shared.config import ComfyUIConfig, GenerationConfig, LoraConfig
from tests.comfyui.helpers import TRACE
from tests.comfyui.template_graph import links, template_graph, values
from tests.comfyui_standin import ComfyStandIn, recorded_object_info
from worker.comfyui.graph import JobValues, model_files, reference_graph
from worker.comfyui.object_info import check_graph

INFO = recorded_object_info()


def seed_job(**changes: Any) -> JobValues:
    job: dict[str, Any] = dict(
        image="start.png", prompt="a lighthouse at dusk", negative_prompt=params.WAN_NEGATIVE_PROMPT,
        width=640, height=640, frames=81, steps=20, guidance=3.5, guidance_2=3.5, seed=0,
    )  # fmt: skip
    return JobValues(**(job | changes))


def our_graph(generation: GenerationConfig | None = None, **changes: Any) -> dict[str, Any]:
    generation = generation or GenerationConfig()
    models = model_files(ComfyUIConfig(), generation)
    return reference_graph(seed_job(**changes), models, shift=generation.shift).graph


def test_the_reference_graph_is_valid_for_the_recorded_node_definitions() -> None:
    skip = {("1", "image")}  # the uploaded start image
    assert check_graph(our_graph(), INFO, skip_values=skip) == []
    loras = (LoraConfig("/m/wan2.2_i2v_lightx2v_4steps_lora_v1_high_noise.safetensors", target="high"),)
    assert check_graph(our_graph(GenerationConfig(loras=loras)), INFO, skip_values=skip) == []
    # The check does catch what ComfyUI would refuse.
    broken = our_graph()
    broken["6"]["inputs"]["model"] = ["2", 0]  # a CLIP where a MODEL goes
    broken["11"]["inputs"]["sampler_name"] = "euler_a"
    del broken["10"]["inputs"]["vae"]
    problems = check_graph(broken, INFO, skip_values=skip)
    assert any("model needs MODEL, but node 2 output 0 is CLIP" in p for p in problems)
    assert any("sampler_name 'euler_a' is not on the server" in p for p in problems)
    assert any("required input 'vae' is not set" in p for p in problems)


def test_the_reference_graph_carries_the_seed_workflows_numbers() -> None:
    graph = our_graph()
    by_class = Counter(node["class_type"] for node in graph.values())
    assert by_class == {
        "LoadImage": 1, "CLIPLoader": 1, "UNETLoader": 2, "VAELoader": 1, "ModelSamplingSD3": 2,
        "CLIPTextEncode": 2, "WanImageToVideo": 1, "KSamplerAdvanced": 2, "VAEDecode": 1, "PreviewImage": 1,
    }  # fmt: skip
    v = values(graph)
    assert v[("CLIPLoader", "type")] == "wan"
    assert v[("UNETLoader:high", "unet_name")] == "wan2.2_i2v_high_noise_14B_fp8_scaled.safetensors"
    assert v[("UNETLoader:low", "unet_name")] == "wan2.2_i2v_low_noise_14B_fp8_scaled.safetensors"
    assert v[("VAELoader", "vae_name")] == "wan_2.1_vae.safetensors"
    assert v[("CLIPLoader", "clip_name")] == "umt5_xxl_fp8_e4m3fn_scaled.safetensors"
    for expert in ("high", "low"):
        assert v[(f"ModelSamplingSD3<-UNETLoader:{expert}", "shift")] == 8.0
    assert [v[("WanImageToVideo", k)] for k in ("width", "height", "length")] == [640, 640, 81]
    first, second = "KSamplerAdvanced:first", "KSamplerAdvanced:second"
    for sampler in (first, second):
        assert [v[(sampler, k)] for k in ("sampler_name", "scheduler", "steps", "cfg")] == ["euler", "simple", 20, 3.5]
    assert [v[(first, k)] for k in ("add_noise", "start_at_step", "end_at_step", "return_with_leftover_noise")] == [
        "enable", 0, 10, "enable"
    ]  # fmt: skip
    assert [v[(second, k)] for k in ("add_noise", "start_at_step", "end_at_step", "return_with_leftover_noise")] == [
        "disable", 10, 10000, "disable"
    ]  # fmt: skip
    assert v[("CLIPTextEncode:negative", "text")] == params.WAN_NEGATIVE_PROMPT


def test_the_reference_graph_is_the_graph_the_recorded_run_used() -> None:
    """Node for node and link for link the graph of the recorded run (less its extra SaveLatent)."""
    theirs = {k: v for k, v in TRACE["graph_api_format"].items() if v["class_type"] != "SaveLatent"}
    ours = our_graph(steps=4, width=32, height=32, frames=5)
    theirs["14"] = {"class_type": "PreviewImage", "inputs": {"images": theirs["14"]["inputs"]["images"]}}
    assert links(ours) == links(theirs)
    same = {k for k, value in values(ours).items() if values(theirs).get(k) == value}
    assert set(values(ours)) - same == {
        ("LoadImage", "image"), ("CLIPTextEncode:positive", "text"), ("CLIPTextEncode:negative", "text"),
        ("KSamplerAdvanced:first", "noise_seed"), ("KSamplerAdvanced:second", "noise_seed"),
    }  # fmt: skip


# What Comfy-Org's template does differently from the seed workflow, each for a reason.
ACCEPTED = {
    # The template's current revision uses shift 5; the seed workflow (and framechain) shift 8.
    ("ModelSamplingSD3<-UNETLoader:high", "shift"): (8.0, 5.0),
    ("ModelSamplingSD3<-UNETLoader:low", "shift"): (8.0, 5.0),
    # 10000 and "steps" both mean: to the last step.
    ("KSamplerAdvanced:second", "end_at_step"): (10000, 20),
    # Per segment: the seed drawn, the user's prompt, the uploaded start image.
    ("KSamplerAdvanced:first", "noise_seed"): (0, 264244520398999),
    ("CLIPTextEncode:positive", "text"): ("a lighthouse at dusk", None),
    ("LoadImage", "image"): ("start.png", "video_wan2_2_14B_i2v_input_image.jpg"),
}
#: The template ends in a lossy video (CreateVideo -> SaveVideo); framechain takes every frame
#: back losslessly as PNG (PreviewImage) and encodes the master, the hand-off frame and the join itself.
OUTPUT_NODES_OURS = {"PreviewImage"}
OUTPUT_NODES_THEIRS = {"CreateVideo", "SaveVideo"}


def _without_outputs(graph: dict[str, Any], drop: set[str]) -> tuple[Counter[str], set[Any]]:
    kinds = Counter(node["class_type"] for node in graph.values() if node["class_type"] not in drop)
    kept = {link for link in links(graph) if link[2].split(":")[0] not in drop and link[0] not in drop}
    return kinds, kept


def test_the_reference_graph_matches_comfy_orgs_template_node_by_node_and_link_by_link() -> None:
    theirs = template_graph(INFO)  # the LoRA ("turbo") switch off, as shipped
    ours = our_graph()
    our_kinds, our_links = _without_outputs(ours, OUTPUT_NODES_OURS)
    their_kinds, their_links = _without_outputs(theirs, OUTPUT_NODES_THEIRS)
    assert our_kinds == their_kinds
    assert our_links == their_links
    # Both hand the decoded frames to their output.
    assert ("VAEDecode", 0, "PreviewImage", "images") in links(ours)
    assert ("VAEDecode", 0, "CreateVideo", "images") in links(theirs)
    ours_v, theirs_v = values(ours), values(theirs)
    differences = {
        key: (ours_v.get(key), theirs_v.get(key))
        for key in set(ours_v) | set(theirs_v)
        if ours_v.get(key) != theirs_v.get(key) and key[0].split(":")[0] not in OUTPUT_NODES_THEIRS
    }
    shift_high = differences[("ModelSamplingSD3<-UNETLoader:high", "shift")]
    assert round(shift_high[1], 6) == 5.0  # stored as 5.000000000000001
    normalised = {k: (a, round(b, 6) if isinstance(b, float) else b) for k, (a, b) in differences.items()}
    positive = ("CLIPTextEncode:positive", "text")
    assert normalised.pop(positive)[1].startswith("The white dragon warrior")
    assert normalised == {k: v for k, v in ACCEPTED.items() if k != positive}


def test_with_loras_it_matches_the_templates_turbo_path() -> None:
    """The template's LoRA switch on: LoraLoaderModelOnly between each expert and its shift, 4
    steps at CFG 1 split 2 + 2, which is what [[generation.loras]] with lora_steps/lora_guidance gives."""
    theirs = template_graph(INFO, enable_turbo_mode=True)
    loras = (
        LoraConfig("/loras/wan2.2_i2v_lightx2v_4steps_lora_v1_high_noise.safetensors", target="high"),
        LoraConfig("/loras/wan2.2_i2v_lightx2v_4steps_lora_v1_low_noise.safetensors", target="low"),
    )
    generation = GenerationConfig(loras=loras)
    cfg_high, cfg_low = generation.sampling_guidance
    ours = our_graph(generation, steps=generation.sampling_steps, guidance=cfg_high, guidance_2=cfg_low)
    our_kinds, our_links = _without_outputs(ours, OUTPUT_NODES_OURS)
    their_kinds, their_links = _without_outputs(theirs, OUTPUT_NODES_THEIRS)
    assert our_kinds == their_kinds and our_kinds["LoraLoaderModelOnly"] == 2
    assert our_links == their_links
    ours_v, theirs_v = values(ours), values(theirs)
    for key in (("KSamplerAdvanced:first", "end_at_step"), ("KSamplerAdvanced:second", "start_at_step")):
        assert ours_v[key] == theirs_v[key] == 2
    for sampler in ("KSamplerAdvanced:first", "KSamplerAdvanced:second"):
        assert ours_v[(sampler, "steps")] == theirs_v[(sampler, "steps")] == 4
        assert ours_v[(sampler, "cfg")] == theirs_v[(sampler, "cfg")] == 1.0
    for expert in ("high", "low"):
        key = (f"LoraLoaderModelOnly<-UNETLoader:{expert}", "lora_name")
        assert ours_v[key] == theirs_v[key]


async def test_the_standin_speaks_as_the_recorded_server_did() -> None:
    """Run the recorded graph on the stand-in: the same answers and the same messages, in order."""
    server = ComfyStandIn()
    url = await server.start()
    try:
        async with aiohttp.ClientSession() as http:
            async with http.ws_connect(f"{url}/ws?clientId=trace") as ws:
                buffer = io.BytesIO()
                Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(buffer, format="PNG")
                form = aiohttp.FormData()
                form.add_field("image", buffer.getvalue(), filename="peer_start_64.png")
                async with http.post(f"{url}/upload/image", data=form) as r:
                    assert await r.json() == TRACE["upload_response"]["json"]
                body = {"prompt": TRACE["graph_api_format"], "client_id": "trace"}
                async with http.post(f"{url}/prompt", json=body) as r:
                    answer = await r.json()
                assert set(answer) == set(TRACE["prompt_response"]["json"]) and answer["node_errors"] == {}
                got: list[dict[str, Any]] = []
                async with asyncio.timeout(10):
                    while not got or got[-1]["type"] != "executing" or got[-1]["data"]["node"] is not None:
                        message = await ws.receive()
                        if message.type is aiohttp.WSMsgType.TEXT:
                            got.append(message.json())
            async with http.get(f"{url}/history/{answer['prompt_id']}") as r:
                history = (await r.json())[answer["prompt_id"]]
    finally:
        await server.stop()
    recorded = TRACE["messages"]
    # As many messages of each kind (the order of independent nodes may differ), each with the same fields.
    assert Counter(m["type"] for m in got) == Counter(m["type"] for m in recorded)
    for kind in {m["type"] for m in recorded}:
        ours = next(m for m in got if m["type"] == kind)
        theirs = next(m for m in recorded if m["type"] == kind)
        assert set(ours["data"]) == set(theirs["data"]), kind
    # Framing: execution_start, execution_cached first; execution_success, status, executing null last.
    kinds = [m["type"] for m in got]
    assert kinds[0] == "status" and kinds.index("execution_start") < kinds.index("execution_cached")
    assert kinds[-3:] == ["execution_success", "status", "executing"] == [m["type"] for m in recorded[-3:]]
    # Each node: executing, then (samplers) progress per step, then (outputs) executed.
    for node_id, node in TRACE["graph_api_format"].items():
        mine = [m["type"] for m in got if m["type"] != "progress_state" and m["data"].get("node") == node_id]
        recorded_node = [
            m["type"] for m in recorded if m["type"] != "progress_state" and m["data"].get("node") == node_id
        ]
        assert mine == recorded_node, (node_id, node["class_type"])
    recorded_history = next(iter(TRACE["history"].values()))
    assert set(history) == set(recorded_history)
    assert set(history["status"]) == set(recorded_history["status"])
    assert [m[0] for m in history["status"]["messages"]] == [m[0] for m in recorded_history["status"]["messages"]]
    assert len(history["outputs"]["14"]["images"]) == 5
