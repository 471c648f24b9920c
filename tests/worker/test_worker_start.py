"""A worker that cannot start says why in one ``failed`` message and exits, instead of raising:
bad_input for missing, truncated or corrupt files and missing packages (found before torch is
imported), oom for a load that cannot fit; and a worker whose parent is killed exits quietly."""

from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from shared.protocol import FailureKind
from tests.worker.test_process import ROOT
from worker.errors import load_failure
from worker.model_check import ModelFileError, read_safetensors_header


def start_worker(tmp_path: Path, config: str, *extra: str) -> tuple[dict[str, object], str, int]:
    """Run ``python -m worker`` to its end; return its one protocol message, its log and status."""
    cfg = tmp_path / "framechain.toml"
    cfg.write_text(config)
    proc = subprocess.run(
        [sys.executable, "-m", "worker", "--config", str(cfg), "--device", "cpu", *extra],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )
    lines = proc.stdout.splitlines()
    assert len(lines) == 1, proc.stdout + proc.stderr
    return json.loads(lines[0]), proc.stderr, proc.returncode


def test_missing_expert_file_is_bad_input_before_torch(tmp_path: Path) -> None:
    missing = tmp_path / "wan2.2_i2v_high_noise_14B_fp8_scaled.safetensors"
    message, log, code = start_worker(tmp_path, f'[generation]\ntransformer = "{missing}"\n')
    assert message["type"] == "failed" and message["job_id"] is None and message["kind"] == "bad_input"
    assert "generation.transformer" in str(message["message"]) and "does not exist" in str(message["message"])
    assert code == 1 and "Traceback" not in log
    assert "loading wan backend" not in log  # refused before the heavy imports


def test_truncated_file_is_bad_input(tmp_path: Path) -> None:
    import torch
    from safetensors.torch import save_file

    file = tmp_path / "high.safetensors"
    save_file({"a.weight": torch.zeros(64, 64)}, file)
    file.write_bytes(file.read_bytes()[:-100])
    with pytest.raises(ModelFileError, match="truncated"):
        read_safetensors_header(file)
    message, _, _ = start_worker(tmp_path, f'[generation]\ntransformer_2 = "{file}"\n')
    assert message["kind"] == "bad_input" and "truncated" in str(message["message"])
    file.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all}")
    with pytest.raises(ModelFileError, match="corrupt"):
        read_safetensors_header(file)


def test_missing_attention_backend_package_is_bad_input(tmp_path: Path, tiny_wan_dir: Path) -> None:
    message, log, _ = start_worker(tmp_path, f'[generation]\nmodel = "{tiny_wan_dir}"\nattention_backend = "sage"\n')
    assert message["kind"] == "bad_input"
    assert "sageattention" in str(message["message"]) and "Traceback" not in log


def test_a_load_that_cannot_fit_is_oom(tmp_path: Path, tiny_wan_dir: Path) -> None:
    """A (sparse) 1 TB fp8_scaled expert: the memory plan refuses it before any weight is read."""
    header = json.dumps(
        {
            "blocks.0.self_attn.q.weight": {
                "dtype": "F8_E4M3",
                "shape": [1_000_000, 1_000_000],
                "data_offsets": [0, 10**12],
            },
            "blocks.0.self_attn.q.scale_weight": {"dtype": "F32", "shape": [], "data_offsets": [10**12, 10**12 + 4]},
        }
    ).encode()
    file = tmp_path / "huge_fp8_scaled.safetensors"
    with file.open("wb") as fh:
        fh.write(struct.pack("<Q", len(header)) + header)
        fh.truncate(8 + len(header) + 10**12 + 4)
    message, log, code = start_worker(
        tmp_path, f'[generation]\nmodel = "{tiny_wan_dir}"\ntransformer = "{file}"\n', "--backend", "wan"
    )
    assert message["kind"] == "oom" and "RAM" in str(message["message"]), message
    assert code == 1 and "Traceback" not in log


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 10 bytes"), FailureKind.OOM),
        (RuntimeError("CUDNN_STATUS_ALLOC_FAILED"), FailureKind.OOM),
        (MemoryError(), FailureKind.OOM),
        (ModuleNotFoundError("No module named 'flash_attn'", name="flash_attn"), FailureKind.BAD_INPUT),
        (
            RuntimeError("Flash Attention backend 'flash' is not usable because of missing package"),
            FailureKind.BAD_INPUT,
        ),
        (FileNotFoundError("model folder 'x' does not exist"), FailureKind.BAD_INPUT),
        (OSError("Error no file named config.json found in directory x"), FailureKind.BAD_INPUT),
        (KeyError("boom"), FailureKind.INTERNAL),
    ],
)
def test_load_failures_map_to_kinds(error: BaseException, kind: FailureKind) -> None:
    got, message = load_failure(error)
    assert got is kind and message and "\n" not in message


PARENT = """
import subprocess, sys
worker = subprocess.Popen(
    [sys.executable, "-m", "worker", "--config", sys.argv[1], "--backend", "preview", "--device", "cpu"],
    stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=open(sys.argv[2], "w"),
)
print(worker.pid, flush=True)
worker.stdout.readline()  # ready
job = ('{"type": "generate", "job_id": "j", "image": "%s", "prompt": "p", "out_dir": "%s", '
       '"width": 64, "height": 48, "frames": 9, "steps": 200}\\n')
worker.stdin.write((job % (sys.argv[3], sys.argv[4])).encode()); worker.stdin.flush()
worker.stdout.readline()  # the first progress: the job is running
print("running", flush=True)
import time; time.sleep(60)
"""


def test_worker_exits_quietly_when_its_parent_is_killed(tmp_path: Path) -> None:
    import numpy as np
    from PIL import Image

    image = tmp_path / "start.png"
    Image.fromarray(np.zeros((48, 64, 3), np.uint8)).save(image)
    cfg = tmp_path / "framechain.toml"
    cfg.write_text("[generation]\npreview_step_delay = 0.05\n")
    log = tmp_path / "worker.log"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, str(cfg), str(log), str(image), str(tmp_path / "out")],
        cwd=ROOT, stdout=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    assert parent.stdout is not None
    pid = int(parent.stdout.readline())
    assert parent.stdout.readline().strip() == "running"
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            break
        if state == "Z":  # exited; an init that does not reap leaves a zombie
            break
        time.sleep(0.1)
    else:
        os.kill(pid, signal.SIGKILL)
        pytest.fail("the worker kept running after its parent was killed")
    text = log.read_text()
    assert "Traceback" not in text and "BrokenPipe" not in text and "failed" not in text, text
    assert text.count("the parent process is gone") == 1, text
