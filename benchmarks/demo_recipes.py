"""Training recipes for the demo's budget: test -ELBO of `small` on the embedded digits against
epochs, batch size and learning rate, written to results/demo_recipes[-TAG].md and .json.

    .venv/bin/python benchmarks/demo_recipes.py [--recipes e8,e12-b16] [--jobs 1] [--tag cpu]

Each recipe trains in a fresh process through `vae_edge.train.train` (the demo's own code,
best checkpoint by validation loss) and is scored on the test split by `evaluate_splits`.
How good a recipe is per epoch does not depend on the machine, so a GPU can rank many
recipes at once (`--jobs 8`, one process each, sharing the GPU); what an epoch costs does,
so the CPU's seconds per epoch come from a run on the CPU. Backends draw different random
numbers: compare recipes of one run, and confirm a choice on the backend the demo uses.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from vae_edge.registry import DecoderLayout

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")  # several JAX processes share one GPU

RESULTS = Path(__file__).resolve().parent / "results"

# name -> TrainConfig fields that differ from BASE and the defaults (variant small, batch 32, warm-up
# 5 % then cosine decay, clipping at 200).
BASE = {"learning_rate": 2e-3}
RECIPES: dict[str, dict] = {
    # The CPU's budget: a few epochs, and what batch size and peak learning rate make of them.
    "e8": {"epochs": 8},
    "e10": {"epochs": 10},
    "e12": {"epochs": 12},
    "e14": {"epochs": 14},
    "e16": {"epochs": 16},
    "e20": {"epochs": 20},
    "e8-b16": {"epochs": 8, "batch_size": 16},
    "e12-b16": {"epochs": 12, "batch_size": 16},
    "e8-lr4e-3": {"epochs": 8, "learning_rate": 4e-3},
    "e12-lr4e-3": {"epochs": 12, "learning_rate": 4e-3},
    "e8-b64-lr4e-3": {"epochs": 8, "batch_size": 64, "learning_rate": 4e-3},
    "e12-b64-lr4e-3": {"epochs": 12, "batch_size": 64, "learning_rate": 4e-3},
    "e16-b64-lr4e-3": {"epochs": 16, "batch_size": 64, "learning_rate": 4e-3},
    "e10-lr4e-3": {"epochs": 10, "learning_rate": 4e-3},
    "e11-lr4e-3": {"epochs": 11, "learning_rate": 4e-3},
    "e13-lr4e-3": {"epochs": 13, "learning_rate": 4e-3},
    "e10-lr6e-3": {"epochs": 10, "learning_rate": 6e-3},
    "e12-lr6e-3": {"epochs": 12, "learning_rate": 6e-3},
    "e10-b16-lr3e-3": {"epochs": 10, "batch_size": 16, "learning_rate": 3e-3},
    "e12-b16-lr3e-3": {"epochs": 12, "batch_size": 16, "learning_rate": 3e-3},
    "e12-lr4e-3-noclip": {"epochs": 12, "learning_rate": 4e-3, "clip_norm": None},
    # An accelerator's budget.
    "e30": {"epochs": 30},
    "e45": {"epochs": 45},
    "e60": {"epochs": 60},
    "e90": {"epochs": 90},
    "e120": {"epochs": 120},
    "e60-b64-lr4e-3": {"epochs": 60, "batch_size": 64, "learning_rate": 4e-3},
    "e90-b64-lr4e-3": {"epochs": 90, "batch_size": 64, "learning_rate": 4e-3},
}
# The decoder's layout at the CPU's and an accelerator's budgets, two seeds. Earlier results name the
# layouts as the sweep did: shifted = full-resolution, mirror0 = mirror (benchmarks/README.md).
for _layout in DecoderLayout:
    for _epochs in (10, 13, 14, 15, 16):
        for _seed in (0, 1):
            RECIPES[f"{_layout}-e{_epochs}-lr6e-3" + (f"-s{_seed}" if _seed else "")] = {
                "epochs": _epochs, "learning_rate": 6e-3, "seed": _seed, "decoder_layout": _layout.value}
    for _epochs in (60, 75, 90):
        for _seed in (0, 1, 2):
            RECIPES[f"{_layout}-e{_epochs}" + (f"-s{_seed}" if _seed else "")] = {
                "epochs": _epochs, "seed": _seed, "decoder_layout": _layout.value}


def measure(name: str, importance_samples: int) -> dict:
    """Train and score one recipe (in the worker process)."""
    from vae_edge.data import load_dataset
    from vae_edge.model.loading import load_vae
    from vae_edge.train import TrainConfig, train
    from vae_edge.train.devices import list_devices
    from vae_edge.train.evaluation import evaluate_splits

    config = TrainConfig(**{**BASE, **RECIPES[name]})
    with tempfile.TemporaryDirectory(prefix="demo-recipe-") as scratch:
        started = time.perf_counter()
        result = train(config, Path(scratch) / name, verbose=0, log=lambda line: None)
        train_s = time.perf_counter() - started
        model = load_vae(result.run_dir / "model.keras")
        history = json.loads((result.run_dir / "history.json").read_text())
    splits = load_dataset(config.dataset, seed=config.seed, max_samples=config.max_samples)
    scores = evaluate_splits(model, splits, importance_samples=importance_samples, seed=config.seed)
    return {
        "recipe": name, "settings": RECIPES[name], "epochs": config.epochs, "batch_size": config.batch_size,
        "learning_rate": config.learning_rate, "backend": history["backend"], "device": list_devices()[0],
        "train_s": train_s, "seconds_per_epoch": result.seconds_per_epoch, "best_epoch": history["best_epoch"],
        "negative_elbo": scores["negative_elbo"], "iw_nll": scores.get("iw_nll"),
    }


def run_worker(name: str, args) -> dict:
    """One recipe in a fresh Python; its result comes back as the last line of its stdout."""
    command = [sys.executable, __file__, "--worker", name, "--importance-samples", str(args.importance_samples)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode:
        return {"recipe": name, "settings": RECIPES[name], "error": (done.stderr.strip().splitlines() or ["?"])[-1]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def write_markdown(results: list[dict], info: dict, args, path: Path) -> None:
    rows = ["| recipe | epochs | batch | peak lr | backend, device | test -ELBO | IW-NLL | best epoch | s/epoch | train s |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        if "error" in r:
            rows.append(f"| {r['recipe']} | failed: {r['error'][:200]} |||||||||")
            continue
        iw = f"{r['iw_nll']:.2f}" if r["iw_nll"] is not None else "-"
        rows.append(f"| {r['recipe']} | {r['epochs']} | {r['batch_size']} | {r['learning_rate']:g} | {r['backend']}, "
                    f"{r['device']} | {r['negative_elbo']:.2f} | {iw} | {r['best_epoch']} | {r['seconds_per_epoch']:.1f} | "
                    f"{r['train_s']:.0f} |")
    path.write_text("\n\n".join([
        "# Demo recipes: `small` on mnist-5k",
        f"{info['cpu']}, {info['usable_cores']} usable cores, {' '.join(info['vector_extensions'])}; "
        f"{args.jobs} recipe(s) at a time, so seconds per epoch are comparable only within one run and "
        f"only when --jobs is 1; 1-minute load average {info['load_before']:.1f} before, {info['load_after']:.1f} after.",
        f"Command: `python benchmarks/demo_recipes.py --recipes {','.join(r['recipe'] for r in results)} "
        f"--jobs {args.jobs} --importance-samples {args.importance_samples}"
        + (f" --tag {args.tag}`" if args.tag else "`") + ". Seed 0; best checkpoint by validation loss.",
        "\n".join(rows),
    ]) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipes", default=",".join(RECIPES), help=f"Comma-separated, from: {', '.join(RECIPES)}.")
    parser.add_argument("--jobs", type=int, default=1, help="Recipes trained at once (one process each).")
    parser.add_argument("--importance-samples", type=int, default=0, help="k of the IW-NLL (0: skip it).")
    parser.add_argument("--tag", default="", help="Suffix of the results files, e.g. the machine.")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(measure(args.worker, args.importance_samples)))
        return
    names = args.recipes.split(",")
    unknown = [name for name in names if name not in RECIPES]
    if unknown:
        parser.error(f"unknown recipes {', '.join(unknown)}; choose from {', '.join(RECIPES)}")
    from vae_edge.bench import machine

    load_before = os.getloadavg()[0]
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        results = []
        for result in pool.map(lambda name: run_worker(name, args), names):
            results.append(result)
            print(json.dumps(result), flush=True)
    info = {**machine.describe(), "load_before": load_before, "load_after": os.getloadavg()[0]}
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = "demo_recipes" + (f"-{args.tag}" if args.tag else "")
    (RESULTS / f"{stem}.json").write_text(json.dumps({"machine": info, "results": results}, indent=2) + "\n")
    write_markdown(results, info, args, RESULTS / f"{stem}.md")
    print(f"wrote {RESULTS / stem}.md")


if __name__ == "__main__":
    main()
