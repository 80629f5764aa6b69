"""What this machine's CPU is: its model and flags, read once from /proc/cpuinfo (Linux).

The benchmark records them with every number, export picks integer settings by them, and the
runtime chooses its default mode by them: results on one CPU class say nothing about another.
"""

import functools
import platform
from pathlib import Path

CPUINFO = Path("/proc/cpuinfo")


@functools.cache
def cpuinfo(path: Path = CPUINFO) -> dict[str, str]:
    """The first processor's fields ({} off Linux); ARM calls its flags `Features`."""
    fields: dict[str, str] = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            if not line.strip():
                break
            key, _, value = line.partition(":")
            fields[key.strip()] = value.strip()
    return fields


def flags(path: Path = CPUINFO) -> set[str]:
    info = cpuinfo(path)
    return set((info.get("flags") or info.get("Features") or "").split())


def model_name() -> str:
    return cpuinfo().get("model name", platform.processor() or platform.machine())
