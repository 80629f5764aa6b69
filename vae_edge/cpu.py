"""What this machine's CPU is, read once from /proc/cpuinfo (Linux): its model, its flags and the
class of integer kernels it runs.

The benchmark records the CPU with every number, export picks ONNX int8 settings by its class,
verification records which classes a file was checked on, and the runtime chooses its default
mode by it: results on one CPU class say nothing about another.
"""

import functools
import platform
from collections.abc import Iterable
from enum import StrEnum
from pathlib import Path

CPUINFO = Path("/proc/cpuinfo")
# The vector extensions that decide which kernels run, recorded with every benchmark.
VECTOR_EXTENSIONS = {"sse4_2", "avx", "avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "amx_tile", "asimd", "asimddp",
                     "i8mm", "sve"}


class CpuClass(StrEnum):
    """What decides which integer kernels onnxruntime (MLAS) and LiteRT (XNNPACK) use."""

    VNNI = "vnni"  # x86 with avx512_vnni or avx_vnni: VPDPBUSD accumulates uint8 x int8 in int32
    AVX512 = "avx512"  # avx512f without VNNI: VPMADDUBSW, whose int16 pair sums saturate, like AVX2
    AVX2 = "avx2"  # VPMADDUBSW
    ARM64_DOTPROD = "arm64-dotprod"  # ARMv8.2+ with SDOT/UDOT (Cortex-A55/A76 and later phones)
    ARM64 = "arm64"  # ARMv8.0 NEON without dot products (Cortex-A53, Raspberry Pi 3)
    OTHER = "other"  # older x86, or a CPU whose flags could not be read


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


def cpu_identity() -> dict:
    """The CPU model and the vector extensions that decide which kernels run: a benchmark measured on
    another identity says nothing about this CPU's speed."""
    return {"cpu": model_name(), "vector_extensions": sorted(flags() & VECTOR_EXTENSIONS)}


def features_of(cpu_flags: Iterable[str]) -> set[str]:
    """The features that decide the class ("vnni", "avx512f", "avx2", "asimd", "asimddp") among a CPU's flags."""
    cpu_flags = set(cpu_flags)
    found = cpu_flags & {"avx512f", "avx2", "asimd", "asimddp"}
    if cpu_flags & {"avx512_vnni", "avx_vnni"}:
        found.add("vnni")
    return found


def cpu_features(path: Path = CPUINFO) -> set[str]:
    """`features_of` this machine's first processor in /proc/cpuinfo; empty off Linux."""
    return features_of(flags(path))


def cpu_class(features: set[str] | None = None) -> CpuClass:
    """The class of a set of `features_of` flags (None: this machine's)."""
    features = cpu_features() if features is None else features
    if "vnni" in features:
        return CpuClass.VNNI
    if "avx512f" in features:
        return CpuClass.AVX512
    if "avx2" in features:
        return CpuClass.AVX2
    if "asimddp" in features:
        return CpuClass.ARM64_DOTPROD
    if "asimd" in features:
        return CpuClass.ARM64
    return CpuClass.OTHER
