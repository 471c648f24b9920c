"""Checks an API-format graph against a server's ``GET /object_info`` before anything is queued.

``object_info`` describes every installed node class: its inputs (``required`` and ``optional``,
each ``[TYPE, options]``, where TYPE is a type name such as ``"MODEL"`` or ``"INT"``, a list of
allowed values for a combo (the loaders list their model files this way), or ``"COMBO"`` with
``options["options"]`` in newer node definitions) and its ``output`` types. The check names each
problem the way a user can act on it: a missing node class, a missing input, a model file the
loader does not list, a link between mismatched types.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

ObjectInfo = Mapping[str, Any]

#: Literal input types (widgets); any other type name is a link type such as MODEL or LATENT.
WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}


def input_specs(info: ObjectInfo, class_type: str) -> dict[str, tuple[Any, dict[str, Any], bool]]:
    """name -> (type, options, required) of a node class's inputs."""
    node = info.get(class_type)
    if not isinstance(node, Mapping):
        return {}
    specs: dict[str, tuple[Any, dict[str, Any], bool]] = {}
    inputs = node.get("input", {})
    for section, required in (("required", True), ("optional", False)):
        for name, spec in (inputs.get(section) or {}).items():
            kind = spec[0] if isinstance(spec, (list, tuple)) and spec else spec
            options = spec[1] if isinstance(spec, (list, tuple)) and len(spec) > 1 and isinstance(spec[1], dict) else {}
            specs[name] = (kind, dict(options), required)
    return specs


def combo_choices(kind: Any, options: Mapping[str, Any]) -> list[Any] | None:
    """The allowed values of a combo input, or None when it is not a combo."""
    if isinstance(kind, list):
        return kind
    if kind == "COMBO":
        choices = options.get("options")
        return list(choices) if isinstance(choices, list) else None
    return None


def output_types(info: ObjectInfo, class_type: str) -> list[str]:
    node = info.get(class_type)
    outputs = node.get("output", []) if isinstance(node, Mapping) else []
    return [o if isinstance(o, str) else "COMBO" for o in outputs]


def is_link(value: Any) -> bool:
    return isinstance(value, list) and len(value) == 2 and isinstance(value[0], str) and isinstance(value[1], int)


def check_graph(
    graph: Mapping[str, Mapping[str, Any]], info: ObjectInfo, *, skip_values: Collection[tuple[str, str]] = ()
) -> list[str]:
    """Every problem found, one sentence each; empty when the server can run the graph.

    ``skip_values`` names (node, input) pairs whose value is filled in per job (the uploaded
    image), so only their presence is checked, not whether the server lists the value.
    """
    problems: list[str] = []
    for node_id, node in graph.items():
        class_type = str(node.get("class_type"))
        label = f"node {node_id} ({class_type})"
        if class_type not in info:
            problems.append(f"{label}: the server has no node class {class_type!r} (a missing custom node?)")
            continue
        specs = input_specs(info, class_type)
        inputs: Mapping[str, Any] = node.get("inputs", {})
        for name, (_, _, required) in specs.items():
            if required and name not in inputs:
                problems.append(f"{label}: required input {name!r} is not set")
        for name, value in inputs.items():
            if name not in specs:
                problems.append(f"{label}: the server's {class_type} has no input {name!r}")
                continue
            kind, options, _ = specs[name]
            if is_link(value):
                problems.extend(_check_link(graph, info, label, name, kind, value))
                continue
            if (node_id, name) in skip_values:
                continue
            choices = combo_choices(kind, options)
            if choices is not None:
                if value not in choices:
                    shown = ", ".join(map(str, choices[:8])) + (", ..." if len(choices) > 8 else "")
                    problems.append(f"{label}: {name} {value!r} is not on the server (it has: {shown or 'nothing'})")
            elif kind in ("INT", "FLOAT"):
                problems.extend(_check_number(label, name, kind, options, value))
            elif kind == "STRING" and not isinstance(value, str):
                problems.append(f"{label}: {name} must be a string, got {value!r}")
            elif kind == "BOOLEAN" and not isinstance(value, bool):
                problems.append(f"{label}: {name} must be true or false, got {value!r}")
            elif kind not in WIDGET_TYPES:
                problems.append(f"{label}: {name} takes a {kind} link, got the value {value!r}")
    return problems


def _check_link(
    graph: Mapping[str, Mapping[str, Any]], info: ObjectInfo, label: str, name: str, kind: Any, value: list[Any]
) -> list[str]:
    source_id, slot = value
    source = graph.get(source_id)
    if source is None:
        return [f"{label}: {name} links to node {source_id}, which is not in the graph"]
    outputs = output_types(info, str(source.get("class_type")))
    if str(source.get("class_type")) not in info:
        return []  # reported for that node already
    if not 0 <= slot < len(outputs):
        return [f"{label}: {name} links to output {slot} of node {source_id}, which has {len(outputs)}"]
    given = outputs[slot]
    wanted = "COMBO" if isinstance(kind, list) else kind
    if "*" not in (given, wanted) and given != wanted:
        return [f"{label}: {name} needs {wanted}, but node {source_id} output {slot} is {given}"]
    return []


def _check_number(label: str, name: str, kind: str, options: Mapping[str, Any], value: Any) -> list[str]:
    numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not numeric or (kind == "INT" and not isinstance(value, int)):
        return [f"{label}: {name} must be {'an integer' if kind == 'INT' else 'a number'}, got {value!r}"]
    low, high = options.get("min"), options.get("max")
    if low is not None and value < low:
        return [f"{label}: {name} {value} is below the minimum {low}"]
    if high is not None and value > high:
        return [f"{label}: {name} {value} is above the maximum {high}"]
    return []


def image_inputs(graph: Mapping[str, Mapping[str, Any]], info: ObjectInfo) -> set[tuple[str, str]]:
    """(node, input) pairs that take an uploaded image (combo inputs with ``image_upload``)."""
    found = set()
    for node_id, node in graph.items():
        for name, (_, options, _) in input_specs(info, str(node.get("class_type"))).items():
            if options.get("image_upload"):
                found.add((node_id, name))
    return found
