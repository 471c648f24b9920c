"""cuDNN/cuBLAS allocation failures are out-of-memory, and the failed call's memory is released:
nothing of the pipeline's frames survives the error the backend raises."""

from __future__ import annotations

import gc
import weakref
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from worker.errors import GenerationError, OutOfMemory
from worker.wan.backend import WanBackend
from worker.wan.options import WanOptions


@pytest.mark.parametrize(
    ("message", "kind"),
    [
        ("cuDNN error: CUDNN_STATUS_ALLOC_FAILED", OutOfMemory),
        ("CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`", OutOfMemory),
        ("CUDA error: out of memory", OutOfMemory),
        ("cuDNN error: CUDNN_STATUS_EXECUTION_FAILED", GenerationError),
    ],
)
def test_allocation_failures_inside_the_model_are_oom_and_free_their_tensors(
    tiny_wan_dir: Path, message: str, kind: type
) -> None:
    backend = WanBackend(WanOptions(model=str(tiny_wan_dir)))
    held: list[weakref.ref[torch.Tensor]] = []

    def fail(module: Any, args: Any) -> None:
        big = torch.ones(1024, 1024)  # a tensor only the failing call's frames refer to
        held.append(weakref.ref(big))
        raise RuntimeError(message)

    backend.pipe.transformer.register_forward_pre_hook(fail)
    with pytest.raises(kind) as caught:
        backend.generate(
            image=Image.fromarray(np.zeros((32, 32, 3), np.uint8)), prompt="a dog", negative_prompt="",
            width=32, height=32, frames=5, steps=2, guidance=1.0, guidance_2=1.0, seed=0,
        )  # fmt: skip
    assert type(caught.value) is kind
    gc.collect()
    assert held and held[0]() is None  # the error kept no frame alive
