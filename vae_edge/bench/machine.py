"""The machine a benchmark ran on, and its FP32 ceiling, so reports from different hosts compare."""

import os
import platform

from vae_edge.cpu import cpu_identity, cpuinfo, flags
from vae_edge.provenance import package_versions

PACKAGES = ("numpy", "ai-edge-litert", "onnxruntime", "onnx", "tensorflow-cpu", "tensorflow", "keras")
FMA_UNITS = 2  # per core on recent x86 server cores (Zen 2+, Skylake-SP and later): an assumption


def usable_cores() -> int:
    """Cores this process may run on (the affinity mask, e.g. a container's CPU set)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def fp32_lanes(flags: set[str]) -> int:
    """float32 lanes of the widest FMA vector unit the CPU reports."""
    if "avx512f" in flags:
        return 16
    if "avx2" in flags or "fma" in flags:
        return 8
    return 4


def theoretical_gflops(mhz: float, lanes: int, threads: int) -> float:
    """FMA units x lanes x 2 flops per FMA x clock, per core, times cores used."""
    return FMA_UNITS * lanes * 2 * mhz / 1e3 * threads


def describe() -> dict:
    """CPU model, clock, vector extensions, core counts, OS and package versions."""
    info = cpuinfo()
    cpu_flags = flags()
    mhz = float(info["cpu MHz"]) if "cpu MHz" in info else None
    return {
        **cpu_identity(),  # "cpu" and "vector_extensions": what `runtime.edge.measured_latency` matches
        "cpu_mhz": mhz,
        "fp32_lanes": fp32_lanes(cpu_flags),
        "logical_cores": os.cpu_count(),
        "usable_cores": usable_cores(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": package_versions(PACKAGES),
    }
