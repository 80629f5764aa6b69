"""Helpers shared by the command modules."""

import json
from pathlib import Path

import click

from vae_edge.data import load_dataset


def read_run_config(model_path: Path) -> dict:
    """The `train_config.json` saved beside a trained model, or {} if there is none."""
    config = Path(model_path).parent / "train_config.json"
    return json.loads(config.read_text()) if config.is_file() else {}


def run_splits(model_path: Path, dataset: str | None = None, seed: int | None = None, max_samples: int | None = None):
    """The data splits a model was trained on (same data set and seed), unless overridden."""
    run = read_run_config(model_path)
    return load_dataset(
        dataset or run.get("dataset", "mnist-5k"),
        seed=run.get("seed", 0) if seed is None else seed,
        max_samples=max_samples or run.get("max_samples"),
        image_size=run.get("image_size"),
        channels=run.get("channels"),
    )


def model_option(help: str):
    """`--model`: the Keras model a bundle was exported from (the manifest names it by default)."""
    return click.option("--model", "model_path", type=click.Path(path_type=Path), help=help)
