"""A RIFE 4.26 weights file with random weights, made in code: the real loader reads it exactly
as it reads Practical-RIFE's flownet .pkl (keys under ``module.``, as its training saves them)."""

from __future__ import annotations

from pathlib import Path

import torch
from framelift.interpolation import IFNet


def write_rife_weights(path: Path, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    network = IFNet()
    torch.save({f"module.{key}": value for key, value in network.state_dict().items()}, path)
    return path
