"""Training throughput (images/s) of the `small` variant in float32, mixed_float16 and
mixed_bfloat16 over a few steps on the embedded digits, written to results/train_throughput.md.

    .venv/bin/python benchmarks/train_throughput.py [--steps 30] [--batch-size 64]

On CPUs without native float16/bfloat16 arithmetic the mixed policies are expected to be
slower, not faster: this script is the evidence for which precision to train in.
"""

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")
RESULTS = Path(__file__).resolve().parent / "results"


def throughput(precision: str, images, variant: str, batch_size: int, steps: int, warmup: int) -> dict:
    """First-step (trace and compile) seconds, then images/s over `steps` timed train steps."""
    from vae_edge.train import TrainConfig, build_model

    model = build_model(TrainConfig(variant=variant, precision=precision, batch_size=batch_size), images.shape[1:])
    batches = [images[(i * batch_size) % (len(images) - batch_size):][:batch_size] for i in range(warmup + steps + 1)]
    start = time.perf_counter()
    model.train_on_batch(batches[0])
    first_s = time.perf_counter() - start
    for batch in batches[1:warmup + 1]:
        model.train_on_batch(batch)
    start = time.perf_counter()
    for batch in batches[warmup + 1:]:
        model.train_on_batch(batch)
    seconds = time.perf_counter() - start
    return {"precision": precision, "first_step_s": first_s, "steps": steps, "batch_size": batch_size,
            "seconds": seconds, "images_per_s": steps * batch_size / seconds}


def write_markdown(results: list[dict], info: dict, variant: str, path: Path) -> None:
    baseline = results[0]["images_per_s"]
    rows = ["| precision | images/s | vs float32 | first step (trace) |", "|---|---|---|---|"] + [
        f"| {r['precision']} | {r['images_per_s']:.0f} | {r['images_per_s'] / baseline:.2f}x | {r['first_step_s']:.1f} s |"
        for r in results
    ]
    path.write_text("\n\n".join([
        f"# Training throughput: {variant}",
        f"{info['cpu']}, {info['usable_cores']} usable cores, {' '.join(info['vector_extensions'])}; "
        f"TensorFlow {info['versions'].get('tensorflow-cpu', info['versions'].get('tensorflow', '?'))}, "
        f"Keras {info['versions'].get('keras', '?')}.",
        f"{results[0]['steps']} timed `train_on_batch` steps of batch {results[0]['batch_size']} after warm-up, one model per precision.",
        "\n".join(rows),
    ]) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", default="small")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()
    from vae_edge.bench import machine
    from vae_edge.data import load_dataset

    images = load_dataset("mnist-5k", seed=0).train
    results = []
    for precision in PRECISIONS:
        results.append(throughput(precision, images, args.variant, args.batch_size, args.steps, args.warmup))
        print(f"{precision:<16} {results[-1]['images_per_s']:8.0f} images/s")
    info = machine.describe()
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "train_throughput.json").write_text(json.dumps({"variant": args.variant, "machine": info, "results": results}, indent=2) + "\n")
    write_markdown(results, info, args.variant, RESULTS / "train_throughput.md")
    print(f"wrote {RESULTS / 'train_throughput.md'}")


if __name__ == "__main__":
    main()
