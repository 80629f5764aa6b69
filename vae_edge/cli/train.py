"""`vae-edge train` and `vae-edge evaluate`."""

from pathlib import Path

import click

from vae_edge.data import MAX_IMAGE_SIZE, MIN_IMAGE_SIZE
from vae_edge.registry import Annealing, DecoderLayout, Precision, ReconstructionLoss, names
from vae_edge.train import ACCELERATOR_BUDGET, CPU_BUDGET, LRSchedule, TrainConfig
from vae_edge.train.backend import Backend

DEFAULTS = TrainConfig()


def _devices(value: str) -> int | str:
    """--devices: "all" or a positive count."""
    if value == "all":
        return value
    if not value.isdigit() or int(value) < 1:
        raise click.BadParameter(f"{value!r} is neither 'all' nor a positive number of devices")
    return int(value)


@click.command()
@click.option("--variant", default=DEFAULTS.variant, show_default=True, help="micro, small, medium, large or xlarge.")
@click.option(
    "--dataset",
    default=DEFAULTS.dataset,
    show_default=True,
    help="mnist-5k (embedded), mnist, fashion_mnist, cifar10, a folder of images or a .npy/.npz file.",
)
@click.option(
    "--backend", type=click.Choice([b.value for b in Backend]), help="Keras backend. Default: $KERAS_BACKEND, else tensorflow."
)
@click.option(
    "--devices",
    default="1",
    show_default=True,
    help="Devices to split each batch over: a number or 'all' (more than 1 needs --backend jax).",
)
@click.option(
    "--coordinator",
    metavar="HOST:PORT",
    help="Multi-host JAX: process 0's address and a free port, the same on every process. "
    "Default: the first of $KERAS_DISTRIBUTION_JOB_ADDRESSES.",
)
@click.option(
    "--num-processes",
    type=click.IntRange(min=1),
    help="Multi-host JAX: how many processes train together. Default: $KERAS_DISTRIBUTION_NUM_PROCESSES.",
)
@click.option(
    "--process-id",
    type=click.IntRange(min=0),
    help="Multi-host JAX: this process, 0 to --num-processes - 1; 0 writes --out. Default: $KERAS_DISTRIBUTION_PROCESS_ID.",
)
@click.option(
    "--epochs",
    type=click.IntRange(min=1),
    help=f"Default: {CPU_BUDGET.epochs} on a CPU, {ACCELERATOR_BUDGET.epochs} with a GPU/TPU.",
)
@click.option(
    "--batch-size",
    default=DEFAULTS.batch_size,
    show_default=True,
    type=click.IntRange(min=1),
    help="Global: split over --devices.",
)
@click.option(
    "--learning-rate",
    type=click.FloatRange(min=0, min_open=True),
    help=f"Peak learning rate. Default: {CPU_BUDGET.learning_rate:g} on a CPU, {ACCELERATOR_BUDGET.learning_rate:g} "
    "with a GPU/TPU.",
)
@click.option(
    "--lr-schedule",
    type=click.Choice([s.value for s in LRSchedule]),
    default=DEFAULTS.lr_schedule.value,
    show_default=True,
    help="cosine: linear warm-up to the peak, then cosine decay to zero.",
)
@click.option(
    "--warmup-fraction",
    default=DEFAULTS.warmup_fraction,
    show_default=True,
    type=click.FloatRange(0, 1, max_open=True),
    help="Share of the steps spent warming up.",
)
@click.option(
    "--clip-norm",
    default=DEFAULTS.clip_norm,
    show_default=True,
    type=click.FloatRange(min=0),
    help="Clip the global gradient norm to this (0: off).",
)
@click.option("--latent-dim", type=click.IntRange(min=1), help="Default: the variant's.")
@click.option(
    "--decoder-layout",
    type=click.Choice(names(DecoderLayout)),
    default=str(DEFAULTS.decoder_layout),
    show_default=True,
    help="Residual blocks at the encoder's scales (mirror), or after every upsampling up to full resolution "
    "(the earlier layout, which `.keras` files without this setting have: 2x to 2.9x the training time on a CPU).",
)
@click.option(
    "--beta", "kl_loss_weight", default=1.0, show_default=True, type=click.FloatRange(min=0), help="Weight of the KL term."
)
@click.option("--kl-annealing", type=click.Choice([a.value for a in Annealing]), default=Annealing.NONE.value, show_default=True)
@click.option(
    "--kl-warmup-steps",
    default=1000,
    show_default=True,
    type=click.IntRange(min=0),
    help="Steps of the warm-up (or of one cycle).",
)
@click.option(
    "--free-bits", default=0.0, show_default=True, type=click.FloatRange(min=0), help="KL floor per latent dimension, in nats."
)
@click.option(
    "--reconstruction-loss",
    type=click.Choice([r.value for r in ReconstructionLoss]),
    default=ReconstructionLoss.BCE.value,
    show_default=True,
)
@click.option("--precision", type=click.Choice([p.value for p in Precision]), default=Precision.FLOAT32.value, show_default=True)
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--max-samples", type=click.IntRange(min=3), help="Use at most this many images.")
@click.option("--image-size", type=click.IntRange(min=MIN_IMAGE_SIZE, max=MAX_IMAGE_SIZE),
              help="Resize folder images to this square size.")
@click.option("--channels", type=click.Choice(["1", "3"]), help="Grayscale (1) or RGB (3) for folder images.")
@click.option("--conditional", is_flag=True,
              help="Condition on the data set's class labels (mnist-5k, Keras data sets, class folders, .npz with y).")
@click.option("--out", type=click.Path(path_type=Path), default=Path("runs/default"), show_default=True)
@click.option("--force", is_flag=True, help="Replace an existing run folder.")
def train(out, force, channels, backend, devices, coordinator, num_processes, process_id, clip_norm, **options):
    """Train a VAE and write model.keras, history.json and pictures to --out.

    Output is one line per epoch when stdout is not a terminal. If the loss becomes NaN the
    command stops with exit status 1, writes nothing to --out and keeps the last good model
    in <out>.diverged/.

    Several processes or hosts (JAX): start the same command on each with --coordinator,
    --num-processes and its own --process-id and --devices all (docs/multi-host.md).
    """
    from vae_edge.train.backend import select_backend
    from vae_edge.train.hosts import hosts_from, join_hosts

    select_backend(backend)  # before anything imports Keras
    hosts = hosts_from(coordinator, num_processes, process_id)
    if hosts:
        join_hosts(hosts)  # before JAX computes anything
    from vae_edge.train import train as run_training

    config = TrainConfig(
        channels=int(channels) if channels else None, devices=_devices(devices), clip_norm=clip_norm or None, **options
    )
    result = run_training(config, out, force=force, log=click.echo)
    history = result.history
    wrote = f"wrote {result.run_dir}/" if result.wrote_run_dir else "process 0 writes the run folder"
    click.echo(
        f"\nbest validation loss {min(history['val_loss']):.2f} nats/image, {result.seconds_per_epoch:.1f} s/epoch; {wrote}"
    )


@click.command()
@click.argument("model_path", type=click.Path(path_type=Path))
@click.option("--dataset", help="Default: the data set the model was trained on.")
@click.option("--seed", type=int, help="Split seed. Default: the training seed.")
@click.option(
    "--importance-samples",
    "-k",
    default=64,
    show_default=True,
    type=click.IntRange(min=0),
    help="Samples for the importance-weighted NLL (0 to skip).",
)
@click.option("--max-samples", type=click.IntRange(min=3))
@click.option("--json-out", type=click.Path(path_type=Path), help="Also write the results as JSON here.")
def evaluate(model_path, dataset, seed, importance_samples, max_samples, json_out):
    """Test ELBO, importance-weighted NLL, PSNR and active units of a trained model."""
    from vae_edge.cli.common import run_splits
    from vae_edge.fsutil import write_json
    from vae_edge.model.loading import load_vae
    from vae_edge.train.evaluation import evaluate_splits

    model = load_vae(model_path)
    warn_if_split_differs(model_path, dataset, seed, max_samples)
    splits = run_splits(model_path, dataset, seed, max_samples)
    results = evaluate_splits(model, splits, importance_samples=importance_samples)
    for key, value in results.items():
        if key != "per_class":
            click.echo(f"{key:>32}: {value:.3f}" if isinstance(value, float) else f"{key:>32}: {value}")
    for name, scores in results.get("per_class", {}).items():
        click.echo(f"{'class ' + name:>32}: " + ", ".join(f"{key} {value:.3f}" if isinstance(value, float)
                                                            else f"{key} {value}" for key, value in scores.items()))
    if json_out:
        write_json(json_out, results)


def warn_if_split_differs(model_path: Path, dataset, seed, max_samples) -> None:
    """The test split is only held out for the split training used: say so when it changes."""
    from vae_edge.cli.common import read_run_config

    run = read_run_config(model_path)
    if not run or dataset not in (None, run.get("dataset")):
        return  # another data set, or nothing recorded: no overlap to warn about
    changed = [
        name
        for name, value in (("--seed", seed), ("--max-samples", max_samples))
        if value is not None and value != run.get(name[2:].replace("-", "_"))
    ]
    if changed:
        click.secho(
            f"Warning: {' and '.join(changed)} differ from training, so the 'test' images may include "
            "training images and the scores will look better than they are",
            fg="yellow",
            err=True,
        )
