"""Bench results as a small typed record per cell (one subject at one batch size and thread count),
serialized to `bench.json` and read back from it."""

from dataclasses import dataclass


@dataclass
class Cell:
    key: str  # format/graph/mode, e.g. tflite/e2e/int8@b1
    format: str
    graph: str
    mode: str
    size_bytes: int
    batch: int
    threads: int
    load_s: float
    first_s: float
    runs: int
    mean_ms: float
    std_ms: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    min_ms: float
    max_ms: float
    images_per_s: float
    rss_before_load_mib: float | None
    peak_rss_mib: float
    # derived across cells of the same run (harness.derive)
    speedup_vs_keras_eager: float | None = None
    speedup_vs_keras_tf_function: float | None = None
    gflops_per_s: float | None = None
    fraction_of_measured_peak: float | None = None
    fraction_of_theoretical_peak: float | None = None
    fraction_of_own_ceiling: float | None = None


def cells_of(report: dict) -> list[Cell]:
    """The typed cells of a bench report (as `run_bench` returns it or bench.json holds it)."""
    return [cell if isinstance(cell, Cell) else Cell(**cell) for cell in report["cells"]]
