"""Helpers shared by the command modules."""

import json
from pathlib import Path

import click

from vae_edge.data import load_dataset
from vae_edge.registry import ALL, APPS, DEFAULT_STATIC_BATCH, FORMATS, MODES, names


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


def export_target_options(function):
    """`--format`, `--quantize` and `--static-batch`: what `export` and `run` write, from the registry."""
    function = click.option(
        "--static-batch", default=DEFAULT_STATIC_BATCH, show_default=True, type=click.IntRange(min=0),
        help="Batch of the fixed-shape files that mobile accelerators need; 0 writes none.",
    )(function)
    function = click.option(
        "--quantize", "modes", multiple=True, type=click.Choice(names(MODES)),
        help="Mode (repeatable). Default: every mode of each format.",
    )(function)
    return click.option(
        "--format", "formats", multiple=True, default=[ALL], show_default=True, type=click.Choice(names(FORMATS, APPS, [ALL])),
        help="Export format or app (repeatable); `web` brings the ONNX files it runs.",
    )(function)
