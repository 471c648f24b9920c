"""Comfy-Org's Wan2.2 14B I2V template (UI format, with a subgraph) turned into an API-format graph.

The template, as published on PyPI in ``comfyui-workflow-templates-json``, wraps the workflow in a
subgraph whose inputs are promoted widgets of the outer node, and routes values through UI
plumbing: ``Primitive*`` nodes, ``ComfySwitchNode`` (the "turbo" LoRA switch) and a
``ComfyMathExpression`` (length = duration x fps + 1). This module does what the ComfyUI frontend
does when it queues the template: fill each node's widgets by its inputs' order in
``object_info``, resolve the plumbing, and drop what the outputs do not reach.
"""

from __future__ import annotations

import importlib.resources
import json
import math
from collections.abc import Mapping
from typing import Any

from worker.comfyui.object_info import combo_choices, input_specs

TEMPLATE = "video_wan2_2_14B_i2v.json"
PLUMBING = {"PrimitiveInt", "PrimitiveFloat", "PrimitiveBoolean", "PrimitiveString", "ComfySwitchNode",
            "ComfyMathExpression"}  # fmt: skip
#: Widgets of nodes outside the recorded object_info, in the order the template stores them.
OTHER_WIDGETS = {"CreateVideo": ["fps"], "SaveVideo": ["filename_prefix", "format", "codec"]}
SUBGRAPH_INPUT = -10
SUBGRAPH_OUTPUT = -20


def load_template() -> dict[str, Any]:
    files = importlib.resources.files("comfyui_workflow_templates_json") / "templates" / TEMPLATE
    data: dict[str, Any] = json.loads(files.read_text(encoding="utf-8"))
    return data


def widget_names(info: Mapping[str, Any], class_type: str) -> list[str | None]:
    """The names of a node's widget values in order; None for the frontend's extra "control after
    generate" value that follows a seed."""
    if class_type in OTHER_WIDGETS:
        return list(OTHER_WIDGETS[class_type])
    names: list[str | None] = []
    for name, (kind, options, _) in input_specs(info, class_type).items():
        if combo_choices(kind, options) is not None or kind in ("INT", "FLOAT", "STRING", "BOOLEAN"):
            names.append(name)
            if options.get("control_after_generate"):
                names.append(None)
    return names


class _Flattener:
    def __init__(self, template: Mapping[str, Any], info: Mapping[str, Any], overrides: Mapping[str, Any]) -> None:
        self.info = info
        [self.subgraph] = template["definitions"]["subgraphs"]
        self.outer = {n["id"]: n for n in template["nodes"]}
        self.inner = {n["id"]: n for n in self.subgraph["nodes"]}
        self.inner_links = {link["id"]: link for link in self.subgraph["links"]}
        self.outer_links = {link[0]: link for link in template["links"]}  # [id, from, slot, to, slot, type]
        [instance] = [n for n in template["nodes"] if n["type"] == self.subgraph["id"]]
        self.instance = instance
        # Promoted widgets: the instance's widget values fill the subgraph inputs that are not linked.
        values = iter(instance["widgets_values"])
        linked = {i["name"]: i["link"] for i in instance.get("inputs", []) if i.get("link") is not None}
        self.subgraph_inputs: list[tuple[str, Any]] = []
        for item in self.subgraph["inputs"]:
            name = item["name"]
            if name in linked:
                link = self.outer_links[linked[name]]
                self.subgraph_inputs.append(("link", (str(link[1]), link[2])))
            else:
                value = overrides.get(item.get("label") or name, next(values))
                self.subgraph_inputs.append(("value", value))

    def widgets(self, node: Mapping[str, Any]) -> dict[str, Any]:
        values = node.get("widgets_values") or []
        names = widget_names(self.info, node["type"])
        return {name: value for name, value in zip(names, values, strict=False) if name is not None}

    def resolve(self, origin: int, slot: int) -> tuple[str, Any]:
        """A link's source as ("link", (node_id, slot)) to a real node, or ("value", literal)."""
        if origin == SUBGRAPH_INPUT:
            return self.subgraph_inputs[slot]
        node = self.inner[origin]
        kind = node["type"]
        if kind not in PLUMBING:
            return "link", (str(origin), slot)
        inputs = self.linked_inputs(node)
        if kind.startswith("Primitive"):
            return inputs.get("value") or ("value", node["widgets_values"][0])
        if kind == "ComfySwitchNode":
            switch = inputs.get("switch") or ("value", node["widgets_values"][0])
            return inputs["on_true" if switch[1] else "on_false"]
        if kind == "ComfyMathExpression":
            names = {key.split(".", 1)[1]: value[1] for key, value in inputs.items()}
            result = eval(node["widgets_values"][0], {"floor": math.floor, "__builtins__": {}}, names)
            return "value", [float(result), int(result), bool(result)][slot]
        raise AssertionError(f"unknown plumbing {kind}")

    def linked_inputs(self, node: Mapping[str, Any]) -> dict[str, tuple[str, Any]]:
        found = {}
        for item in node.get("inputs", []):
            if item.get("link") is not None:
                link = self.inner_links[item["link"]]
                found[item["name"]] = self.resolve(link["origin_id"], link["origin_slot"])
        return found

    def graph(self) -> dict[str, dict[str, Any]]:
        graph: dict[str, dict[str, Any]] = {}
        for node_id, node in self.inner.items():
            if node["type"] in PLUMBING:
                continue
            inputs: dict[str, Any] = self.widgets(node)
            for name, (kind, value) in self.linked_inputs(node).items():
                inputs[name] = list(value) if kind == "link" else value
            graph[str(node_id)] = {"class_type": node["type"], "inputs": inputs}
        [video] = [link for link in self.subgraph["links"] if link["target_id"] == SUBGRAPH_OUTPUT]
        for node in self.outer.values():
            if node["type"] in ("LoadImage", "SaveVideo"):
                inputs = self.widgets(node)
                if node["type"] == "SaveVideo":
                    inputs["video"] = [str(video["origin_id"]), video["origin_slot"]]
                graph[str(node["id"])] = {"class_type": node["type"], "inputs": inputs}
        return prune(graph, outputs=[k for k, v in graph.items() if v["class_type"] == "SaveVideo"])


def prune(graph: dict[str, dict[str, Any]], outputs: list[str]) -> dict[str, dict[str, Any]]:
    """Only the nodes the outputs depend on (what ComfyUI executes)."""
    keep: set[str] = set()

    def visit(node_id: str) -> None:
        if node_id in keep:
            return
        keep.add(node_id)
        for value in graph[node_id]["inputs"].values():
            if isinstance(value, list) and len(value) == 2 and isinstance(value[0], str):
                visit(value[0])

    for output in outputs:
        visit(output)
    return {k: v for k, v in graph.items() if k in keep}


def template_graph(info: Mapping[str, Any], **overrides: Any) -> dict[str, dict[str, Any]]:
    """The template as the frontend would queue it; ``overrides`` set the outer node's promoted
    widgets by label (e.g. ``enable_turbo_mode=True``)."""
    return _Flattener(load_template(), info, overrides).graph()


# --- comparing graphs node role by node role ----------------------------------------------------


def _source(graph: Mapping[str, Mapping[str, Any]], node_id: str, name: str) -> str:
    value = graph[node_id]["inputs"][name]
    return str(value[0])


def role(graph: Mapping[str, Mapping[str, Any]], node_id: str) -> str:
    """A name for a node by what it does in the graph, independent of node ids."""
    node = graph[node_id]
    kind = node["class_type"]
    inputs = node["inputs"]
    if kind == "UNETLoader":
        return "UNETLoader:" + ("high" if "high_noise" in inputs["unet_name"] else "low")
    if kind in ("ModelSamplingSD3", "LoraLoaderModelOnly"):
        return f"{kind}<-{role(graph, _source(graph, node_id, 'model'))}"
    if kind == "KSamplerAdvanced":
        return "KSamplerAdvanced:" + ("first" if inputs["add_noise"] == "enable" else "second")
    if kind == "CLIPTextEncode":
        for other in graph.values():
            if other["class_type"] == "WanImageToVideo":
                for side in ("positive", "negative"):
                    if other["inputs"][side][0] == node_id:
                        return f"CLIPTextEncode:{side}"
    return str(kind)


def links(graph: Mapping[str, Mapping[str, Any]]) -> set[tuple[str, int, str, str]]:
    """(source role, output slot, target role, input name) for every link."""
    found = set()
    for node_id, node in graph.items():
        for name, value in node["inputs"].items():
            if isinstance(value, list) and len(value) == 2 and isinstance(value[0], str):
                found.add((role(graph, value[0]), value[1], role(graph, node_id), name))
    return found


def values(graph: Mapping[str, Mapping[str, Any]]) -> dict[tuple[str, str], Any]:
    """(node role, input name) -> literal value."""
    found = {}
    for node_id, node in graph.items():
        for name, value in node["inputs"].items():
            if not (isinstance(value, list) and len(value) == 2 and isinstance(value[0], str)):
                found[(role(graph, node_id), name)] = value
    return found
