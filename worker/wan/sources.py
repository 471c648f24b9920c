"""Where each component of the pipeline comes from: one of the four files a ComfyUI user has
(found in ``comfyui_models`` or given one by one), or the diffusers folder / hub id ``model``.
Paths only, no torch: this runs before anything heavy is imported."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from pathlib import Path

from worker.wan.detect import Role
from worker.wan.options import WanOptions

#: Per role: the folders of a ComfyUI ``models`` folder it lives in (the older name second), the
#: reference workflow's file name, and the name patterns of other files of the same model.
_COMFY_LAYOUT: dict[Role, tuple[tuple[str, ...], str, tuple[str, ...]]] = {
    "transformer": (
        ("diffusion_models", "unet"),
        "wan2.2_i2v_high_noise_14B_fp8_scaled.safetensors",
        ("wan2.2_i2v_high_noise_14B*.safetensors", "wan2.2_i2v_high_noise_14B*.gguf", "*i2v*high*noise*"),
    ),
    "transformer_2": (
        ("diffusion_models", "unet"),
        "wan2.2_i2v_low_noise_14B_fp8_scaled.safetensors",
        ("wan2.2_i2v_low_noise_14B*.safetensors", "wan2.2_i2v_low_noise_14B*.gguf", "*i2v*low*noise*"),
    ),
    "vae": (("vae",), "wan_2.1_vae.safetensors", ("wan_2.1_vae*.safetensors", "wan2.1*vae*.safetensors")),
    "text_encoder": (
        ("text_encoders", "clip"),
        "umt5_xxl_fp8_e4m3fn_scaled.safetensors",
        ("umt5_xxl*.safetensors", "umt5*xxl*.safetensors"),
    ),
}
ROLES: tuple[Role, ...] = ("transformer", "transformer_2", "vae", "text_encoder")
_SUFFIXES = (".safetensors", ".gguf")


@dataclass(frozen=True)
class ModelFiles:
    """The single file of each component, or None where it comes from ``model``."""

    transformer: Path | None = None
    transformer_2: Path | None = None
    vae: Path | None = None
    text_encoder: Path | None = None

    def get(self, role: str) -> Path | None:
        path: Path | None = getattr(self, role)
        return path

    @property
    def complete(self) -> bool:
        """All four given: the diffusers ``model`` is not needed at all."""
        return all(self.get(role) is not None for role in ROLES)


def find_in_comfyui_models(models: Path, role: Role) -> Path | None:
    """The file for ``role`` under a ComfyUI ``models`` folder: the reference workflow's name
    first, else the one file matching its model's name pattern; None when there is none. Several
    candidates are an error, since guessing could load the wrong expert."""
    folders, reference, patterns = _COMFY_LAYOUT[role]
    for folder in folders:
        exact = models / folder / reference
        if exact.is_file():
            return exact
    # case-insensitive: community files spell it "Wan2.2-I2V-A14B-HighNoise-Q8_0.gguf"
    found = sorted(
        p
        for folder in folders
        for p in (models / folder).rglob("*")
        if p.is_file()
        and p.suffix.lower() in _SUFFIXES
        and any(fnmatch.fnmatch(p.name.lower(), pattern.lower()) for pattern in patterns)
    )
    if len(found) > 1:
        names = ", ".join(str(p.relative_to(models)) for p in found)
        raise FileNotFoundError(
            f"generation.comfyui_models holds several files that could be {role} ({names}); "
            f"set generation.{role} to the one to use"
        )
    return found[0] if found else None


def resolve_files(options: WanOptions) -> ModelFiles:
    """Each component's file: the one given by its own key, else the one in ``comfyui_models``.
    A path that is given but missing is an error here, before anything loads."""
    models = Path(options.comfyui_models).expanduser() if options.comfyui_models else None
    if models is not None and not models.is_dir():
        raise FileNotFoundError(f"generation.comfyui_models {options.comfyui_models!r} is not a folder")
    found: dict[str, Path | None] = {}
    lacking: list[Role] = []
    for role in ROLES:
        given: str = getattr(options, role)
        if given:
            path = Path(given).expanduser()
            if not path.is_file():
                raise FileNotFoundError(f"generation.{role} file {given!r} does not exist")
            found[role] = path
        elif models is not None:
            found[role] = find_in_comfyui_models(models, role)
            if found[role] is None:
                lacking.append(role)
        else:
            found[role] = None
    if models is not None and lacking:
        wanted = ", ".join(f"{_COMFY_LAYOUT[r][0][0]}/{_COMFY_LAYOUT[r][1]}" for r in lacking)
        keys = ", ".join(f"generation.{r}" for r in lacking)
        raise FileNotFoundError(
            f"generation.comfyui_models {str(models)!r} lacks {wanted}; put them there or set {keys}"
        )
    return ModelFiles(**found)
