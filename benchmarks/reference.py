"""The committed reference benchmark: train (or reuse) a model per variant, export every
format, run `vae-edge bench` with its defaults, and copy the report into results/<variant>/.

    .venv/bin/python benchmarks/reference.py                 # small
    .venv/bin/python benchmarks/reference.py --variant medium

Run it on a quiet machine: every other process competes for the cores being timed.
"""

import argparse
import os
import shutil
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"


def trained_model(variant: str, epochs: int, retrain: bool) -> Path:
    """runs/reference-<variant>/model.keras, trained on the embedded digits unless it exists."""
    from vae_edge.train import TrainConfig, train

    run_dir = Path("runs") / f"reference-{variant}"
    if retrain or not (run_dir / "model.keras").is_file():
        train(TrainConfig(variant=variant, epochs=epochs), run_dir, force=True, verbose=2)
    return run_dir / "model.keras"


def exported_bundle(model_path: Path, variant: str, reexport: bool) -> Path:
    """export/reference-<variant>/ with every format and mode, verified, unless it exists."""
    from vae_edge.cli.common import run_splits
    from vae_edge.export import export_bundle
    from vae_edge.model.source import load_graphs

    bundle_dir = Path("export") / f"reference-{variant}"
    if reexport or not (bundle_dir / "manifest.json").is_file():
        splits = run_splits(model_path)
        export_bundle(load_graphs(model_path), bundle_dir, calibration_images=splits.train, heldout_images=splits.test,
                      dataset=splits.name, force=True)
    return bundle_dir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", action="append", help="small (default), medium, ... (repeatable)")
    parser.add_argument("--epochs", type=int, default=3,
                        help="training epochs when no model exists (latency does not depend on them)")
    parser.add_argument("--retrain", action="store_true", help="train and export again even if a model and bundle exist")
    args = parser.parse_args()
    os.chdir(REPO)  # relative paths in the committed report
    from vae_edge.bench.harness import BenchSettings, run_bench
    from vae_edge.bench.report import format_table, write_all

    for variant in args.variant or ["small"]:
        model_path = trained_model(variant, args.epochs, args.retrain)
        bundle_dir = exported_bundle(model_path, variant, args.retrain)
        report = run_bench(bundle_dir, BenchSettings())
        print(format_table(report))
        destination = RESULTS / variant
        destination.mkdir(parents=True, exist_ok=True)
        for written in write_all(report, bundle_dir):
            shutil.copy2(written, destination / written.name)
        print(f"\ncopied bench.md, bench.json, bench.png to {destination.relative_to(REPO)}/")


if __name__ == "__main__":
    main()
