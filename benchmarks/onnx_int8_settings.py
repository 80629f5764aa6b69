"""Which ONNX int8 settings pay off on this CPU: accuracy and speed of every candidate in
`vae_edge.export.onnx_int8.CANDIDATES`, against the float32 ONNX graphs of a bundle.

    python benchmarks/onnx_int8_settings.py BUNDLE --out /tmp/int8/results --max-samples N [--repeats 5] [--only NAME ...]

BUNDLE needs onnx/{encoder,decoder}.float32.onnx (and, for context, tflite/*.{float32,int8}.tflite).
Calibration: 256 training images of the bundle's data split (pass the training run's
--max-samples so the held-out test images are the ones it held out) (the decoder: their posterior
samples), as export does. Accuracy: max abs error against float32 ONNX on held-out test
images (encoder) and on their posterior samples plus prior latents (decoder), and the ELBO
cost of the int8 pipeline against the float32 pipeline (`evaluate_pipeline`). Speed: p50
latency at batch 1 with 1 thread and at batch 64 with 2 threads; every subject is measured
once per round, in a shuffled order, for `--repeats` rounds, and ratios to ONNX float32 are
taken within a round, so load from other jobs hits both sides of a ratio alike.
Writes results.json and results.md under --out.
"""

import argparse
import json
import math
import random
import statistics
import time
from pathlib import Path

import numpy as np

from vae_edge.bench.worker import timed_runs
from vae_edge.data import load_dataset, load_images
from vae_edge.elbo import evaluate_pipeline, reparameterize
from vae_edge.export.onnx_int8 import CANDIDATES, quantize
from vae_edge.prior import prior_latents
from vae_edge.registry import Graph
from vae_edge.signatures import IMAGE, Z, graph_specs

CONFIGS = {"b1t1": (1, 1), "b64t2": (64, 2)}  # name: (batch, threads)
CALIBRATION_IMAGES, CALIBRATION_BATCH = 256, 32
SPECS = graph_specs((28, 28, 1), 1)  # only the names matter here


class Ort:
    def __init__(self, path: Path, threads: int, optimized: Path | None = None):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")  # as the runtime does
        if optimized:
            options.optimized_model_filepath = str(optimized)  # the graph after the session's fusions
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name
        names = {output.name for output in self.session.get_outputs()}
        self.outputs = next(list(spec.output_names) for spec in SPECS.values() if set(spec.output_names) == names)

    def __call__(self, x: np.ndarray) -> list[np.ndarray]:
        return self.session.run(self.outputs, {self.input: x})  # in signature order (the file lists them sorted)


class LiteRT:
    def __init__(self, path: Path, threads: int, batch: int):
        from ai_edge_litert.interpreter import Interpreter

        self.interpreter = Interpreter(model_path=str(path), num_threads=threads)
        detail = self.interpreter.get_input_details()[0]
        self.interpreter.resize_tensor_input(detail["index"], [batch, *detail["shape"][1:]])
        self.interpreter.allocate_tensors()
        self.input = detail["index"]
        self.outputs = [d["index"] for d in self.interpreter.get_output_details()]

    def __call__(self, x: np.ndarray) -> list[np.ndarray]:
        self.interpreter.set_tensor(self.input, x)
        self.interpreter.invoke()
        return [self.interpreter.get_tensor(index) for index in self.outputs]


def p50_ms(run, x, min_seconds: float) -> float:
    """Median ms of back-to-back calls (the bench workers' timing loop), at least 10 and `min_seconds`."""
    return statistics.median(timed_runs(lambda: run(x), warmup=3, runs=10, min_seconds=min_seconds,
                                        max_seconds=math.inf)) * 1e3


def kernels(optimized: Path) -> dict[str, int]:
    """How many convolutions and matrix products the session runs as integer or float ops."""
    import onnx

    ops = [node.op_type for node in onnx.load(str(optimized)).graph.node]
    watched = ("QLinearConv", "Conv", "FusedConv", "QLinearMatMul", "MatMulIntegerToFloat", "MatMul", "Gemm", "QGemm",
               "FusedGemm")
    return {op: ops.count(op) for op in watched if op in ops}


def data(bundle: Path, max_samples: int | None, heldout: int):
    """Calibration images from the training split; held-out ones from the test split, then the images past
    `max_samples` that training never saw (more images make the ELBO cost less noisy)."""
    source = json.loads((bundle / "manifest.json").read_text())["model"].get("dataset") or "mnist-5k"
    splits = load_dataset(source, max_samples=max_samples)
    unseen = load_images(source)[max_samples:] if max_samples else splits.test[:0]
    return splits.train[:CALIBRATION_IMAGES], np.concatenate([splits.test, unseen])[:heldout]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--max-samples", type=int, default=None, help="the training run's --max-samples")
    parser.add_argument("--heldout", type=int, default=1000, help="held-out images for accuracy")
    parser.add_argument("--repeats", type=int, default=5, help="speed rounds (0: accuracy only)")
    parser.add_argument("--min-seconds", type=float, default=0.15)
    parser.add_argument("--only", nargs="*", default=None, help="candidate names (default: all)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    names = args.only or list(CANDIDATES)
    unknown = sorted(set(names) - set(CANDIDATES))
    if unknown:
        parser.error(f"unknown candidate(s) {unknown}; known: {', '.join(CANDIDATES)}")
    floats = {graph: args.bundle / "onnx" / f"{graph}.float32.onnx" for graph in Graph}
    calibration, heldout = data(args.bundle, args.max_samples, args.heldout)
    rng = np.random.default_rng(0)

    float_enc = Ort(floats[Graph.ENCODER], 2)
    float_dec = Ort(floats[Graph.DECODER], 2)
    calib_mean, calib_log_var = float_enc(calibration)
    calib_z = reparameterize(calib_mean, calib_log_var, rng)
    held_mean, held_log_var = float_enc(heldout)
    held_z = np.concatenate([reparameterize(held_mean, held_log_var, rng), prior_latents(64, held_mean.shape[1], seed=1)])
    inputs = {Graph.ENCODER: heldout, Graph.DECODER: held_z}
    references = {Graph.ENCODER: float_enc(heldout), Graph.DECODER: float_dec(held_z)}
    feeds = {
        Graph.ENCODER: [{IMAGE: calibration[i:i + CALIBRATION_BATCH]} for i in range(0, len(calibration), CALIBRATION_BATCH)],
        Graph.DECODER: [{Z: calib_z[i:i + CALIBRATION_BATCH]} for i in range(0, len(calib_z), CALIBRATION_BATCH)],
    }

    def pipeline(encoder, decoder) -> dict:
        return evaluate_pipeline(lambda x: tuple(encoder(x)), lambda z: decoder(z)[0], heldout)

    float_elbo = pipeline(float_enc, float_dec)["negative_elbo"]
    results: dict[str, dict] = {"float32": {"negative_elbo": float_elbo}}
    paths = {"float32": floats}
    for name in names:
        folder = args.out / "models" / name
        started = time.perf_counter()
        paths[name] = {graph: quantize(floats[graph], folder / f"{graph}.onnx", feeds[graph], CANDIDATES[name])
                       for graph in Graph}
        seconds = time.perf_counter() - started
        encoder = Ort(paths[name][Graph.ENCODER], 2, folder / "encoder.optimized.onnx")
        decoder = Ort(paths[name][Graph.DECODER], 2, folder / "decoder.optimized.onnx")
        errors = {}
        for graph, model in ((Graph.ENCODER, encoder), (Graph.DECODER, decoder)):
            errors[str(graph)] = max(float(np.max(np.abs(a - b))) for a, b in zip(model(inputs[graph]), references[graph]))
        elbo = pipeline(encoder, decoder)["negative_elbo"]
        results[name] = {"settings": CANDIDATES[name].as_dict(), "quantize_seconds": seconds, "max_abs_error": errors,
                         "negative_elbo": elbo, "elbo_cost_pct": 100 * (elbo - float_elbo) / abs(float_elbo),
                         "kernels": {str(graph): kernels(folder / f"{graph}.optimized.onnx") for graph in Graph}}
        print(f"{name:28s} enc {errors['encoder']:.4f} dec {errors['decoder']:.4f} elbo {results[name]['elbo_cost_pct']:+.3f}% "
              f"{results[name]['kernels']}",
              flush=True)

    speed = measure_speed(args, paths, {Graph.ENCODER: heldout, Graph.DECODER: held_z}) if args.repeats else {}
    (args.out / "results.json").write_text(json.dumps({"accuracy": results, "speed": speed, "configs": CONFIGS}, indent=2))
    header = "| candidate | enc max abs | dec max abs | ELBO cost | enc b1t1 | dec b1t1 | enc b64t2 | dec b64t2 |"
    lines = [header, "|" + "---|" * 8]
    for subject in dict.fromkeys([*results, *speed]):
        acc = results.get(subject, {})
        err = acc.get("max_abs_error", {})
        cells = [f"{err[g]:.4f}" if g in err else "-" for g in ("encoder", "decoder")]
        cells.append(f"{acc['elbo_cost_pct']:+.3f}%" if "elbo_cost_pct" in acc else "-")
        for config in CONFIGS:
            for graph in ("encoder", "decoder"):
                cell = speed.get(subject, {}).get(graph, {}).get(config)
                cells.append(f"{cell['p50_ms_median']:.3f} ms ({cell['ratio_to_onnx_float32']:.2f}x)" if cell else "-")
        lines.append(f"| {subject} | " + " | ".join(cells) + " |")
    (args.out / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def measure_speed(args, paths: dict, inputs: dict) -> dict:
    """p50 latency per subject, graph and config: median over rounds, and the median of per-round ratios to float32."""
    subjects = {}  # (subject, graph, config) -> callable
    for config, (batch, threads) in CONFIGS.items():
        for subject, files in paths.items():
            for graph in Graph:
                subjects[(subject, str(graph), config)] = Ort(files[graph], threads)
        for mode in ("float32", "int8"):
            for graph in Graph:
                tflite = args.bundle / "tflite" / f"{graph}.{mode}.tflite"
                if tflite.is_file():
                    subjects[(f"litert-{mode}", str(graph), config)] = LiteRT(tflite, threads, batch)
    samples = {config: {graph: inputs[graph][:batch] for graph in Graph} for config, (batch, _) in CONFIGS.items()}
    rounds: dict[tuple, list[float]] = {key: [] for key in subjects}
    order = list(subjects)
    for round_index in range(args.repeats):
        random.Random(round_index).shuffle(order)
        for key in order:
            rounds[key].append(p50_ms(subjects[key], samples[key[2]][Graph(key[1])], args.min_seconds))
        print(f"round {round_index + 1}/{args.repeats} done", flush=True)
    speed: dict = {}
    for (subject, graph, config), values in rounds.items():
        base = rounds[("float32", graph, config)]
        speed.setdefault(subject, {}).setdefault(graph, {})[config] = {
            "p50_ms_median": statistics.median(values),
            "ratio_to_onnx_float32": statistics.median(v / b for v, b in zip(values, base)),  # < 1: faster than float32
            "p50_ms_rounds": values,
        }
    return speed

if __name__ == "__main__":
    main()
