"""``framechain check`` for ComfyUI servers: reachable, version, the graph's nodes and model files.

Imports neither torch nor numpy, so the bot's CLI can call it.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass

from shared.config import Config
from worker.comfyui.client import ComfyClient, parse_headers
from worker.comfyui.errors import ServerUnavailable
from worker.comfyui.graph import (
    PLACEHOLDER_IMAGE,
    JobValues,
    MappingError,
    Prompt,
    check_mapping,
    class_types,
    load_workflow,
    mapped_graph,
    model_files,
    reference_graph,
)
from worker.comfyui.object_info import check_graph, combo_choices, image_inputs, input_specs, is_link
from worker.errors import GenerationError


@dataclass(frozen=True)
class ServerReport:
    url: str
    reachable: bool
    version: str = ""
    gpu: str = ""
    #: What the graph needs from the server, and what of it is missing.
    nodes: tuple[str, ...] = ()
    models: tuple[str, ...] = ()
    problems: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.reachable and not self.problems

    def lines(self) -> list[str]:
        if not self.reachable:
            return [f"  comfyui:    {self.url}: NOT REACHABLE — {self.problems[0] if self.problems else ''}"]
        head = f"  comfyui:    {self.url}: ComfyUI {self.version}" + (f" on {self.gpu}" if self.gpu else "")
        out = [
            head,
            f"              nodes:  {', '.join(self.nodes)}",
            f"              models: {', '.join(self.models)}",
        ]
        out += [f"              MISSING: {p}" for p in self.problems] or [
            "              everything the graph needs is there"
        ]
        return out


def _sample_prompt(config: Config) -> Prompt:
    job = JobValues(
        image=PLACEHOLDER_IMAGE, prompt="check", negative_prompt="", width=640, height=640,
        frames=81, steps=20, guidance=3.5, guidance_2=3.5, seed=0,
    )  # fmt: skip
    c = config.comfyui
    if c.workflow is not None:
        workflow = load_workflow(c.workflow)
        problems = check_mapping(workflow, c.mapping)
        if problems:
            raise MappingError("; ".join(problems))
        return mapped_graph(workflow, c.mapping, job)
    models = model_files(c, config.generation)
    return reference_graph(job, models, shift=config.generation.shift, frames_output=c.frames_output)


async def _check_one(config: Config, url: str, headers: tuple[str, ...], prompt: Prompt) -> ServerReport:
    c = config.comfyui
    client = ComfyClient(
        url, client_id=uuid.uuid4().hex, headers=parse_headers(headers),
        connect_timeout=c.connect_timeout, request_timeout=c.request_timeout,
    )  # fmt: skip
    try:
        stats = await client.system_stats()
        info = await client.object_info()
    except (ServerUnavailable, GenerationError) as exc:
        return ServerReport(url=client.name, reachable=False, problems=(str(exc),))
    finally:
        await client.close()
    graph = prompt.graph
    skip = image_inputs(graph, info)
    models = []
    for node_id, node in graph.items():
        specs = input_specs(info, node["class_type"])
        for name, value in node["inputs"].items():
            kind, options, _ = specs.get(name, (None, {}, False))
            literal = (node_id, name) not in skip and not is_link(value) and isinstance(value, str)
            listed = combo_choices(kind, options) is not None or kind is None
            if literal and listed and name.endswith("_name"):
                models.append(value)
    devices = stats.get("devices") or [{}]
    return ServerReport(
        url=client.name,
        reachable=True,
        version=str((stats.get("system") or {}).get("comfyui_version", "unknown")),
        gpu=str(devices[0].get("name", "")) if devices else "",
        nodes=tuple(sorted(class_types(graph))),
        models=tuple(dict.fromkeys(models)),
        problems=tuple(check_graph(graph, info, skip_values=skip)),
    )


async def check_servers(config: Config) -> list[ServerReport]:
    """A report per configured server, checked concurrently."""
    prompt = _sample_prompt(config)
    servers = config.comfyui.server_list
    return list(await asyncio.gather(*(_check_one(config, s.url, s.headers, prompt) for s in servers)))


def check_lines(config: Config) -> tuple[bool, list[str]]:
    """For ``framechain check``: whether every server can run the graph, and what to print."""
    try:
        reports = asyncio.run(check_servers(config))
    except MappingError as exc:
        return False, [f"  comfyui:    {exc}"]
    lines = [line for report in reports for line in report.lines()]
    return all(r.ok for r in reports), lines
