"""A weights file kept as a private memory map (the low-RAM option), whose pages can be handed
back to the kernel once their weights have been used.

The fp8 weights of an expert or of the text encoder are zero-copy views of such a map. Reading a
weight faults its pages in, and they count in the process's RSS until released: left alone, the
idle expert's pages would stay resident beside the running one (the kernel reclaims clean file
pages only under pressure, after the RSS has grown). ``release`` (``madvise(MADV_DONTNEED)``)
drops them from the process at once; the next read faults them back in, from the page cache when
it still holds them, else from disk: that is the reload cost the memory plan states.

The map is ``ACCESS_COPY`` (private): its pages stay clean file pages, since nothing writes to
them, so dropping them never loses data.
"""

from __future__ import annotations

import mmap
from pathlib import Path

import torch


class MappedFile:
    def __init__(self, path: Path) -> None:
        self.path = path
        with path.open("rb") as fh:
            self.map = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_COPY)

    def bytes_at(self, start: int, nbytes: int) -> torch.Tensor:
        """The bytes ``[start, start + nbytes)`` of the file as a uint8 tensor, no copy."""
        return torch.frombuffer(self.map, dtype=torch.uint8, count=nbytes, offset=start)

    def release(self, start: int = 0, nbytes: int | None = None) -> None:
        """Drop the pages of ``[start, start + nbytes)`` (the whole file by default) from this
        process. The range is widened to whole pages: a neighbour's page dropped with it is only
        read again when used."""
        end = len(self.map) if nbytes is None else min(len(self.map), start + nbytes)
        first = start - start % mmap.PAGESIZE
        if end > first:
            self.map.madvise(mmap.MADV_DONTNEED, first, end - first)


def resident_bytes(path: Path) -> int:
    """Bytes of ``path`` mapped into this process and resident (RSS), from /proc/self/smaps:
    what the low-RAM option must keep small for the idle expert."""
    total, inside = 0, False
    target = str(path.resolve())
    for line in Path("/proc/self/smaps").read_text().splitlines():
        fields = line.split()
        if fields and "-" in fields[0] and len(fields) >= 5 and not fields[0].endswith(":"):
            inside = len(fields) >= 6 and " ".join(fields[5:]) == target
        elif inside and fields[:1] == ["Rss:"]:
            total += int(fields[1]) * 1024
    return total
