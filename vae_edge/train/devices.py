"""Which devices train, and spreading each batch over them (data parallel on JAX)."""

import contextlib
from collections.abc import Callable
from dataclasses import replace

from vae_edge.errors import BadInputError
from vae_edge.train.backend import Backend
from vae_edge.train.hosts import process_index_and_count


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


@contextlib.contextmanager
def on_devices(distribution, processes: int):
    """Under `distribution` (None: one device) and, multi-process, with whole batches fed on every process.

    Only building and fitting run here. In a multi-process run, predictions come out split over
    every process's devices, which no single process can read back; the best model is loaded
    and pictured afterwards, outside the distribution, on process 0's own device.
    """
    with (distribution.scope() if distribution else contextlib.nullcontext()), whole_batches_on_every_process(processes):
        yield


