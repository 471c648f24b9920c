"""Load-time RAM of an fp8_scaled expert, and the memory plan of every profile at real size.

    .venv/bin/python bench/bench_load.py [--layers 2] [--mapped]

It writes a Comfy-layout fp8_scaled Wan2.2 I2V expert with the real width (dim 5120, ffn 13824,
40 heads, text dim 4096, in 36) but only ``--layers`` blocks (2 layers: about 1.2 GB) into a
temporary folder, loads it through the real loader (``load_transformer_file``, bf16 compute) and
prints the peak RSS above the process baseline as a multiple of the file size (target: <= 1.3x).
The peak is the kernel's high-water mark (VmHWM), reset just before the load. With ``--mapped``
(low_ram) it also runs every layer once and reads the file's resident pages (/proc/self/smaps)
during that turn and after the pages are handed back. The file is deleted at the end. Then it
prints shared.memory_plan for every profile at 640x640x81, 832x480x81 and 1280x720x81, the
largest size each fits on a 24 GB card, and per 24/32/48/80 GB card the profile "auto" picks.
"""

from __future__ import annotations

import argparse
import json
import struct
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from shared import memory_plan
from shared.memory_plan import GIB

CONFIG = Path(__file__).resolve().parent.parent / "worker" / "wan" / "configs" / "wan2.2_i2v_a14b_transformer.json"


def status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def write_expert(path: Path, layers: int) -> int:
    """Stream a Comfy fp8_scaled expert to ``path`` tensor by tensor (never all in memory)."""
    import torch

    from tests.tiny_wan import to_original_layout
    from worker.wan.loader import WanTransformer3DModel

    config = json.loads(CONFIG.read_text()) | {"num_layers": layers}
    with torch.device("meta"):
        model = WanTransformer3DModel.from_config(config)
    shapes = {k: tuple(v.shape) for k, v in to_original_layout(model.state_dict()).items()}
    entries: list[tuple[str, str, tuple[int, ...]]] = [("scaled_fp8", "F8_E4M3", (0,))]
    for key, shape in shapes.items():
        if key.endswith(".weight") and len(shape) == 2:
            base = key.removesuffix(".weight")
            entries += [
                (key, "F8_E4M3", shape),
                (base + ".scale_weight", "F32", ()),
                (base + ".scale_input", "F32", ()),
            ]
        else:
            entries.append((key, "F16", shape))
    width = {"F8_E4M3": 1, "F16": 2, "F32": 4}
    header: dict[str, object] = {}
    offset = 0
    for key, dtype, shape in entries:
        n = width[dtype]
        for d in shape:
            n *= d
        header[key] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + n]}
        offset += n
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    g = torch.Generator().manual_seed(0)
    with path.open("wb") as fh:
        fh.write(struct.pack("<Q", len(raw)) + raw)
        for _key, dtype, shape in entries:
            if dtype == "F8_E4M3":
                rows = shape[0] if shape[0] else 0
                for start in range(0, rows, 1024):  # chunks keep the writer's memory small
                    chunk = torch.randn(min(1024, rows - start), *shape[1:], generator=g) * 100
                    fh.write(chunk.to(torch.float8_e4m3fn).view(torch.uint8).numpy().tobytes())
            elif dtype == "F32":
                fh.write(torch.tensor(0.01, dtype=torch.float32).numpy().tobytes())
            else:
                fh.write((torch.randn(*shape, generator=g) * 0.02).to(torch.float16).numpy().tobytes())
    return path.stat().st_size


def measure_load(path: Path, layers: int, mapped: bool) -> None:
    import gc

    import torch

    from worker.wan.fp8 import scaled_linears
    from worker.wan.loader import load_transformer_file

    config = Path(path.parent / "config.json")
    config.write_text(json.dumps(json.loads(CONFIG.read_text()) | {"num_layers": layers}))
    gc.collect()
    baseline = status_kib("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    started = time.monotonic()
    model = load_transformer_file(path, config=config, dtype=torch.bfloat16, mapped=mapped)
    seconds = time.monotonic() - started
    peak = status_kib("VmHWM")
    after = status_kib("VmRSS")
    size = path.stat().st_size
    fp8 = scaled_linears(model)
    print(f"file: {size / 1e9:.2f} GB, {layers} layer(s), {len(fp8)} linear layers kept in fp8 (mapped={mapped})")
    print(f"load: {seconds:.1f} s")
    print(f"baseline RSS: {baseline / 2**20:.2f} GiB")
    above = (peak - baseline) * 1024
    print(f"peak RSS above baseline: {above / 1e9:.2f} GB = {above / size:.2f}x the file")
    print(f"RSS above baseline after load: {(after - baseline) * 1024 / size:.2f}x the file")
    if mapped:
        measure_mapped_turn(model, path, size)
    del model


def measure_mapped_turn(model: object, path: Path, size: int) -> None:
    """low_ram: a forward over every fp8 weight faults the mapped pages in; handing them back
    after the turn leaves the idle expert with no RAM (the file's RSS, from /proc/self/smaps)."""
    import torch

    from worker.wan.fp8 import release_mapped_weights, scaled_linears
    from worker.wan.mapped_file import resident_bytes

    started = time.monotonic()
    with torch.no_grad():
        for layer in scaled_linears(model):  # type: ignore[arg-type]
            layer(torch.zeros(1, layer.in_features, dtype=torch.bfloat16))
    turn = time.monotonic() - started
    during = resident_bytes(path)
    release_mapped_weights(model)  # type: ignore[arg-type]
    idle = resident_bytes(path)
    print(f"mapped: a pass over every layer ({turn:.1f} s) leaves {during / size:.2f}x the file resident")
    print(f"mapped: after its turn the idle expert holds {idle / 1e6:.1f} MB of the file ({idle / size:.3f}x)")


def print_plans() -> None:
    card = 24564 * 1024 * 1024
    print("\nmemory plan (Comfy fp8_scaled experts 2 x 14.29 GB, UMT5 fp8 6.73 GB, Wan 2.1 VAE):")
    for profile in memory_plan.PROFILES:
        vae = 2 if profile == "group_offload" else 4
        for low_ram in (False, True) if profile == "expert_offload" else (False,):
            for w, h in ((640, 640), (832, 480), (1280, 720)):
                p = memory_plan.plan(profile, w, h, 81, vae_bytes_per_value=vae, low_ram=low_ram)
                print(f"  {p.describe()}, vae {'fp32' if vae == 4 else 'bf16'}")
            largest = memory_plan.largest_pixels(profile, memory_plan.usable_vram(card), 81, vae_bytes_per_value=vae)
            print(f"  -> largest area at 81 frames on a 24 GB card: {largest:,} px ({largest / 1e6:.2f} Mpx)")
    print(
        f"  (a plan may use {memory_plan.USABLE_VRAM:.0%} of the card: {memory_plan.usable_vram(card) / GIB:.1f} GiB)"
    )
    print("\nper card (auto profile, the four fp8 files, vae fp32 except group_offload):")
    for name, mib in (("24 GB", 24564), ("32 GB", 32607), ("48 GB", 49140), ("80 GB", 81559)):
        total = mib * 1024 * 1024
        profile = memory_plan.auto_profile(total - GIB)  # what the worker sees free at start
        vae = 2 if profile == "group_offload" else 4
        largest = memory_plan.largest_pixels(profile, memory_plan.usable_vram(total), 81, vae_bytes_per_value=vae)
        ram = memory_plan.plan(profile, 640, 640, 81, vae_bytes_per_value=vae).ram
        low = memory_plan.plan(profile, 640, 640, 81, vae_bytes_per_value=vae, low_ram=True)
        low_text = f", low_ram {low.ram / GIB:.1f} GiB (reloads ~{low.reload_seconds:.0f} s)" if low.low_ram else ""
        print(
            f"  {name}: {profile}, largest 81-frame area {largest:,} px (e.g. {side_16(largest, 16 / 9)} or "
            f"{side_16(largest, 1.0)}), RAM {ram / GIB:.1f} GiB{low_text}"
        )


def side_16(pixels: int, aspect: float) -> str:
    """The largest width x height in 16-pixel steps of ``aspect`` within ``pixels``."""
    height = int((pixels / aspect) ** 0.5) // 16 * 16
    width = int(height * aspect) // 16 * 16
    while width * height > pixels:
        height -= 16
        width = int(height * aspect) // 16 * 16
    return f"{width}x{height}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--mapped", action="store_true", help="the low_ram loading (memory-mapped fp8 weights)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-load-") as tmp:
        path = Path(tmp) / "wan2.2_i2v_high_noise_14B_fp8_scaled.safetensors"
        write_expert(path, args.layers)
        measure_load(path, args.layers, args.mapped)
    print_plans()


if __name__ == "__main__":
    main()
