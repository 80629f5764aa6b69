"""Latency statistics of one benchmark cell: plain numpy on a list of per-run seconds."""

from collections.abc import Sequence

import numpy as np

PERCENTILES = (50, 90, 99)


def summarize(latencies_s: Sequence[float], batch_size: int) -> dict:
    """Mean, population std, p50/p90/p99 (numpy's linear interpolation), min, max in ms;
    throughput in images/s as batch size over mean latency (sustained, back-to-back runs)."""
    if len(latencies_s) == 0:
        raise ValueError("no latencies to summarize")
    ms = np.asarray(latencies_s, dtype=np.float64) * 1e3
    p50, p90, p99 = np.percentile(ms, PERCENTILES)
    mean = float(ms.mean())
    return {
        "runs": int(ms.size),
        "mean_ms": mean,
        "std_ms": float(ms.std()),
        "p50_ms": float(p50),
        "p90_ms": float(p90),
        "p99_ms": float(p99),
        "min_ms": float(ms.min()),
        "max_ms": float(ms.max()),
        "images_per_s": batch_size * 1e3 / mean if mean > 0 else float("inf"),
    }
