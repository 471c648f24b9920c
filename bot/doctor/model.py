"""The model source, file by file, from the headers alone (no weight is read, no torch): each of
the four files present, readable and whole, its tensor names and shapes those of its role
(worker.wan.detect, as the worker checks them before loading), the files fitting each other;
whatever comes from the diffusers ``model`` folder or hub id; LoRAs, the tokenizer, the attention
backend's package.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

from bot.doctor.report import Check, Mark, fail, ok, warn
from shared.config import GenerationConfig
from shared.memory_plan import COMFY_FP8, ModelSizes
from worker.errors import BadInput
from worker.model_check import ModelFileError, check_attention_backend, check_model_file
from worker.wan.detect import (
    WANTED,
    ExpertArchitecture,
    Role,
    TextEncoderArchitecture,
    VaeArchitecture,
    check_together,
    umt5_encoder,
    wan_expert,
    wan_vae,
)
from worker.wan.options import wan_options_from_config
from worker.wan.safetensors_header import read_header
from worker.wan.source_sizes import source_sizes
from worker.wan.sources import ROLES, find_in_comfyui_models

_FOLDERS = {"transformer": "diffusion_models", "transformer_2": "diffusion_models", "vae": "vae"}


def _gb(path: Path) -> str:
    try:
        return f"{path.stat().st_size / 1e9:.2f} GB"
    except OSError:
        return "size unknown"


def _fix_for(role: Role, message: str) -> str:
    if "truncated" in message or "corrupt" in message or "cannot be read" in message or "not a safetensors" in message:
        return "download the file again (compare its size with the one published)"
    return f"point generation.{role} (or the file in generation.comfyui_models) at {WANTED[role]}"


def _inspect(
    role: Role, path: Path
) -> tuple[Check, ExpertArchitecture | VaeArchitecture | TextEncoderArchitecture | None]:
    topic = f"generation.{role}"
    try:
        if role in ("transformer", "transformer_2"):
            expert = wan_expert(path, role)
            c = expert.config
            kind = "fp8_scaled" if expert.scaled_fp8 else "unscaled"
            heads = c["num_attention_heads"]
            width = heads * 128 if heads else "?"
            what = f"Wan2.2 I2V expert, {c['num_layers']} layers of width {width}, {kind}"
            return ok(topic, f"{path} ({what}, {_gb(path)})"), expert
        if role == "vae":
            vae = wan_vae(path)
            return ok(topic, f"{path} (Wan 2.1 VAE, base width {vae.config['base_dim']}, {_gb(path)})"), vae
        text = umt5_encoder(path)
        tokenizer = "carries its tokenizer" if text.has_spiece_model else "no tokenizer inside"
        return ok(topic, f"{path} (UMT5 encoder, width {text.config['d_model']}, {tokenizer}, {_gb(path)})"), text
    except BadInput as exc:
        message = str(exc).rstrip(".")
        return fail(topic, message, _fix_for(role, message)), None
    except ImportError as exc:
        return fail(topic, f"{path} needs the {exc.name or 'gguf'} package to be read", "pip install -e '.[gpu]'"), None


def _hub_snapshot(model: str) -> Path | None:
    """The newest downloaded snapshot of a hub id in the Hugging Face cache, or None."""
    cache = os.environ.get("HF_HUB_CACHE") or os.path.join(
        os.environ.get("HF_HOME") or os.path.join(os.path.expanduser("~"), ".cache", "huggingface"), "hub"
    )
    snapshots = Path(cache) / f"models--{model.replace('/', '--')}" / "snapshots"
    found = sorted(snapshots.iterdir(), key=lambda p: p.stat().st_mtime) if snapshots.is_dir() else []
    return found[-1] if found else None


def _missing_shards(folder: Path) -> list[str]:
    """The shards a sharded checkpoint's index names that are not there."""
    names: set[str] = set()
    for index in folder.glob("*.safetensors.index.json"):
        try:
            weight_map = json.loads(index.read_text(encoding="utf-8")).get("weight_map", {})
        except (OSError, ValueError, AttributeError):
            return [f"a readable {index.name}"]
        names |= {str(v) for v in weight_map.values()} if isinstance(weight_map, dict) else set()
    return sorted(n for n in names if not (folder / n).is_file())


def _folder_checks(model: str, folder: Path, roles: list[str]) -> list[Check]:
    checks = []
    for role in roles:
        sub = folder / role
        topic = f"generation.model {role}/"
        if role == "tokenizer":
            if not sub.is_dir() or not any(sub.iterdir()):
                checks.append(fail(topic, f"{sub} is missing", "download the whole model folder again"))
            continue
        shards = sorted(sub.glob("*.safetensors")) if sub.is_dir() else []
        if not shards:
            checks.append(fail(topic, f"{sub} holds no .safetensors files", "download the whole model folder again"))
            continue
        lacking = _missing_shards(sub)
        if lacking:
            checks.append(
                fail(topic, f"{sub} lacks {', '.join(lacking)} (an interrupted download?)", "download them again")
            )
            continue
        try:
            for shard in shards:
                read_header(shard)
        except BadInput as exc:
            checks.append(fail(topic, str(exc).rstrip("."), "download that file again"))
            continue
        size = sum(p.stat().st_size for p in shards) / 1e9
        checks.append(ok(topic, f"{len(shards)} file{'s' * (len(shards) > 1)}, {size:.1f} GB in {sub}"))
    return checks


def _model_checks(model: str, roles: list[str]) -> list[Check]:
    """The parts that come from the diffusers folder or hub id ``model``."""
    topic = "generation.model"
    local = model.startswith(("/", ".", "~")) or Path(model).expanduser().exists()
    if local:
        folder = Path(model).expanduser()
        if not folder.is_dir():
            return [
                fail(
                    topic,
                    f"{model} is not a folder",
                    "point it at a diffusers Wan2.2 I2V folder, or set generation.comfyui_models",
                )
            ]
        return [ok(topic, f"{folder} gives {', '.join(roles)}"), *_folder_checks(model, folder, roles)]
    snapshot = _hub_snapshot(model)
    if snapshot is not None:
        return [
            ok(topic, f"{model} is in the Hugging Face cache ({snapshot})"),
            *_folder_checks(model, snapshot, roles),
        ]
    if os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0"):
        return [
            fail(
                topic,
                f"{model} is not in the Hugging Face cache and HF_HUB_OFFLINE is set",
                "download it once, or set generation.comfyui_models",
            )
        ]
    return [
        warn(
            topic,
            f"{model} is not downloaded yet: the first worker start downloads {', '.join(roles)} (the full "
            "diffusers model is on the order of 100 GB)",
            "or set generation.comfyui_models to a ComfyUI models folder with the four files (33 GB)",
        )
    ]


def model_checks(g: GenerationConfig) -> tuple[list[Check], Callable[[str], ModelSizes]]:
    """The lines about the model source, and the memory plan's sizes per placement."""
    checks: list[Check] = []
    found: dict[Role, Path] = {}
    archs: dict[str, ExpertArchitecture | VaeArchitecture | TextEncoderArchitecture] = {}
    from_model: list[str] = []
    models = Path(g.comfyui_models).expanduser() if g.comfyui_models else None
    if models is not None and not models.is_dir():
        checks.append(
            fail(
                "generation.comfyui_models",
                f"{g.comfyui_models} is not a folder",
                "point it at ComfyUI's models folder (holding diffusion_models/, vae/ and text_encoders/)",
            )
        )
        models = None
    for role in ROLES:
        given: str = getattr(g, role)
        topic = f"generation.{role}"
        path: Path | None = None
        if given:
            path = Path(given).expanduser()
            if not path.is_file():
                checks.append(fail(topic, f"{given} does not exist", f"point it at {WANTED[role]}"))
                continue
        elif models is not None:
            try:
                path = find_in_comfyui_models(models, role)
            except FileNotFoundError as exc:
                checks.append(fail(topic, str(exc).split("; ")[0], f"set generation.{role} to the one to use"))
                continue
            if path is None:
                folder = _FOLDERS.get(role, "text_encoders")
                checks.append(
                    fail(
                        topic,
                        f"{models / folder} holds no file for it",
                        f"put {WANTED[role]} there, or set generation.{role}",
                    )
                )
                continue
        elif g.comfyui_models:
            continue  # the folder itself is reported above
        if path is None:
            from_model.append(role)
            continue
        check, arch = _inspect(role, path)
        checks.append(check)
        if arch is not None:
            found[role] = path
            archs[role] = arch
    if all(c.mark is not Mark.FAIL for c in checks):
        experts = {k: v for k, v in archs.items() if isinstance(v, ExpertArchitecture)}
        vae = archs.get("vae")
        text = archs.get("text_encoder")
        try:
            check_together(
                experts,
                vae if isinstance(vae, VaeArchitecture) else None,
                text if isinstance(text, TextEncoderArchitecture) else None,
            )
        except BadInput as exc:
            checks.append(fail("model files", str(exc).rstrip("."), "use the four files of the reference workflow"))
    text = archs.get("text_encoder")
    no_spiece = isinstance(text, TextEncoderArchitecture) and not text.has_spiece_model
    if (no_spiece or "text_encoder" in from_model) and not g.tokenizer:
        from_model.append("tokenizer")  # the tokenizer/ of the model folder or hub id
    if g.tokenizer.startswith(("/", ".", "~")) and not Path(g.tokenizer).expanduser().is_dir():
        checks.append(fail("generation.tokenizer", f"{g.tokenizer} is not a folder", "point it at a tokenizer folder"))
    if from_model:
        checks += _model_checks(g.model, from_model)
    for i, lora in enumerate(g.loras):
        checks.append(_file_check(f"generation.loras[{i}]", lora.path))
    if g.transformer_config and not Path(g.transformer_config).expanduser().exists():
        checks.append(
            fail(
                "generation.transformer_config",
                f"{g.transformer_config} does not exist",
                "point it at a diffusers config.json, or clear it",
            )
        )
    if g.attention_backend:
        try:
            check_attention_backend(g.attention_backend)
            checks.append(ok("generation.attention_backend", f"{g.attention_backend}: its package is installed"))
        except ModelFileError as exc:
            checks.append(
                fail(
                    "generation.attention_backend",
                    str(exc).split(": install")[0],
                    'install it, or set attention_backend = ""',
                )
            )
    options = wan_options_from_config(g)

    def sizes_for(placement: str) -> ModelSizes:
        try:
            return source_sizes(options, placement)
        except (BadInput, OSError, ValueError):
            return COMFY_FP8  # a file the lines above refuse: plan with the published sizes

    return checks, sizes_for


def _file_check(topic: str, path: str) -> Check:
    try:
        check_model_file(path, topic)
    except ModelFileError as exc:
        message = str(exc)
        fix = "download it again" if "truncated" in message or "corrupt" in message else "fix the path"
        return fail(topic, message, fix)
    return ok(topic, f"{Path(path).expanduser()} ({_gb(Path(path).expanduser())})")
