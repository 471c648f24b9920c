"""What the doctor asks of the machine, behind one small object so tests can give the figures
(RAM, GPUs and their memory, free disk, the ffmpeg binary) of any machine.

torch is imported only by :func:`query_cuda`, only when it is installed, and only by the doctor
(a command of its own): the bot's run path never gets here.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import platform
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bot.disk import free_bytes
from shared.memory_plan import ram_available


@dataclass(frozen=True)
class Gpu:
    index: int
    name: str
    #: Bytes free now and in all, as CUDA reports them.
    free: int
    total: int


@dataclass(frozen=True)
class Cuda:
    #: None when torch is not installed.
    torch_version: str | None = None
    #: The CUDA runtime torch was built with; None for a CPU build.
    cuda_version: str | None = None
    gpus: tuple[Gpu, ...] = ()
    #: Why CUDA could not be queried (a driver problem), else "".
    error: str = ""


@dataclass(frozen=True)
class Ffmpeg:
    #: The binary imageio-ffmpeg finds, or None.
    path: str | None
    #: The first line of ``ffmpeg -version``, or why it could not run.
    version: str = ""


def query_cuda() -> Cuda:
    """torch's version, its CUDA build and each visible GPU's free and total memory."""
    if importlib.util.find_spec("torch") is None:
        return Cuda()
    import torch  # the doctor only: a command of its own, never the bot's run path

    version, cuda = str(torch.__version__), torch.version.cuda
    try:
        if not torch.cuda.is_available():
            return Cuda(version, cuda)
        gpus = []
        for index in range(torch.cuda.device_count()):
            free, total = torch.cuda.mem_get_info(index)
            gpus.append(Gpu(index, torch.cuda.get_device_name(index), int(free), int(total)))
    except RuntimeError as exc:  # a driver that does not match, a card in a bad state
        return Cuda(version, cuda, error=str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)
    return Cuda(version, cuda, tuple(gpus))


def find_ffmpeg() -> Ffmpeg:
    """The ffmpeg that framechain's video code uses (imageio-ffmpeg's), and whether it runs."""
    try:
        import imageio_ffmpeg

        exe = str(imageio_ffmpeg.get_ffmpeg_exe())
    except (ImportError, RuntimeError) as exc:
        return Ffmpeg(None, str(exc).strip().splitlines()[0] if str(exc).strip() else "not found")
    try:
        proc = subprocess.run([exe, "-hide_banner", "-version"], capture_output=True, text=True, timeout=15)
    except (OSError, subprocess.SubprocessError) as exc:
        return Ffmpeg(None, f"{exe} does not run: {exc}")
    if proc.returncode != 0:
        return Ffmpeg(None, f"{exe} does not run (exit status {proc.returncode})")
    first = (proc.stdout.splitlines() or [""])[0]
    return Ffmpeg(exe, first.split(" Copyright")[0])


def package_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


@dataclass(frozen=True)
class Probe:
    """The machine as the doctor sees it; every part can be replaced (tests, other machines)."""

    python_version: Callable[[], str] = platform.python_version
    package_version: Callable[[str], str | None] = package_version
    cuda: Callable[[], Cuda] = query_cuda
    #: Bytes of RAM available without swapping (None: unknown).
    ram_available: Callable[[], int | None] = ram_available
    disk_free: Callable[[Path], int] = free_bytes
    ffmpeg: Callable[[], Ffmpeg] = find_ffmpeg
    #: The environment the tokens come from (None: os.environ).
    env: dict[str, str] | None = field(default=None)
