"""Training throughput (images/s) by Keras backend, XLA compilation and precision, written to
results/train_throughput.md and .json.

    .venv/bin/python benchmarks/train_throughput.py [--backends tensorflow,jax,torch] [--precisions float32]
                                                    [--variant small] [--steps 40] [--batch-size 32]
                                                    [--decoder-layouts mirror,full-resolution] [--rounds 3] [--tag cpu]

Every combination runs in a fresh process, since Keras fixes its backend at import. Each
times `fit` over `--steps` batches of the embedded digits, after a warm-up `fit` that traces
and compiles, so the figure is what training sees, callbacks and data feeding included.
TensorFlow runs with XLA off (its default for this model) and on; JAX always compiles;
PyTorch runs eagerly (Keras' jit_compile on torch is torch.compile, not measured here).
The machine's 1-minute load average before and after is recorded: on a shared machine,
compare rows of one run with each other, not with other runs; `--rounds` repeats the whole
sweep, interleaved, and the table gives each combination's median.
On CPUs without native float16/bfloat16 arithmetic the mixed policies are expected to be
slower, not faster.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from importlib.metadata import version
from importlib.util import find_spec
from pathlib import Path

from vae_edge.registry import DecoderLayout

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

RESULTS = Path(__file__).resolve().parent / "results"


def measure(backend: str, precision: str, jit: bool, variant: str, batch_size: int, steps: int, warmup: int,
            decoder_layout: str) -> dict:
    """Run in the worker process, whose KERAS_BACKEND is `backend`."""
    import keras
    import numpy as np

    from vae_edge.data import load_dataset
    from vae_edge.train import TrainConfig
    from vae_edge.train.devices import list_devices
    from vae_edge.train.loop import build_model

    images = load_dataset("mnist-5k", seed=0).train
    needed = (warmup + steps) * batch_size  # large batches cycle through the data set, so every step is a full batch
    images = np.resize(images, (max(needed, len(images)), *images.shape[1:]))
    config = TrainConfig(variant=variant, precision=precision, batch_size=batch_size, decoder_layout=decoder_layout)
    keras.utils.set_random_seed(0)
    model = build_model(config, images.shape[1:], total_steps=warmup + steps, jit_compile=jit)
    start = time.perf_counter()
    model.fit(images[: warmup * batch_size], batch_size=batch_size, epochs=1, verbose=0)
    first_s = time.perf_counter() - start
    start = time.perf_counter()
    model.fit(images[warmup * batch_size:][: steps * batch_size], batch_size=batch_size, epochs=1, verbose=0)
    seconds = time.perf_counter() - start
    return {"backend": backend, "device": list_devices()[0], "precision": precision, "decoder_layout": decoder_layout,
            "jit_compile": jit, "batch_size": batch_size, "steps": steps, "warmup_s": first_s,
            "seconds": seconds, "images_per_s": steps * batch_size / seconds}


def run_worker(backend: str, precision: str, jit: bool, layout: str, args) -> dict:
    """One combination in a fresh Python with KERAS_BACKEND set; its result comes back as JSON."""
    command = [sys.executable, __file__, "--worker", backend, precision, str(int(jit)), layout, "--variant", args.variant,
               "--steps", str(args.steps), "--warmup", str(args.warmup), "--batch-size", str(args.batch_size)]
    done = subprocess.run(command, env={**os.environ, "KERAS_BACKEND": backend}, capture_output=True, text=True)
    if done.returncode:
        lines = done.stderr.strip().splitlines()
        reason = next((line.strip() for line in lines if "Detected unsupported operations" in line), lines[-1])
        return {"backend": backend, "precision": precision, "jit_compile": jit, "decoder_layout": layout, "error": reason}
    return json.loads(done.stdout.strip().splitlines()[-1])


def write_markdown(results: list[dict], info: dict, args, path: Path) -> None:
    combinations: dict[tuple, list[dict]] = {}
    for r in results:
        combinations.setdefault((r["backend"], r["jit_compile"], r["precision"], r["decoder_layout"]), []).append(r)
    medians = {key: statistics.median(r["images_per_s"] for r in runs) if all("error" not in r for r in runs) else None
               for key, runs in combinations.items()}
    baseline = next(value for value in medians.values() if value is not None)
    rows = ["| backend | XLA | precision | decoder | device | images/s (median) | each round | vs first row | warm-up |",
            "|---|---|---|---|---|---|---|---|---|"]
    for (backend, jit, precision, layout), runs in combinations.items():
        xla = "on" if jit else "off"
        median = medians[(backend, jit, precision, layout)]
        if median is None:
            error = next(r["error"] for r in runs if "error" in r)
            rows.append(f"| {backend} | {xla} | {precision} | {layout} | - | failed: {error[:300]} | - | - | - |")
            continue
        rounds = ", ".join(f"{r['images_per_s']:.0f}" for r in runs)
        rows.append(f"| {backend} | {xla} | {precision} | {layout} | {runs[0]['device']} | {median:.0f} | {rounds} | "
                    f"{median / baseline:.2f}x | {statistics.median(r['warmup_s'] for r in runs):.1f} s |")
    versions = info["versions"]
    path.write_text("\n\n".join([
        f"# Training throughput: {args.variant}",
        f"{info['cpu']}, {info['usable_cores']} usable cores, {' '.join(info['vector_extensions'])}; "
        f"TensorFlow {versions.get('tensorflow-cpu', versions.get('tensorflow', '?'))}, "
        f"JAX {versions.get('jax', '-')}, PyTorch {versions.get('torch', '-')}, Keras {versions.get('keras', '?')}; "
        f"1-minute load average {info['load_before']:.1f} before, {info['load_after']:.1f} after.",
        f"`fit` over {args.steps} batches of {args.batch_size} after a {args.warmup}-batch warm-up `fit`; "
        f"a fresh process per run, {args.rounds} round(s) of the whole sweep, interleaved. Command: "
        f"`python benchmarks/train_throughput.py --backends {args.backends} --precisions {args.precisions} "
        f"--variant {args.variant} --steps {args.steps} --batch-size {args.batch_size} "
        f"--decoder-layouts {args.decoder_layouts} --rounds {args.rounds}" + (f" --tag {args.tag}`." if args.tag else "`."),
        "\n".join(rows),
    ]) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="tensorflow,jax,torch", help="Comma-separated Keras backends.")
    parser.add_argument("--precisions", default="float32,mixed_bfloat16", help="Comma-separated dtype policies.")
    parser.add_argument("--variant", default="small")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--decoder-layouts", default=str(DecoderLayout.MIRROR), help="Comma-separated, from: "
                        f"{', '.join(DecoderLayout)}.")
    parser.add_argument("--rounds", type=int, default=1, help="Times the whole sweep runs, interleaved.")
    parser.add_argument("--tag", default="", help="Suffix of the results files, e.g. the machine.")
    parser.add_argument("--worker", nargs=4, metavar=("BACKEND", "PRECISION", "JIT", "LAYOUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        backend, precision, jit, layout = args.worker
        print(json.dumps(measure(backend, precision, jit == "1", args.variant, args.batch_size, args.steps, args.warmup,
                                 layout)))
        return
    from vae_edge.bench import machine

    results = []
    load_before = os.getloadavg()[0]
    combinations = [(backend, precision, jit, layout)
                    for backend in args.backends.split(",")
                    for precision in args.precisions.split(",")
                    for jit in ((False, True) if backend == "tensorflow" else (backend != "torch",))
                    for layout in args.decoder_layouts.split(",")]
    for _ in range(args.rounds):
        for backend, precision, jit, layout in combinations:
            results.append(run_worker(backend, precision, jit, layout, args))
            r = results[-1]
            print(f"{backend:<11} xla={'on ' if jit else 'off'} {precision:<15} {layout:<16}"
                  + (f"{r['images_per_s']:8.0f} images/s" if "error" not in r else f"failed: {r['error']}"), flush=True)
    info = {**machine.describe(), "load_before": load_before, "load_after": os.getloadavg()[0]}
    info["versions"] = {**info["versions"], **{name: version(name) for name in ("jax", "torch") if find_spec(name)}}
    RESULTS.mkdir(parents=True, exist_ok=True)
    record = {"variant": args.variant, "machine": info, "results": results}
    stem = "train_throughput" + (f"-{args.tag}" if args.tag else "")
    (RESULTS / f"{stem}.json").write_text(json.dumps(record, indent=2) + "\n")
    write_markdown(results, info, args, RESULTS / f"{stem}.md")
    print(f"wrote {RESULTS / stem}.md")


if __name__ == "__main__":
    main()
