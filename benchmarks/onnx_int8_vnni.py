"""Does ONNX int8 run within 1.3x of LiteRT int8 on this CPU? The ONNX int8, ONNX
float32 and LiteRT int8 encoder and decoder of one bundle, timed side by side through the
runtime's own engines (`vae_edge.runtime.engines`, so with its session options) at batch 1 on
one thread and at batch 64 on every usable core; with the operators of each ONNX file before and
after onnxruntime's optimizations (the graph it really runs), the ELBO cost of each int8 pipeline
on held-out images, and the CPU's model and vector extensions.

    .venv/bin/python benchmarks/onnx_int8_vnni.py BUNDLE [--baseline OLD_BUNDLE] [--model MODEL.keras]

BUNDLE needs onnx/{encoder,decoder}.{int8,float32}.onnx and tflite/{encoder,decoder}.int8.tflite;
with --model it is exported first (`vae-edge export MODEL --format tflite --format onnx --quantize
float32 --quantize int8 --static-batch 0 --no-verify --out BUNDLE`; this script scores the ELBO
itself). --baseline times another bundle's ONNX int8 files beside them (e.g. exported by an
earlier version). Each subject is timed once per round,
in a shuffled order, for --rounds rounds; a subject's latency is the median over rounds of its p50,
and its ratio to LiteRT int8 the median of the per-round ratios, so load from other jobs on a shared
machine hits both sides of a ratio alike. Writes NAME.json and NAME.md under --out.
"""

import argparse
import math
import random
import statistics
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np

from vae_edge.bench.machine import describe, usable_cores
from vae_edge.bench.worker import timed_runs
from vae_edge.cpu import cpu_class
from vae_edge.data import load_dataset
from vae_edge.elbo import evaluate_pipeline
from vae_edge.fsutil import write_json, write_text
from vae_edge.labels import one_hot
from vae_edge.registry import Graph
from vae_edge.runtime.engines import LiteRTEngine, OnnxEngine
from vae_edge.signatures import IMAGE, LABEL, Z_LOG_VAR, Z_MEAN, Z

RESULTS = Path(__file__).resolve().parent / "results"
GOAL = 1.3  # ONNX int8 within 1.3x of LiteRT int8
REFERENCE = "litert-int8"
# Operators worth watching in the optimized graphs: layout moves, upsampling, integer and float kernels.
WATCHED = ("Transpose", "DepthToSpace", "Concat", "QLinearConcat", "Resize", "QLinearConv", "QGemm", "Conv", "FusedConv",
           "Conv (NCHWc)", "QuantizeLinear", "DequantizeLinear")
NCHWC = "com.microsoft.nchwc"  # onnxruntime's blocked-layout float kernels


def subjects_of(bundle: Path, baseline: Path | None) -> dict[str, dict[Graph, Path]]:
    """Subject name -> graph -> file; the reference first."""
    found = {REFERENCE: {g: bundle / "tflite" / f"{g}.int8.tflite" for g in Graph},
             "onnx-int8": {g: bundle / "onnx" / f"{g}.int8.onnx" for g in Graph},
             "onnx-float32": {g: bundle / "onnx" / f"{g}.float32.onnx" for g in Graph}}
    if baseline:
        found["baseline-onnx-int8"] = {g: baseline / "onnx" / f"{g}.int8.onnx" for g in Graph}
    missing = [str(path) for files in found.values() for path in files.values() if not path.is_file()]
    if missing:
        sys.exit(f"missing: {', '.join(missing)}; export with --format tflite --format onnx --quantize float32 --quantize int8")
    return found


def engine(path: Path, threads: int):
    return (LiteRTEngine if path.suffix == ".tflite" else OnnxEngine)(path, num_threads=threads)


def feeds_for(spec_engine, batch: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Latents from the prior, random one-hot labels, uniform pixels."""
    feeds = {}
    for spec in spec_engine.inputs:
        shape = (batch, *spec["shape"][1:])
        if spec["name"] == Z:
            feeds[Z] = rng.standard_normal(shape).astype(np.float32)
        elif spec["name"] == LABEL:
            feeds[LABEL] = one_hot(rng.integers(0, shape[1], batch), shape[1])
        else:
            feeds[spec["name"]] = rng.uniform(0, 1, shape).astype(np.float32)
    return feeds


def p50_ms(run, feeds, min_seconds: float) -> float:
    """Median ms of back-to-back calls (the bench workers' timing loop), at least 10 and `min_seconds`."""
    return statistics.median(timed_runs(lambda: run(feeds), warmup=3, runs=10, min_seconds=min_seconds,
                                        max_seconds=math.inf)) * 1e3


def measure(subjects: dict, configs: dict, rounds: int, min_seconds: float) -> dict:
    """config -> graph -> subject -> {p50_ms, ratio_to_litert_int8, p50_ms_rounds}."""
    rng = np.random.default_rng(0)
    cells = {}  # (config, graph, subject) -> (engine, feeds)
    for config, (batch, threads) in configs.items():
        for graph in Graph:
            engines = {name: engine(files[graph], threads) for name, files in subjects.items()}
            feeds = feeds_for(engines[REFERENCE], batch, rng)
            cells.update({(config, str(graph), name): (e, feeds) for name, e in engines.items()})
    rounds_ms: dict[tuple, list[float]] = {key: [] for key in cells}
    order = list(cells)
    for index in range(rounds):
        random.Random(index).shuffle(order)
        for key in order:
            runner, feeds = cells[key]
            rounds_ms[key].append(p50_ms(runner.run, feeds, min_seconds))
        print(f"round {index + 1}/{rounds}", flush=True)
    results: dict = {}
    for (config, graph, name), values in rounds_ms.items():
        reference = rounds_ms[(config, graph, REFERENCE)]
        results.setdefault(config, {}).setdefault(graph, {})[name] = {
            "p50_ms": statistics.median(values),
            "ratio_to_litert_int8": statistics.median(v / r for v, r in zip(values, reference)),
            "p50_ms_rounds": values,
        }
    return results


def node_counts(path: Path, scratch: Path, label: str) -> dict[str, dict[str, int]]:
    """Operators in the file and in the graph onnxruntime runs after its optimizations (the default level,
    ORT_ENABLE_ALL, which the runtime uses); its blocked-layout float kernels are marked (NCHWc)."""
    import onnx
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.optimized_model_filepath = str(scratch / f"{label}.optimized.onnx")
    ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    def ops(file: Path) -> dict[str, int]:
        nodes = onnx.load(str(file)).graph.node
        return dict(sorted(Counter(f"{n.op_type} (NCHWc)" if n.domain == NCHWC else n.op_type for n in nodes).items()))

    return {"file": ops(path), "optimized": ops(Path(options.optimized_model_filepath))}


def elbo_costs(bundle: Path, subjects: dict, heldout: int) -> dict:
    """-ELBO of each pipeline (encoder then decoder of one subject) on the data set's held-out images, and
    the cost of each int8 pipeline against ONNX float32's."""
    import json

    manifest = json.loads((bundle / "manifest.json").read_text())
    if any(spec["name"] == LABEL for a in manifest["artifacts"] for spec in a["inputs"]):
        return {"skipped": "a conditional model: run `vae-edge verify` for its per-class ELBO"}
    images = load_dataset(manifest["model"].get("dataset") or "mnist-5k").test[:heldout]
    scores = {}
    for name, files in subjects.items():
        encoder, decoder = engine(files[Graph.ENCODER], usable_cores()), engine(files[Graph.DECODER], usable_cores())

        def encode(x, encoder=encoder):
            out = encoder.run({IMAGE: x})
            return out[Z_MEAN], out[Z_LOG_VAR]

        def decode(z, decoder=decoder):
            return next(iter(decoder.run({Z: z}).values()))

        scores[name] = evaluate_pipeline(encode, decode, images)["negative_elbo"]
    reference = scores["onnx-float32"]
    return {"images": len(images), "negative_elbo": scores,
            "elbo_cost_pct": {name: 100 * (value - reference) / abs(reference) for name, value in scores.items()}}


def export(model: Path, bundle: Path) -> None:
    command = [str(Path(sys.executable).with_name("vae-edge")), "export", str(model), "--format", "tflite", "--format", "onnx",
               "--quantize", "float32", "--quantize", "int8", "--static-batch", "0", "--no-verify", "--out", str(bundle),
               "--force"]
    print(" ".join(command), flush=True)
    subprocess.run(command, check=True)


def markdown(report: dict) -> str:
    machine, configs = report["machine"], report["configs"]
    lines = [f"# ONNX int8 against LiteRT int8 (goal: within {GOAL}x)", "",
             f"`{report['command']}`", "", *([report["note"], ""] if report["note"] else []),
             f"CPU: {machine['cpu']} (class {report['cpu_class']}), {machine['usable_cores']} usable cores; "
             f"vector extensions: {', '.join(machine['vector_extensions'])}; onnxruntime "
             f"{machine['versions'].get('onnxruntime')}, ai-edge-litert {machine['versions'].get('ai-edge-litert')}. "
             f"Medians over {report['rounds']} shuffled rounds of each subject's p50; ratios are medians of per-round ratios.",
             "", "## Latency (p50, ms) and ratio to LiteRT int8", ""]
    names = list(next(iter(next(iter(report["speed"].values())).values())))
    lines += ["| graph | batch, threads | " + " | ".join(names) + f" | ONNX int8 within {GOAL}x |",
              "|---|---|" + "---|" * (len(names) + 1)]
    for config, (batch, threads) in configs.items():
        for graph, cells in report["speed"][config].items():
            row = [f"{cells[n]['p50_ms']:.3f} ({cells[n]['ratio_to_litert_int8']:.2f}x)" for n in names]
            met = "yes" if cells["onnx-int8"]["ratio_to_litert_int8"] <= GOAL else "**no**"
            lines.append(f"| {graph} | {batch}, {threads} | " + " | ".join(row) + f" | {met} |")
    lines += ["", "## Operators: in the file -> in the graph onnxruntime runs (ORT_ENABLE_ALL)", "",
              "| file | nodes | " + " | ".join(WATCHED) + " |", "|---|---|" + "---|" * len(WATCHED)]
    for name, counts in report["node_counts"].items():
        file, optimized = counts["file"], counts["optimized"]
        cells = [f"{file.get(op, 0)} -> {optimized.get(op, 0)}" for op in WATCHED]
        lines.append(f"| {name} | {sum(file.values())} -> {sum(optimized.values())} | " + " | ".join(cells) + " |")
    elbo = report.get("elbo")
    if elbo and "negative_elbo" in elbo:
        lines += ["", f"## ELBO on {elbo['images']} held-out images (cost against ONNX float32)", "",
                  "| pipeline | -ELBO (nats) | ELBO cost |", "|---|---|---|"]
        costs = elbo["elbo_cost_pct"]
        lines += [f"| {name} | {value:.3f} | {costs[name]:+.3f}% |" for name, value in elbo["negative_elbo"].items()]
    elif elbo:
        lines += ["", f"ELBO: {elbo['skipped']}"]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", type=Path)
    parser.add_argument("--model", type=Path, help="export BUNDLE from this .keras first")
    parser.add_argument("--baseline", type=Path, help="a bundle whose ONNX int8 files are timed beside")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--min-seconds", type=float, default=0.3, help="timed seconds per subject and round")
    parser.add_argument("--heldout", type=int, default=1000, help="held-out images for the ELBO (0: skip)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--name", default="onnx_int8_vnni", help="file stem of the results")
    parser.add_argument("--note", default="", help="a sentence for the report, e.g. what the baseline is")
    args = parser.parse_args()
    if args.model:
        export(args.model, args.bundle)
    subjects = subjects_of(args.bundle, args.baseline)
    configs = {"b1": (1, 1), "b64": (64, usable_cores())}
    args.out.mkdir(parents=True, exist_ok=True)
    scratch = args.out / f".{args.name}.graphs"
    scratch.mkdir(exist_ok=True)
    counts = {f"{name} {graph}": node_counts(files[graph], scratch, f"{name}.{graph}")
              for name, files in subjects.items() if name != REFERENCE for graph in Graph}
    for path in scratch.iterdir():
        path.unlink()
    scratch.rmdir()
    command = [f"benchmarks/{Path(sys.argv[0]).name}", *sys.argv[1:]]
    if args.note:  # shown on its own
        at = command.index("--note") if "--note" in command else None
        command = command[:at] + ["--note", "..."] + command[at + 2:] if at else command
    report = {"command": " ".join(command), "note": args.note, "machine": describe(),
              "cpu_class": str(cpu_class()), "configs": configs, "rounds": args.rounds, "node_counts": counts,
              "elbo": elbo_costs(args.bundle, subjects, args.heldout) if args.heldout else None,
              "speed": measure(subjects, configs, args.rounds, args.min_seconds)}
    write_json(args.out / f"{args.name}.json", report)
    text = markdown(report)
    write_text(args.out / f"{args.name}.md", text)
    print(text)


if __name__ == "__main__":
    main()
