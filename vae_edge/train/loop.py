"""Training: data in, a run folder with the best model, its history and pictures out.

Runs on any Keras backend (see `vae_edge.train.backend`); on JAX it can spread each batch over
several devices, and over several processes or hosts (`join_hosts`, docs/multi-host.md). The
default recipe is batch 32, a linear warm-up then cosine decay, and global-norm clipping; its
length and peak learning rate come from the machine's `Budget` unless given (the README's
"Training recipe" section has the measurements behind both).
"""

import contextlib
import math
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from vae_edge.data import load_dataset
from vae_edge.errors import BadInputError, TrainingDiverged
from vae_edge.fsutil import atomic_directory, check_writable, write_json
from vae_edge.labels import check_every_class
from vae_edge.train.config import ACCELERATOR_BUDGET, CPU_BUDGET, LRSchedule, TrainConfig, TrainResult
from vae_edge.train.devices import accelerators, data_parallel, list_devices, on_devices, trim_for_devices
from vae_edge.train.hosts import hosts_from, join_hosts, process_index_and_count
from vae_edge.train.pictures import write_pictures


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


def build_model(config: TrainConfig, image_shape, total_steps: int = 1000, jit_compile: bool | str = "auto",
                class_names: tuple[str, ...] = ()):
    """The compiled VAE that `config` describes, its schedule spanning `total_steps` optimizer steps;
    conditional on `class_names` when the config asks for it."""
    import keras

    from vae_edge.model import VAE

    config = with_machine_budget(config)
    model = VAE.from_variant(
        config.variant,
        input_shape=image_shape,
        latent_dim=config.latent_dim,
        decoder_layout=str(config.decoder_layout),
        reconstruction_loss=str(config.reconstruction_loss),
        kl_loss_weight=config.kl_loss_weight,
        free_bits=config.free_bits,
        seed=config.seed,
        dtype=str(config.precision),  # a plain str: Keras reads an enum's .name as a dtype
        num_classes=len(class_names) if config.conditional else 0,
        class_names=list(class_names) if config.conditional else None,
    )
    optimizer = keras.optimizers.Adam(learning_rate_schedule(config, total_steps), global_clipnorm=config.clip_norm)
    model.compile(optimizer=optimizer, jit_compile=jit_compile)
    return model


def with_machine_budget(config: TrainConfig) -> TrainConfig:
    """`config` with the epochs and peak learning rate it leaves unset taken from this machine's budget."""
    if config.epochs is not None and config.learning_rate is not None:
        return config
    budget = ACCELERATOR_BUDGET if accelerators() else CPU_BUDGET
    return replace(config, epochs=budget.epochs if config.epochs is None else config.epochs,
                   learning_rate=budget.learning_rate if config.learning_rate is None else config.learning_rate)


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
    hosts = hosts_from()  # KERAS_DISTRIBUTION_*; the CLI has joined already, from its options
    if hosts:
        join_hosts(hosts)
    process, processes = process_index_and_count()
    writer = process == 0  # the only process that writes the run folder
    if writer:
        check_writable(out_dir, force)
    splits = load_dataset(
        config.dataset, image_size=config.image_size, channels=config.channels,
        max_samples=config.max_samples, seed=config.seed,
    )
    check_conditional(config, splits)
    config = with_machine_budget(config)
    epochs = config.epochs
    distribution, device_count = data_parallel(config.devices, config.batch_size)
    if device_count > 1:
        splits = trim_for_devices(splits, device_count, log)
    backend = keras.backend.backend()
    device_names = list_devices()[:device_count]
    log(f"training {config.variant} on {backend}, {device_count} device(s) ({', '.join(device_names)})"
        + (f" over {processes} processes (this is process {process})" if processes > 1 else "")
        + f", batch {config.batch_size} ({config.batch_size // device_count} per device), {epochs} epochs")
    keras.utils.set_random_seed(config.seed)
    steps = epochs * math.ceil(len(splits.train) / config.batch_size)
    facts = {"backend": backend, "processes": processes, "devices": device_count, "device_names": device_names,
             "per_device_batch": config.batch_size // device_count}
    with run_folder(out_dir, writer) as staging:
        with on_devices(distribution, processes):  # build and fit only: the rest runs on this process's own device
            model = build_model(config, splits.image_shape, total_steps=steps, class_names=splits.class_names)
            checkpoint = staging / "model.keras"
            guard = DivergenceGuard()
            every_callback = [
                guard,
                KLAnnealing(config.kl_annealing, config.kl_warmup_steps),
                *(callbacks or []),
                # inf, not Keras' default of saving epoch 1 whatever it holds: a NaN model is never saved
                keras.callbacks.ModelCheckpoint(checkpoint, monitor="val_loss", save_best_only=True,
                                                initial_value_threshold=np.inf),
            ]
            started = time.perf_counter()
            history = model.fit(
                model.model_inputs(splits.train, splits.train_labels), epochs=epochs, batch_size=config.batch_size,
                shuffle=True, validation_data=(model.model_inputs(splits.val, splits.val_labels),),
                callbacks=every_callback, verbose=resolve_verbose(verbose) if writer else 0,
            ).history
        seconds_per_epoch = (time.perf_counter() - started) / max(len(history["loss"]), 1)
        history = {k: [float(v) for v in values] for k, values in history.items()}
        run_config = {**asdict(config), "epochs": epochs, "backend": backend, "image_shape": list(splits.image_shape)}
        record = {"history": history, "seconds_per_epoch": seconds_per_epoch, **facts}
        if guard.epoch is not None:
            if not writer:
                raise TrainingDiverged(f"training diverged in epoch {guard.epoch}; process 0 says where its last good model is")
            raise keep_last_good(staging, out_dir, guard, config, run_config, record)
        if not writer:  # the other processes hold the same model: process 0 writes it
            return TrainResult(out_dir, history, seconds_per_epoch, wrote_run_dir=False)
        best = keras.models.load_model(checkpoint)
        write_json(staging / "train_config.json", run_config)
        write_json(staging / "history.json", {
            **record, "parameters": int(best.count_params()), "best_epoch": int(np.argmin(history["val_loss"])) + 1,
        })
        write_pictures(best, splits.test, staging, history, labels=splits.test_labels)
    return TrainResult(out_dir, history, seconds_per_epoch)


@contextlib.contextmanager
def run_folder(out_dir: Path, writer: bool):
    """The staging folder that becomes `out_dir` (see `atomic_directory`); for the other processes of a
    multi-host run, a scratch folder that is deleted, since they compute the same checkpoint and pictures."""
    if writer:
        with atomic_directory(out_dir, force=True) as staging:
            yield staging
    else:
        with tempfile.TemporaryDirectory(prefix="vae-edge-process-") as scratch:
            yield Path(scratch)


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


def check_conditional(config: TrainConfig, splits) -> None:
    """A conditional run needs labelled data with at least two classes."""
    if config.conditional and not splits.labelled:
        raise BadInputError(f"--conditional needs class labels, and {config.dataset} has none; use mnist-5k, a Keras "
                            "data set, a folder of class folders or an .npz with x and y")
    if config.conditional and len(splits.class_names) < 2:
        raise BadInputError(f"--conditional needs at least 2 classes; {config.dataset} has {len(splits.class_names)}")
    if config.conditional:
        check_every_class(splits.train_labels, splits.class_names, f"the training images of {config.dataset}")

