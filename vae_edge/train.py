"""Training: data in, a run folder with the best model, its history and pictures out.

Runs on any Keras backend (see `vae_edge.backend`); on JAX it can spread each batch over
several devices. The default recipe (batch 32, warm-up then cosine decay from a peak of
2e-3, global-norm clipping, 8 epochs on a CPU) reached the best test -ELBO of the recipes
measured for `small` on the embedded digits, at the CPU cost of the old 8-epoch default;
the table is in the README's "Training recipe" section.
"""

import contextlib
import math
import os
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from enum import StrEnum
from pathlib import Path

import numpy as np

from vae_edge.backend import Backend
from vae_edge.data import EMBEDDED_DATASET, load_dataset
from vae_edge.errors import BadInputError, TrainingDiverged
from vae_edge.fsutil import atomic_directory, check_writable, write_json
from vae_edge.registry import Annealing, Precision, ReconstructionLoss

# Epochs when `epochs` is left to the machine: what fits the demo's training budget on a
# 2-core CPU, and a longer run where an accelerator makes it cheap.
CPU_EPOCHS = 8
ACCELERATOR_EPOCHS = 30
# keras.distribution.initialize() reads these; set them on every host of a multi-host run.
MULTI_HOST_ENV = "KERAS_DISTRIBUTION_JOB_ADDRESSES"


class LRSchedule(StrEnum):
    COSINE = "cosine"  # linear warm-up to the peak, then cosine decay to zero
    CONSTANT = "constant"


@dataclass
class TrainConfig:
    """Everything that defines a training run; saved as `train_config.json` in the run folder."""

    variant: str = "small"
    dataset: str = EMBEDDED_DATASET
    epochs: int | None = None  # None: CPU_EPOCHS, or ACCELERATOR_EPOCHS on a GPU/TPU
    batch_size: int = 32  # global: split evenly over the devices
    learning_rate: float = 2e-3  # the peak, reached at the end of the warm-up
    lr_schedule: str = LRSchedule.COSINE
    warmup_fraction: float = 0.05  # of all training steps
    clip_norm: float | None = 200.0  # global gradient norm; None: no clipping
    latent_dim: int | None = None
    kl_loss_weight: float = 1.0
    kl_annealing: str = Annealing.NONE
    kl_warmup_steps: int = 1000
    free_bits: float = 0.0
    reconstruction_loss: str = ReconstructionLoss.BCE
    precision: str = Precision.FLOAT32
    devices: int | str = 1  # a count, or "all" local (and, multi-host, remote) accelerators; >1 needs JAX
    seed: int = 0
    max_samples: int | None = None
    image_size: int | None = None
    channels: int | None = None


@dataclass
class TrainResult:
    run_dir: Path
    history: dict
    seconds_per_epoch: float


def learning_rate_schedule(config: TrainConfig, total_steps: int):
    """The learning rate per optimizer step: warm-up from 0 to the peak, then cosine decay to 0.

    Warm-up keeps Adam's first, badly estimated steps small (the first gradients of a fresh
    ResNet VAE are ~10x the later ones); the decay lets the last epochs settle into a minimum.
    """
    import keras

    if config.lr_schedule == LRSchedule.CONSTANT:
        return config.learning_rate
    warmup = int(round(config.warmup_fraction * total_steps))
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0, decay_steps=max(total_steps - warmup, 1),
        warmup_target=config.learning_rate, warmup_steps=warmup,
    )


def build_model(config: TrainConfig, image_shape, total_steps: int = 1000, jit_compile: bool | str = "auto"):
    """The compiled VAE that `config` describes, its schedule spanning `total_steps` optimizer steps."""
    import keras

    from vae_edge.model import VAE

    model = VAE.from_variant(
        config.variant,
        input_shape=image_shape,
        latent_dim=config.latent_dim,
        reconstruction_loss=str(config.reconstruction_loss),
        kl_loss_weight=config.kl_loss_weight,
        free_bits=config.free_bits,
        seed=config.seed,
        dtype=str(config.precision),  # a plain str: Keras reads an enum's .name as a dtype
    )
    optimizer = keras.optimizers.Adam(learning_rate_schedule(config, total_steps), global_clipnorm=config.clip_norm)
    model.compile(optimizer=optimizer, jit_compile=jit_compile)
    return model


def accelerators() -> list[str]:
    """The GPUs/TPUs Keras' backend sees (all hosts' on multi-host JAX); [] on a CPU-only machine."""
    import keras

    return [device for device in keras.distribution.list_devices() if not device.lower().startswith("cpu")]


def resolve_epochs(config: TrainConfig) -> int:
    """`config.epochs`, or the machine's default when it is None."""
    if config.epochs is not None:
        return config.epochs
    return ACCELERATOR_EPOCHS if accelerators() else CPU_EPOCHS


def data_parallel(devices: int | str, batch_size: int):
    """The `keras.distribution.DataParallel` for `devices` (None for one device) on JAX, and the device count.

    Each device gets batch_size / count images of every batch and the gradients are averaged,
    so the same global batch and seed follow the same loss curve on any device count.
    """
    import keras

    if os.environ.get(MULTI_HOST_ENV):
        keras.distribution.initialize()  # jax.distributed.initialize from the KERAS_DISTRIBUTION_* variables
    available = keras.distribution.list_devices()
    count = len(available) if devices == "all" else int(devices)
    if count < 1 or count > len(available):
        raise BadInputError(
            f"--devices {devices}: this machine has {len(available)} ({', '.join(available)}); pick 1 to {len(available)}"
        )
    if count == 1:
        return None, 1
    if keras.backend.backend() != Backend.JAX:
        raise BadInputError(f"--devices {count} needs --backend jax (data-parallel training uses JAX's distribution API)")
    if batch_size % count:
        raise BadInputError(f"--batch-size {batch_size} does not split over {count} devices; use a multiple of {count}")
    return keras.distribution.DataParallel(devices=available[:count]), count


def resolve_verbose(verbose: int | str) -> int:
    """'auto': progress bars on a terminal, one line per epoch in logs and pipes."""
    if verbose == "auto":
        return 1 if sys.stdout.isatty() else 2
    return int(verbose)


def train(config: TrainConfig, out_dir, force: bool = False, verbose: int | str = "auto",
          log: Callable[[str], None] = print, callbacks: list | None = None) -> TrainResult:
    """Train, keep the best checkpoint (lowest validation loss) and write the run folder.

    `callbacks`: extra Keras callbacks (TensorBoard, EarlyStopping, ...), run after the
    divergence guard and KL annealing and before the checkpoint.

    The folder appears only when everything in it is written; an error or interrupt leaves
    any previous run untouched. If the loss becomes NaN or infinite, training stops, the run
    folder is not written (so nothing downstream mistakes a cut-short run for a finished
    one) and the last good checkpoint goes to `<out>.diverged/` with its history and a note.
    """
    import keras

    from vae_edge.model.annealing import KLAnnealing
    from vae_edge.model.callbacks import DivergenceGuard

    out_dir = Path(out_dir)
    check_writable(out_dir, force)
    splits = load_dataset(
        config.dataset, image_size=config.image_size, channels=config.channels,
        max_samples=config.max_samples, seed=config.seed,
    )
    epochs = resolve_epochs(config)
    distribution, device_count = data_parallel(config.devices, config.batch_size)
    backend = keras.backend.backend()
    log(f"training {config.variant} on {backend}, {device_count} device(s), "
        f"batch {config.batch_size} ({config.batch_size // device_count} per device), {epochs} epochs")
    keras.utils.set_random_seed(config.seed)
    steps = epochs * math.ceil(len(splits.train) / config.batch_size)
    facts = {"backend": backend, "devices": device_count, "per_device_batch": config.batch_size // device_count}
    with atomic_directory(out_dir, force=True) as staging, (distribution.scope() if distribution else contextlib.nullcontext()):
        model = build_model(config, splits.image_shape, total_steps=steps)
        checkpoint = staging / "model.keras"
        guard = DivergenceGuard()
        every_callback = [
            guard,
            KLAnnealing(config.kl_annealing, config.kl_warmup_steps),
            *(callbacks or []),
            # inf, not Keras' default of saving epoch 1 whatever it holds: a NaN model is never saved
            keras.callbacks.ModelCheckpoint(checkpoint, monitor="val_loss", save_best_only=True, initial_value_threshold=np.inf),
        ]
        started = time.perf_counter()
        history = model.fit(
            splits.train, epochs=epochs, batch_size=config.batch_size, shuffle=True,
            validation_data=(splits.val,), callbacks=every_callback, verbose=resolve_verbose(verbose),
        ).history
        seconds_per_epoch = (time.perf_counter() - started) / max(len(history["loss"]), 1)
        history = {k: [float(v) for v in values] for k, values in history.items()}
        run_config = {**asdict(config), "epochs": epochs, "backend": backend, "image_shape": list(splits.image_shape)}
        record = {"history": history, "seconds_per_epoch": seconds_per_epoch, **facts}
        if guard.epoch is not None:
            raise keep_last_good(staging, out_dir, guard, config, run_config, record)
        best = keras.models.load_model(checkpoint)
        write_json(staging / "train_config.json", run_config)
        write_json(staging / "history.json", {
            **record, "parameters": int(best.count_params()), "best_epoch": int(np.argmin(history["val_loss"])) + 1,
        })
        write_pictures(best, splits.test, staging, history)
    return TrainResult(out_dir, history, seconds_per_epoch)


def keep_last_good(staging: Path, out_dir: Path, guard, config: TrainConfig,
                   run_config: dict, record: dict) -> TrainingDiverged:
    """Move the last good checkpoint (if any epoch finished well) to `<out>.diverged/`; the error to raise."""
    where = f"training diverged in epoch {guard.epoch} (the loss became {guard.value})"
    fix = f"lower --learning-rate (was {config.learning_rate:g}) or --clip-norm"
    finite = [v for v in record["history"]["val_loss"] if math.isfinite(v)]
    if not finite or not (staging / "model.keras").exists():
        return TrainingDiverged(f"{where} before any epoch finished well, so no model was kept; {fix}")
    kept = out_dir.with_name(f"{out_dir.name}.diverged")
    with atomic_directory(kept, force=True) as folder:
        shutil.move(staging / "model.keras", folder / "model.keras")
        write_json(folder / "train_config.json", run_config)
        write_json(folder / "history.json", {**record, "diverged_in_epoch": guard.epoch, "best_val_loss": min(finite)})
        (folder / "NOTE.txt").write_text(f"{where}; model.keras is the checkpoint with the lowest validation loss "
                                         f"before that ({min(finite):.2f} nats/image). {fix} and train again.\n")
    return TrainingDiverged(f"{where}; {out_dir} was not written; the last good model is in {kept}/; {fix}")


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

