"""Training: data in, a run folder with the best model, its history and pictures out.

Runs on any Keras backend (see `vae_edge.backend`); on JAX it can spread each batch over
several devices, and over several processes or hosts (`join_hosts`, docs/multi-host.md). The
default recipe is batch 32, a linear warm-up then cosine decay, and global-norm clipping; its
length and peak learning rate come from the machine's `Budget` unless given (the README's
"Training recipe" section has the measurements behind both).
"""

import contextlib
import functools
import math
import os
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from enum import StrEnum
from pathlib import Path

import numpy as np

from vae_edge.backend import Backend, loaded_backend, requested_backend
from vae_edge.data import EMBEDDED_DATASET, load_dataset
from vae_edge.errors import BadInputError, TrainingDiverged
from vae_edge.fsutil import atomic_directory, check_writable, write_json
from vae_edge.registry import Annealing, DecoderLayout, Precision, ReconstructionLoss


@dataclass(frozen=True)
class Budget:
    """How long training runs, and at what peak learning rate, when the run leaves them to the machine."""

    epochs: int
    learning_rate: float


# A 2-core CPU's keeps `make demo` within 8 minutes with `small` under 120 nats: short schedules
# learn most at a high peak (the mirrored decoder at 6e-3 on JAX: 13 epochs 118.5 and 118.9 nats
# for seeds 0 and 1, 14 epochs 115.8 and 116.8), and TensorFlow's different random draws cost about
# a nat, so 14. An accelerator trains longer at the peak measured there: 90 epochs gave 102.4 to 102.9
# nats over three seeds, where 60 gave 102.7 to 104.6, too near the goal of 105. From
# benchmarks/results/demo_recipes-h200-jax*.md and `make demo` (benchmarks/README.md).
CPU_BUDGET = Budget(epochs=14, learning_rate=6e-3)
ACCELERATOR_BUDGET = Budget(epochs=90, learning_rate=2e-3)

# Keras' own variables for a multi-host run (keras.distribution.initialize reads the same ones):
# the defaults of `vae-edge train --coordinator/--num-processes/--process-id`. The first job
# address is the coordinator's, process 0's.
MULTI_HOST_ENV = "KERAS_DISTRIBUTION_JOB_ADDRESSES"
NUM_PROCESSES_ENV = "KERAS_DISTRIBUTION_NUM_PROCESSES"
PROCESS_ID_ENV = "KERAS_DISTRIBUTION_PROCESS_ID"
# Seconds a process waits for the others to join before it gives up (JAX's default is 300).
JOIN_TIMEOUT_S = 300


class LRSchedule(StrEnum):
    COSINE = "cosine"  # linear warm-up to the peak, then cosine decay to zero
    CONSTANT = "constant"


@dataclass
class TrainConfig:
    """Everything that defines a training run; saved as `train_config.json` in the run folder."""

    variant: str = "small"
    dataset: str = EMBEDDED_DATASET
    epochs: int | None = None  # None: the machine's budget (CPU_BUDGET, or ACCELERATOR_BUDGET on a GPU/TPU)
    batch_size: int = 32  # global: split evenly over the devices
    learning_rate: float | None = None  # the peak, reached at the end of the warm-up; None: the machine's budget
    lr_schedule: str = LRSchedule.COSINE
    warmup_fraction: float = 0.05  # of all training steps
    clip_norm: float | None = 200.0  # global gradient norm; None: no clipping
    latent_dim: int | None = None
    decoder_layout: str = DecoderLayout.MIRROR
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
    conditional: bool = False  # condition encoder and decoder on the data set's class labels


@dataclass
class TrainResult:
    run_dir: Path
    history: dict
    seconds_per_epoch: float
    wrote_run_dir: bool = True  # False on every process but 0 of a multi-host run: only process 0 writes


@dataclass(frozen=True)
class Hosts:
    """This process's place in a multi-process (multi-host) JAX run."""

    coordinator: str  # HOST:PORT where process 0 listens and every process connects
    num_processes: int
    process_id: int  # 0 .. num_processes - 1; 0 writes the run folder


def hosts_from(coordinator: str | None = None, num_processes: int | None = None, process_id: int | None = None,
               environ: dict | None = None) -> Hosts | None:
    """The multi-host settings: the arguments, else Keras' KERAS_DISTRIBUTION_* variables; None for one process.

    All three are needed together; a partial or inconsistent set is a one-line error rather
    than a run that hangs waiting for processes that will never come.
    """
    environ = os.environ if environ is None else environ
    if coordinator is None and environ.get(MULTI_HOST_ENV):
        coordinator = environ[MULTI_HOST_ENV].split(",")[0].strip()
    try:
        if num_processes is None and environ.get(NUM_PROCESSES_ENV):
            num_processes = int(environ[NUM_PROCESSES_ENV])
        if process_id is None and environ.get(PROCESS_ID_ENV):
            process_id = int(environ[PROCESS_ID_ENV])
    except ValueError:
        raise BadInputError(f"{NUM_PROCESSES_ENV} and {PROCESS_ID_ENV} must be whole numbers, got "
                            f"{environ.get(NUM_PROCESSES_ENV)!r} and {environ.get(PROCESS_ID_ENV)!r}") from None
    given = {"--coordinator": coordinator, "--num-processes": num_processes, "--process-id": process_id}
    if all(value is None for value in given.values()):
        return None
    missing = [name for name, value in given.items() if value is None]
    if missing:
        raise BadInputError(f"a multi-host run needs --coordinator, --num-processes and --process-id together "
                            f"(or {MULTI_HOST_ENV}, {NUM_PROCESSES_ENV}, {PROCESS_ID_ENV}); missing {', '.join(missing)}")
    host, _, port = coordinator.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise BadInputError(f"--coordinator {coordinator!r} is not HOST:PORT (process 0's address and a free port)")
    if num_processes < 1 or not 0 <= process_id < num_processes:
        raise BadInputError(f"--process-id {process_id} is not in 0..{num_processes - 1} (--num-processes {num_processes})")
    return None if num_processes == 1 else Hosts(coordinator, num_processes, process_id)


def join_hosts(hosts: Hosts, timeout_s: int = JOIN_TIMEOUT_S) -> None:
    """Connect this process to the others of a multi-host JAX run; a no-op once joined.

    Must run before JAX computes anything (jax.distributed.initialize refuses afterwards),
    so the CLI calls it right after choosing the backend. On CPUs, cross-process collectives
    go over gloo (TCP); JAX 0.10 defaults to it, set here so an older default cannot silently
    leave processes that cannot all-reduce. The other processes first wait for process 0's
    coordinator to listen: JAX itself aborts the whole process with a native stack trace when
    it cannot reach it, which is no way to say "start process 0 first".
    """
    if (loaded_backend() or requested_backend()) != Backend.JAX:
        raise BadInputError(f"a multi-host run (--coordinator, --num-processes {hosts.num_processes}) needs --backend jax")
    import jax

    if jax.distributed.is_initialized():
        return
    if hosts.process_id != 0:
        wait_for_coordinator(hosts.coordinator, timeout_s)
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    try:
        jax.distributed.initialize(coordinator_address=hosts.coordinator, num_processes=hosts.num_processes,
                                   process_id=hosts.process_id, initialization_timeout=timeout_s)
    except RuntimeError as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise BadInputError(f"process {hosts.process_id} of {hosts.num_processes} could not join the run at "
                            f"{hosts.coordinator}: {first}") from None


def wait_for_coordinator(address: str, timeout_s: float) -> None:
    """Return once something accepts TCP connections at `address` (HOST:PORT); a one-line error after `timeout_s`."""
    host, _, port = address.rpartition(":")
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with socket.create_connection((host.strip("[]"), int(port)), timeout=min(5.0, timeout_s)):
                return
        except OSError as error:
            if time.monotonic() >= deadline:
                raise BadInputError(f"nothing answered at --coordinator {address} within {timeout_s:g} s "
                                    f"({error.strerror or error}); start process 0 with the same --coordinator, "
                                    "or check its address and port") from None
            time.sleep(0.5)


def process_index_and_count() -> tuple[int, int]:
    """(this process's index, the process count): (0, 1) unless this is a multi-host JAX run."""
    import keras

    if keras.backend.backend() != Backend.JAX:
        return 0, 1
    import jax

    return jax.process_index(), jax.process_count()


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


def list_devices() -> list[str]:
    """The devices Keras' backend trains on, as "platform:index" (every host's on multi-host JAX).

    Keras' `keras.distribution.list_devices` has no PyTorch implementation (it fails there), so
    on PyTorch this asks torch: its CUDA devices, else the CPU.
    """
    import keras

    if keras.backend.backend() == Backend.TORCH:
        import torch

        return [f"cuda:{i}" for i in range(torch.cuda.device_count())] or ["cpu:0"]
    return keras.distribution.list_devices()


def accelerators() -> list[str]:
    """The GPUs/TPUs Keras' backend sees (all hosts' on multi-host JAX); [] on a CPU-only machine."""
    return [device for device in list_devices() if not device.lower().startswith("cpu")]


def with_machine_budget(config: TrainConfig) -> TrainConfig:
    """`config` with the epochs and peak learning rate it leaves unset taken from this machine's budget."""
    if config.epochs is not None and config.learning_rate is not None:
        return config
    budget = ACCELERATOR_BUDGET if accelerators() else CPU_BUDGET
    return replace(config, epochs=budget.epochs if config.epochs is None else config.epochs,
                   learning_rate=budget.learning_rate if config.learning_rate is None else config.learning_rate)


def data_parallel(devices: int | str, batch_size: int):
    """The `keras.distribution.DataParallel` for `devices` (None for one device) on JAX, and the device count.

    Each device gets batch_size / count images of every batch and the gradients are averaged,
    so the same global batch and seed follow the same loss curve on any device count. A
    multi-host run spans every process's devices, so there `devices` must be all of them.
    """
    import keras

    available = list_devices()
    _, processes = process_index_and_count()
    count = len(available) if devices == "all" else int(devices)
    if processes > 1 and count != len(available):
        raise BadInputError(f"--devices {devices}: a {processes}-process run trains on the devices of every process; "
                            f"use --devices all ({len(available)} devices)")
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
    distribution = keras.distribution.DataParallel(devices=available[:count])
    # Every process feeds whole global batches (whole_batches_on_every_process), not a tf.data shard of its own
    distribution.auto_shard_dataset = processes == 1
    return distribution, count


def trim_for_devices(splits, count: int, log: Callable[[str], None]):
    """`splits` with each split cut to a multiple of `count` images, so that the last, partial
    batch also divides evenly over the devices (JAX cannot shard 21 images over 2 devices)."""
    cut = {name: len(getattr(splits, name)) % count for name in ("train", "val", "test")}
    if not any(cut.values()):
        return splits
    log(f"dropping the last {cut['train']}/{cut['val']}/{cut['test']} train/val/test images so every batch "
        f"splits over {count} devices")
    changes = {}
    for name, extra in cut.items():
        end = len(getattr(splits, name)) - extra
        changes[name] = getattr(splits, name)[:end]
        labels = getattr(splits, f"{name}_labels")
        if labels is not None:
            changes[f"{name}_labels"] = labels[:end]
    return replace(splits, **changes)


@contextlib.contextmanager
def whole_batches_on_every_process(processes: int):
    """In a multi-process JAX run, let every process feed the whole global batch and keep its devices' rows.

    Every process loads the same data and shuffles it with the same seed, so each sees the same
    global batches that one process would; JAX's `make_array_from_process_local_data` with the
    global shape takes each device's rows from that. Keras (3.15) would instead treat each
    process's batch as its own share and train on `processes` copies of it, so its data-input
    function is swapped for the duration of training (a private module; Keras is pinned to 3.15).
    """
    if processes == 1:
        yield
        return
    import jax
    import keras
    from keras.src.backend.jax import distribution_lib

    original = distribution_lib.distribute_data_input

    def global_batch(batch, layout, batch_dim_name):
        sharding = layout.backend_layout if isinstance(layout, keras.distribution.TensorLayout) else layout
        return jax.make_array_from_process_local_data(sharding, batch, batch.shape)

    distribution_lib.distribute_data_input = global_batch
    try:
        yield
    finally:
        distribution_lib.distribute_data_input = original


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
def on_devices(distribution, processes: int):
    """Under `distribution` (None: one device) and, multi-process, with whole batches fed on every process.

    Only building and fitting run here. In a multi-process run, predictions come out split over
    every process's devices, which no single process can read back; the best model is loaded
    and pictured afterwards, outside the distribution, on process 0's own device.
    """
    with (distribution.scope() if distribution else contextlib.nullcontext()), whole_batches_on_every_process(processes):
        yield


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


def write_pictures(model, images: np.ndarray, folder: Path, history: dict | None = None, seed: int = 0,
                   labels: np.ndarray | None = None) -> None:
    """Training curves, a sample grid (a row per class for a conditional model), reconstructions, and
    the manifold (of the first class, for a conditional model) when latent_dim == 2."""
    from vae_edge import plots

    if history:
        plots.save_training_curves(history, folder / "training_curves.png")
    save_samples(model, folder / "samples.png", seed)
    labels = labels[:10] if model.conditional else None
    z_mean, _ = model.encode(images[:10], labels)
    plots.save_reconstructions(images[:10], model.decode(z_mean, labels), folder / "reconstructions.png")
    if model.latent_dim == 2:
        decode = functools.partial(model.decode, label=0) if model.conditional else model.decode
        plots.save_latent_manifold(decode, folder / "latent_manifold.png")


SAMPLE_COLUMNS = 8


def save_samples(model, path: Path, seed: int = 0) -> None:
    """64 seeded samples in a grid; for a conditional model a row per class, named on the left."""
    from vae_edge import plots

    if not model.conditional:
        plots.save_image_grid(model.sample(64, seed=seed), path, columns=SAMPLE_COLUMNS)
        return
    rows = np.repeat(np.arange(model.num_classes), SAMPLE_COLUMNS)
    plots.save_image_grid(model.sample(len(rows), seed=seed, labels=rows), path, columns=SAMPLE_COLUMNS,
                          row_labels=model.class_names)


def check_conditional(config: TrainConfig, splits) -> None:
    """A conditional run needs labelled data with at least two classes."""
    if config.conditional and not splits.labelled:
        raise BadInputError(f"--conditional needs class labels, and {config.dataset} has none; use mnist-5k, a Keras "
                            "data set, a folder of class folders or an .npz with x and y")
    if config.conditional and len(splits.class_names) < 2:
        raise BadInputError(f"--conditional needs at least 2 classes; {config.dataset} has {len(splits.class_names)}")

