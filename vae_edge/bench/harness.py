"""Plans the subjects of a bundle, runs each in its own worker process, and derives the
cross-cell figures (speed-ups over Keras, GFLOP/s, fraction of the FP32 ceiling)."""

import fnmatch
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from vae_edge.bench import machine
from vae_edge.bench.flops import METHOD, count_flops
from vae_edge.bundle import Bundle, Cell, ModelSource
from vae_edge.errors import BadInputError
from vae_edge.provenance import git_commit
from vae_edge.registry import (
    APPS,
    FORMATS,
    KERAS,
    KERAS_MODES,
    MODES,
    PIPELINE,
    App,
    Engine,
    Format,
    Graph,
    Mode,
    SourceKind,
    Target,
)
from vae_edge.runtime.engines import installed

GRAPH_ORDER = (*Graph, PIPELINE)
PEAK_MATMUL_SIZES = [512, 1024, 2048]
PEAK_SECONDS = 0.3  # per size


@dataclass
class BenchSettings:
    """What to measure and for how long; the defaults follow the TFLite benchmark tool."""

    batch_sizes: tuple[int, ...] = (1, 64)
    threads: tuple[int, ...] = field(default_factory=lambda: tuple(sorted({1, machine.usable_cores()})))
    warmup: int = 10
    runs: int = 50
    min_seconds: float = 1.0
    max_seconds: float = 30.0
    seed: int = 0
    only: tuple[str, ...] = ()
    engine_ceilings: bool = True  # each engine's own matrix-product ceiling: two more workers, 12 s on 2 cores


def plan_subjects(bundle: Bundle, source: ModelSource | None, only: tuple[str, ...] = (),
                  custom_objects: tuple[str, ...] = ()) -> list[dict]:
    """Every artifact, every pipeline (all graphs of one target, graph `e2e`) and the Keras baselines (when
    `source` names the model's files), as `format/graph/mode` keys, filtered by `only` glob patterns, in
    registry order."""
    subjects = [_subject(a.target, a.graph, [a.key], a.size_bytes) for a in bundle.artifacts]
    for target in bundle.targets():
        members = list(bundle.pipeline(target).values())
        size = sum({a.path: a.size_bytes for a in members}.values())  # a folder format holds every graph once
        subjects.append(_subject(target, PIPELINE, [a.key for a in members], size))
    if source:
        for graph in GRAPH_ORDER:
            for mode in KERAS_MODES:
                subjects.append(
                    {
                        "key": f"{KERAS}/{graph}/{mode}",
                        "format": KERAS,
                        "graph": graph,
                        "mode": mode,
                        "static_batch": None,
                        "artifacts": [],
                        "size_bytes": sum(Path(path).stat().st_size for path in source.paths),
                        "source": source.as_dict(),
                        "custom_objects": list(custom_objects),
                    }
                )
    if only:
        check_patterns(only, [s["key"] for s in subjects])
        subjects = [s for s in subjects if any(fnmatch.fnmatchcase(s["key"], pattern) for pattern in only)]
    return sorted(subjects, key=_order)


def planned_keys(targets: list[Target]) -> list[str]:
    """The subject keys a bundle of these targets will have: artifacts, pipelines, Keras baselines."""
    graphs = (*Graph, PIPELINE)
    return [t.artifact_key(g) for t in targets for g in graphs] + [f"{KERAS}/{g}/{m}" for g in graphs for m in KERAS_MODES]


def check_patterns(patterns: tuple[str, ...], keys: list[str], option: str = "--only") -> None:
    """Refuse a glob that matches no subject, so a typo is not a silently smaller benchmark."""
    for pattern in patterns:
        if not any(fnmatch.fnmatchcase(key, pattern) for key in keys):
            raise BadInputError(
                f"{option} {pattern!r} matches nothing; keys look like tflite/decoder/int8, "
                f"onnx/{PIPELINE}/float32@b1, {KERAS}/decoder/eager"
            )


def _order(subject: dict) -> tuple:
    formats = [KERAS, *FORMATS]
    modes = [*KERAS_MODES, *Mode]
    return (
        formats.index(subject["format"]),
        GRAPH_ORDER.index(subject["graph"]),
        modes.index(subject["mode"]),
        subject["static_batch"] or 0,
    )


def _subject(target: Target, graph: str, artifacts: list[str], size_bytes: int) -> dict:
    return {
        "key": target.artifact_key(graph),
        "format": target.format,
        "graph": graph,
        "mode": target.mode,
        "static_batch": target.batch,
        "artifacts": artifacts,
        "size_bytes": size_bytes,
    }


def _run_worker(job: dict, timeout_s: float, env: dict | None = None):
    """The worker's JSON result, or an error string naming why it gave none."""
    with tempfile.TemporaryDirectory(prefix="vae-edge-bench-") as folder:
        job_path, result_path = Path(folder, "job.json"), Path(folder, "result.json")
        job_path.write_text(json.dumps(job))
        command = [sys.executable, "-m", "vae_edge.bench.worker", str(job_path), str(result_path)]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, env=env)
        except subprocess.TimeoutExpired:
            return None, f"worker timed out after {timeout_s:.0f} s"
        if done.returncode != 0 or not result_path.is_file():
            lines = [line for line in done.stderr.splitlines() if line.strip()]
            return None, f"worker exited {done.returncode}: {lines[-1] if lines else 'no message'}"
        return json.loads(result_path.read_text()), None


def measure_peaks(threads: tuple[int, ...], mhz: float | None, lanes: int) -> dict[str, dict]:
    """Per thread count: the measured numpy-matmul ceiling and the FMA-width x clock figure."""
    peaks = {}
    for count in threads:
        env = {**os.environ, **{name: str(count) for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")}}
        result, error = _run_worker({"kind": "peak", "sizes": PEAK_MATMUL_SIZES, "min_seconds": PEAK_SECONDS}, 300, env)
        peaks[str(count)] = {
            "measured_gflops": result["gflops"] if result else None,
            "matmul_size": result["matmul_size"] if result else None,
            "theoretical_gflops": machine.theoretical_gflops(mhz, lanes, count) if mhz else None,
            **({"error": error} if error else {}),
        }
    return peaks


def measure_engine_ceilings(threads: tuple[int, ...]) -> dict[str, dict]:
    """Per thread count: float32 and int8 GOP/s of a large matrix product through onnxruntime and
    LiteRT themselves (`vae_edge.bench.ceilings`), each in a fresh worker process."""
    ceilings = {}
    for count in threads:
        result, error = _run_worker({"kind": "ceilings", "threads": count}, 600)
        ceilings[str(count)] = result if result else {"error": error}
    return ceilings


def ceiling_of(cell: Cell, ceilings: dict) -> float | None:
    """The ceiling a cell's speed is held against: its engine's, in its mode's precision (int8 kernels
    for the integer modes, whose matrix products run in int8; float32 for the rest)."""
    engine = str(FORMATS[cell.format].engine) if cell.format in FORMATS else None  # ceilings are keyed by engine
    precision = Mode.INT8 if cell.mode in MODES and MODES[cell.mode].integer else Mode.FLOAT32
    return ceilings.get(str(cell.threads), {}).get(str(precision), {}).get(engine) if engine else None


def count_graph_flops(bundle: Bundle) -> dict:
    """FLOPs per image of encoder, decoder and both, from the bundle's ONNX float32 graphs."""
    if importlib.util.find_spec("onnx") is None:
        return {"method": "not counted: the onnx package is not installed"}
    counts = {"method": METHOD}
    for graph in Graph:
        artifact = next((a for a in bundle.artifacts if a.key == Target(Format.ONNX, Mode.FLOAT32).artifact_key(graph)), None)
        if artifact is None:
            return {"method": "not counted: the bundle has no ONNX float32 graphs"}
        counts[graph] = count_flops(bundle.path_of(artifact, check=False))
    counts[PIPELINE] = {"flops": sum(counts[graph]["flops"] for graph in Graph)}
    return counts


def measure_browser(bundle: Bundle, settings: "BenchSettings", notes: list[str], log) -> list[dict]:
    """The web app's decoder in headless Chromium next to native onnxruntime, where the bundle has the
    app and a browser is installed (else a note says why not)."""
    from vae_edge.web.browser import find_browser

    if not (bundle.folder / APPS[App.WEB].folder / "index.html").is_file():
        notes.append("no in-browser latency: the bundle has no web app (export with --format web)")
        return []
    if find_browser() is None or importlib.util.find_spec("playwright") is None:
        notes.append("no in-browser latency: needs chromium-headless-shell and the playwright package")
        return []
    from vae_edge.bench.browser import browser_vs_native

    log("  web app in headless Chromium vs native onnxruntime")
    return browser_vs_native(bundle.folder, tuple(settings.batch_sizes), settings.threads, max(settings.runs, 10))


def derive(cells: list[Cell], flops: dict, peaks: dict, ceilings: dict | None = None) -> None:
    """Add speed-ups over the Keras baselines (ratio of p50 latencies in this run), achieved GFLOP/s,
    fractions of the numpy FP32 ceilings and of the cell's own engine-and-precision ceiling, in place."""
    p50 = {(c.key, c.batch, c.threads): c.p50_ms for c in cells}
    for cell in cells:
        for mode in KERAS_MODES:
            baseline = p50.get((f"{KERAS}/{cell.graph}/{mode}", cell.batch, cell.threads))
            setattr(cell, f"speedup_vs_keras_{mode.replace('.', '_')}", baseline / cell.p50_ms if baseline else None)
        per_image = flops.get(cell.graph, {}).get("flops")
        cell.gflops_per_s = per_image * cell.images_per_s / 1e9 if per_image else None
        peak = peaks.get(str(cell.threads), {})
        for source in ("measured", "theoretical"):
            ceiling = peak.get(f"{source}_gflops")
            setattr(cell, f"fraction_of_{source}_peak", cell.gflops_per_s / ceiling if cell.gflops_per_s and ceiling else None)
        own = ceiling_of(cell, ceilings or {})
        cell.fraction_of_own_ceiling = cell.gflops_per_s / own if cell.gflops_per_s and own else None


def baseline_source(bundle: Bundle, model_path: Path | None, custom_objects: tuple[str, ...],
                    notes: list[str]) -> ModelSource | None:
    """The Keras model to time as the baseline: `model_path`, else the files the manifest names; None (with a
    note saying why) when there is none to load."""
    source = ModelSource.from_manifest(bundle.model)
    if model_path is not None:  # another file of the same model: read as the export read it (likelihood, outputs)
        if not Path(model_path).is_file():
            raise BadInputError(f"{model_path}: no such Keras model file")
        one_file = source.kind if source.kind in (SourceKind.VAE_EDGE, SourceKind.SUBMODELS) else SourceKind.SUBMODELS
        source = replace(source, kind=one_file, paths=(str(Path(model_path).resolve()),), sha256=())
    elif source.kind == SourceKind.IN_MEMORY or not all(Path(path).is_file() for path in source.paths):
        notes.append("no Keras baseline: the manifest names no existing source model; pass --model")
        return None
    missing = source.missing_modules(custom_objects)
    if missing:
        notes.append(f"no Keras baseline: the model's layers need --custom-objects {' '.join(missing)}")
        return None
    try:  # checked once here: every Keras worker then loads the files without hashing them again
        source.check_same_files(source.with_digests())
    except BadInputError as error:
        notes.append(f"no Keras baseline: {error}")
        return None
    return replace(source, sha256=())


def run_bench(bundle_dir, settings: BenchSettings, model_path: Path | None = None, log: Callable[[str], None] = print,
              custom_objects: tuple[str, ...] = ()) -> dict:
    """Benchmark every planned subject at every thread count; the report as a dict. The Keras baseline is
    `model_path`, else the model the bundle was exported from (its layers imported from `custom_objects`)."""
    if not settings.batch_sizes or min(settings.batch_sizes) < 1 or not settings.threads or min(settings.threads) < 1:
        raise BadInputError("batch sizes and thread counts must be positive integers")
    bundle = Bundle(bundle_dir)
    notes = []
    source = baseline_source(bundle, model_path, custom_objects, notes)
    subjects = plan_subjects(bundle, source, settings.only, custom_objects)
    for fmt, info in FORMATS.items():
        if not installed(info.engine) and any(s["format"] == fmt for s in subjects):
            notes.append(f"{info.engine} is not installed: {fmt} subjects skipped")
            subjects = [s for s in subjects if s["format"] != fmt]
    if not installed(Engine.TENSORFLOW) and any(s["format"] == KERAS for s in subjects):
        notes.append("TensorFlow is not installed: Keras baselines skipped")
        subjects = [s for s in subjects if s["format"] != KERAS]
    for key in sorted({key for s in subjects for key in s["artifacts"]}):
        bundle.path_of(next(a for a in bundle.artifacts if a.key == key))  # checksum once, here

    info = machine.describe()
    log(f"{info['cpu']}, {info['usable_cores']} usable cores; measuring the FP32 ceiling")
    peaks = measure_peaks(settings.threads, info["cpu_mhz"], info["fp32_lanes"])
    if settings.engine_ceilings:
        log("  and each engine's float32 and int8 ceilings")
        ceilings = measure_engine_ceilings(settings.threads)
    else:
        ceilings = {str(t): {"error": "not asked for in this run; `vae-edge bench` measures them"} for t in settings.threads}
    cells, failures = [], []
    timeout_s = 300 + len(settings.batch_sizes) * (settings.max_seconds * 2 + 60)
    for subject in subjects:
        for threads in settings.threads:
            started = time.perf_counter()
            job = {
                "kind": "cells",
                "subject": subject,
                "threads": threads,
                "bundle": str(bundle.folder),
                "model": bundle.model,
                **{k: v for k, v in asdict(settings).items() if k not in ("threads", "only", "engine_ceilings")},
            }
            result, error = _run_worker(job, timeout_s)
            if error:
                failures.append({"key": subject["key"], "threads": threads, "error": error})
                log(f"  {subject['key']:<28} {threads} thread(s): FAILED ({error})")
                continue
            for cell in result:
                cells.append(Cell(**{k: subject[k] for k in ("key", "format", "graph", "mode", "size_bytes")}, **cell))
            log(
                f"  {subject['key']:<28} {threads} thread(s): p50 at batch {result[0]['batch']} "
                f"{result[0]['p50_ms']:.3f} ms ({time.perf_counter() - started:.1f} s)"
            )
    flops = count_graph_flops(bundle)
    derive(cells, flops, peaks, ceilings)
    browser = measure_browser(bundle, settings, notes, log)
    return {
        "schema_version": 1,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "git_commit": git_commit(),
        "bundle": str(bundle.folder),
        "model": bundle.model,
        "keras_model": list(source.paths) if source else None,
        "machine": {
            **info,
            "fp32_peak": peaks,
            "ceilings": ceilings,
            "fp32_peak_method": (
                f"measured: fastest square float32 numpy matmul of sizes {PEAK_MATMUL_SIZES} "
                "with OpenBLAS threads = thread count; theoretical: "
                f"{machine.FMA_UNITS} FMA units x {info['fp32_lanes']} lanes x 2 flops x cpu MHz "
                "from /proc/cpuinfo x threads (the reported clock, often the base clock: "
                "boost can take real code above it)"
            ),
        },
        "settings": {**asdict(settings), "timer": "time.perf_counter around engine.run, numpy in and out; gc off while timing"},
        "flops": flops,
        "cells": [asdict(cell) for cell in cells],
        "failures": failures,
        "browser": browser,
        "notes": notes,
    }
