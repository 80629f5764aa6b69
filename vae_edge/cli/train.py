"""`vae-edge train` and `vae-edge evaluate`."""

from pathlib import Path

import click

PRECISION_CHOICES = ("float32", "mixed_float16", "mixed_bfloat16")


@click.command()
@click.option("--variant", default="small", show_default=True, help="micro, small, medium, large or xlarge.")
@click.option("--dataset", default="mnist-5k", show_default=True, help="mnist-5k (embedded), mnist, fashion_mnist, cifar10, a folder of images or a .npy/.npz file.")
@click.option("--epochs", default=10, show_default=True, type=click.IntRange(min=1))
@click.option("--batch-size", default=64, show_default=True, type=click.IntRange(min=1))
@click.option("--learning-rate", default=1e-3, show_default=True, type=click.FloatRange(min=0, min_open=True))
@click.option("--latent-dim", type=click.IntRange(min=1), help="Default: the variant's.")
@click.option("--beta", "kl_loss_weight", default=1.0, show_default=True, type=click.FloatRange(min=0), help="Weight of the KL term.")
@click.option("--kl-annealing", type=click.Choice(["none", "linear", "cyclical"]), default="none", show_default=True)
@click.option("--kl-warmup-steps", default=1000, show_default=True, type=click.IntRange(min=0), help="Steps of the warm-up (or of one cycle).")
@click.option("--free-bits", default=0.0, show_default=True, type=click.FloatRange(min=0), help="KL floor per latent dimension, in nats.")
@click.option("--reconstruction-loss", type=click.Choice(["bce", "mse"]), default="bce", show_default=True)
@click.option("--precision", type=click.Choice(PRECISION_CHOICES), default="float32", show_default=True)
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--max-samples", type=click.IntRange(min=3), help="Use at most this many images.")
@click.option("--image-size", type=click.IntRange(min=1), help="Resize folder images to this square size.")
@click.option("--channels", type=click.Choice(["1", "3"]), help="Grayscale (1) or RGB (3) for folder images.")
@click.option("--out", type=click.Path(path_type=Path), default=Path("runs/default"), show_default=True)
@click.option("--force", is_flag=True, help="Replace an existing run folder.")
def train(out, force, channels, **options):
    """Train a VAE and write model.keras, history.json and pictures to --out."""
    from vae_edge.train import TrainConfig
    from vae_edge.train import train as run_training

    config = TrainConfig(channels=int(channels) if channels else None, **options)
    result = run_training(config, out, force=force)
    history = result.history
    click.echo(
        f"\nbest validation loss {min(history['val_loss']):.2f} nats/image, "
        f"{result.seconds_per_epoch:.1f} s/epoch; wrote {result.run_dir}/"
    )


@click.command()
@click.argument("model_path", type=click.Path(path_type=Path))
@click.option("--dataset", help="Default: the data set the model was trained on.")
@click.option("--seed", type=int, help="Split seed. Default: the training seed.")
@click.option("--importance-samples", "-k", default=64, show_default=True, type=click.IntRange(min=0), help="Samples for the importance-weighted NLL (0 to skip).")
@click.option("--max-samples", type=click.IntRange(min=3))
@click.option("--json-out", type=click.Path(path_type=Path), help="Also write the results as JSON here.")
def evaluate(model_path, dataset, seed, importance_samples, max_samples, json_out):
    """Test ELBO, importance-weighted NLL, PSNR and active units of a trained model."""
    from vae_edge.cli.common import run_splits
    from vae_edge.data import images_for_model
    from vae_edge.evaluation import evaluate_model
    from vae_edge.fsutil import write_json
    from vae_edge.keras_io import load_vae

    model = load_vae(model_path)
    warn_if_split_differs(model_path, dataset, seed, max_samples)
    splits = run_splits(model_path, dataset, seed, max_samples)
    results = evaluate_model(model, images_for_model(splits.test, model.image_shape, splits.name), importance_samples=importance_samples)
    for key, value in results.items():
        click.echo(f"{key:>20}: {value:.3f}" if isinstance(value, float) else f"{key:>20}: {value}")
    if json_out:
        write_json(json_out, results)


def warn_if_split_differs(model_path: Path, dataset, seed, max_samples) -> None:
    """The test split is only held out for the split training used: say so when it changes."""
    from vae_edge.cli.common import read_run_config

    run = read_run_config(model_path)
    if not run or dataset not in (None, run.get("dataset")):
        return  # another data set, or nothing recorded: no overlap to warn about
    changed = [name for name, value in (("--seed", seed), ("--max-samples", max_samples))
               if value is not None and value != run.get(name[2:].replace("-", "_"))]
    if changed:
        click.secho(f"Warning: {' and '.join(changed)} differ from training, so the 'test' images may include "
                    "training images and the scores will look better than they are", fg="yellow", err=True)
