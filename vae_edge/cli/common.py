"""Helpers shared by the command modules."""

import json
from pathlib import Path

import click

from vae_edge.data import load_dataset
from vae_edge.errors import BadInputError
from vae_edge.export.options import DEFAULT_CALIBRATION_SAMPLES, MIN_CALIBRATION_SAMPLES, ExportOptions
from vae_edge.registry import (
    APPS,
    FORMATS,
    MAX_STATIC_BATCH,
    MODES,
    DecoderOutput,
    LatentRole,
    Likelihood,
    SourceKind,
    names,
)

EXPORT_DEFAULTS = ExportOptions()


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


def source_splits(source, dataset: str | None = None):
    """The images a bundle's model is calibrated and verified on: for a VAE trained by vae-edge, the splits it
    was trained on (unless `dataset` says otherwise); for any other model, `dataset`, which it must name."""
    if source.kind == SourceKind.VAE_EDGE:
        return run_splits(Path(source.paths[0]), dataset)
    if not dataset:
        raise BadInputError("--dataset is required for a model not trained by vae-edge: the images it was trained on "
                            "(mnist-5k, a Keras data set, a folder of images or a .npy/.npz file), for calibration "
                            "and verification")
    return load_dataset(dataset)


def model_source_options(function):
    """`--encoder`, `--decoder` and what a Keras VAE not trained by vae-edge may need said about it."""
    options = [
        click.option("--encoder", "encoder_path", type=click.Path(path_type=Path),
                     help="A Keras encoder (.keras): images -> z_mean, z_log_var [, z]. With --decoder, instead of MODEL."),
        click.option("--decoder", "decoder_path", type=click.Path(path_type=Path),
                     help="A Keras decoder (.keras): z -> images (probabilities, logits or Gaussian means)."),
        custom_objects_option("the model's own layer classes"),
        click.option("--likelihood", type=click.Choice(names(Likelihood)),
                     help="The decoder's likelihood. Default: bernoulli when it ends in a sigmoid."),
        click.option("--decoder-output", type=click.Choice(names(DecoderOutput)),
                     help="What the decoder returns when it does not end in a sigmoid (logits: the sigmoid is added)."),
        click.option("--encoder-outputs", metavar="ROLES",
                     help=f"The encoder's outputs in order, when their names do not say, e.g. "
                     f"{','.join(LatentRole)}."),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def custom_objects_option(what: str):
    """`--custom-objects`: modules to import for a Keras model's own layer classes (`what` they are for)."""
    return click.option("--custom-objects", "custom_objects", multiple=True, metavar="MODULE",
                        help=f"Import this module (a dotted name or a .py file) for {what} (repeatable). Keras' safe "
                        "mode stays on.")


def contract_of(likelihood, decoder_output, encoder_outputs) -> dict:
    """The model-contract keywords of `vae_edge.model.source.load_graphs` from the CLI's options."""
    roles = [role.strip() for role in encoder_outputs.split(",")] if encoder_outputs else None
    return {"likelihood": likelihood, "decoder_output": decoder_output, "encoder_outputs": roles}


def model_option(help: str):
    """`--model`: the Keras model a bundle was exported from (the manifest names it by default)."""
    return click.option("--model", "model_path", type=click.Path(path_type=Path), help=help)


def export_target_options(function):
    """`--format`, `--quantize`, `--static-batch`, `--calibration-samples` and `--tolerance`: what `export` and
    `run` write and how they judge it, from the registry, with `ExportOptions`' defaults and bounds."""
    function = tolerance_option(function)
    function = click.option(
        "--calibration-samples", type=click.IntRange(min=1),  # the export names the range with the split's size
        help=f"Real training images for int8 calibration (at least {MIN_CALIBRATION_SAMPLES}). Default: "
        f"{DEFAULT_CALIBRATION_SAMPLES}, or all when fewer.",
    )(function)
    function = click.option(
        "--static-batch", default=EXPORT_DEFAULTS.static_batch, show_default=True,
        type=click.IntRange(min=0, max=MAX_STATIC_BATCH),
        help="Batch of the fixed-shape files that mobile accelerators need; 0 writes none.",
    )(function)
    function = click.option(
        "--quantize", "modes", multiple=True, type=click.Choice(names(MODES)),
        help="Mode (repeatable). Default: every mode of each format.",
    )(function)
    return click.option(
        "--format", "formats", multiple=True, default=list(EXPORT_DEFAULTS.formats), show_default=True,
        type=click.Choice(names(FORMATS, APPS, EXPORT_DEFAULTS.formats)),
        help="Export format or app (repeatable); `web` brings the ONNX files it runs.",
    )(function)


def parse_tolerances(pairs: tuple[str, ...]) -> dict:
    """`MODE.KEY=VALUE` pairs, e.g. `float16.max_abs=0.02`, checked against the modes' tolerances now."""
    from vae_edge.verify.tolerances import resolve

    tolerances = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        try:
            tolerances[key] = float(value)
        except ValueError:
            sep = ""
        if not sep:
            raise BadInputError(f"--tolerance takes MODE.KEY=NUMBER (e.g. float16.max_abs=0.02), got {pair!r}")
    resolve(tolerances)  # unknown keys and values out of range fail here, before any work
    return tolerances


def tolerance_option(function):
    return click.option(
        "--tolerance",
        "tolerances",
        multiple=True,
        metavar="MODE.KEY=VALUE",
        callback=lambda ctx, param, value: parse_tolerances(value),
        help="Override a verification tolerance, e.g. int8.min_psnr_db=35 (repeatable).",
    )(function)


def cpu_option(function):
    """`--cpu TARGET`: also verify on an emulated CPU (ARM64 cores, x86 without AVX-512), repeatable."""
    from vae_edge.verify.emulation import TARGETS

    described = "; ".join(f"{name}: {target.about}" for name, target in TARGETS.items())
    return click.option("--cpu", "cpus", multiple=True, type=click.Choice(list(TARGETS)),
                        help=f"Verify on this CPU too, under qemu user-mode emulation (set up once and cached; its "
                        f"timings mean nothing). {described}. Repeatable.")(function)
