"""Training: data in, a run folder with the best model, its history and pictures out."""

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from vae_edge.data import EMBEDDED_DATASET, load_dataset
from vae_edge.fsutil import atomic_directory, check_writable, write_json


@dataclass
class TrainConfig:
    """Everything that defines a training run; saved as `train_config.json` in the run folder."""

    variant: str = "small"
    dataset: str = EMBEDDED_DATASET
    epochs: int = 10
    batch_size: int = 64
    learning_rate: float = 1e-3
    latent_dim: int | None = None
    kl_loss_weight: float = 1.0
    kl_annealing: str = "none"
    kl_warmup_steps: int = 1000
    free_bits: float = 0.0
    reconstruction_loss: str = "bce"
    precision: str = "float32"
    seed: int = 0
    max_samples: int | None = None
    image_size: int | None = None
    channels: int | None = None


@dataclass
class TrainResult:
    run_dir: Path
    history: dict
    seconds_per_epoch: float


def build_model(config: TrainConfig, image_shape):
    """The compiled VAE that `config` describes."""
    import keras

    from vae_edge.model import VAE

    model = VAE.from_variant(
        config.variant,
        input_shape=image_shape,
        latent_dim=config.latent_dim,
        reconstruction_loss=config.reconstruction_loss,
        kl_loss_weight=config.kl_loss_weight,
        free_bits=config.free_bits,
        seed=config.seed,
        dtype=config.precision,
    )
    model.compile(optimizer=keras.optimizers.Adam(config.learning_rate))
    return model


def train(config: TrainConfig, out_dir, force: bool = False, verbose: int | str = "auto") -> TrainResult:
    """Train, keep the best checkpoint (lowest validation loss) and write the run folder.

    The folder appears only when everything in it is written; an error or interrupt leaves
    any previous run untouched.
    """
    import keras

    from vae_edge.model.annealing import KLAnnealing

    out_dir = Path(out_dir)
    check_writable(out_dir, force)
    splits = load_dataset(
        config.dataset, image_size=config.image_size, channels=config.channels,
        max_samples=config.max_samples, seed=config.seed,
    )
    keras.utils.set_random_seed(config.seed)
    model = build_model(config, splits.image_shape)
    with atomic_directory(out_dir, force=True) as staging:
        checkpoint = staging / "model.keras"
        callbacks = [
            KLAnnealing(config.kl_annealing, config.kl_warmup_steps),
            keras.callbacks.ModelCheckpoint(checkpoint, monitor="val_loss", save_best_only=True),
        ]
        started = time.perf_counter()
        history = model.fit(
            splits.train, epochs=config.epochs, batch_size=config.batch_size, shuffle=True,
            validation_data=(splits.val,), callbacks=callbacks, verbose=verbose,
        ).history
        seconds_per_epoch = (time.perf_counter() - started) / max(config.epochs, 1)
        best = keras.models.load_model(checkpoint)
        write_json(staging / "train_config.json", {**asdict(config), "image_shape": list(splits.image_shape)})
        write_json(staging / "history.json", {
            "history": {k: [float(v) for v in values] for k, values in history.items()},
            "seconds_per_epoch": seconds_per_epoch,
            "parameters": int(best.count_params()),
            "best_epoch": int(np.argmin(history["val_loss"])) + 1,
        })
        write_pictures(best, splits.test, staging, history)
    return TrainResult(out_dir, history, seconds_per_epoch)


def write_pictures(model, images: np.ndarray, folder: Path, history: dict | None = None, seed: int = 0) -> None:
    """Training curves, a sample grid, reconstructions, and the manifold when latent_dim == 2."""
    from vae_edge import plots

    if history:
        plots.save_training_curves(history, folder / "training_curves.png")
    plots.save_image_grid(model.sample(64, seed=seed), folder / "samples.png", columns=8)
    z_mean, _ = model.encode(images[:10])
    plots.save_reconstructions(images[:10], model.decode(z_mean), folder / "reconstructions.png")
    if model.latent_dim == 2:
        plots.save_latent_manifold(model.decode, folder / "latent_manifold.png")
