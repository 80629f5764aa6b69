"""Which Keras backend runs: TensorFlow, JAX or PyTorch, chosen before Keras is first imported.

Keras fixes its backend when it is imported (from `KERAS_BACKEND`, else `~/.keras/keras.json`),
so choosing one is setting that variable early; once Keras is loaded a different backend can
only come from a new process. Training and evaluation run on any backend and `.keras` files
move between them; export, verification and benchmarks convert TensorFlow graphs and so need
the TensorFlow backend. Importable without Keras or any backend.
"""

import functools
import importlib.metadata
import importlib.util
import multiprocessing
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from enum import StrEnum

from vae_edge.errors import BadInputError
from vae_edge.logs import libraries_quieted, quiet_libraries
from vae_edge.registry import install_hint

ENV = "KERAS_BACKEND"


class Backend(StrEnum):
    TENSORFLOW = "tensorflow"
    JAX = "jax"
    TORCH = "torch"


# The module each backend imports; `registry.install_hint` says how to install it.
MODULES: dict[Backend, str] = {Backend.TENSORFLOW: "tensorflow", Backend.JAX: "jax", Backend.TORCH: "torch"}
# `--backend auto`: the first of these that sees a GPU or TPU trains, else TensorFlow. JAX first: it
# compiles the whole training step, which on an H200 ran `small` 13x faster than PyTorch's eager
# steps (benchmarks/results/train_throughput-h200.md).
AUTO = "auto"
ACCELERATED_ORDER = (Backend.JAX, Backend.TORCH, Backend.TENSORFLOW)
# Prints "accelerator" when the backend sees a GPU/TPU; run in a child, so no framework stays
# loaded (or holds GPU memory) in this process.
_ACCELERATOR_PROBES: dict[Backend, str] = {
    Backend.JAX: "import jax; print('accelerator' if jax.default_backend() != 'cpu' else 'cpu')",
    Backend.TORCH: "import torch; print('accelerator' if torch.cuda.is_available() else 'cpu')",
    Backend.TENSORFLOW: "import tensorflow as tf; print('accelerator' if tf.config.list_physical_devices('GPU') else 'cpu')",
}
PROBE_TIMEOUT_S = 120
# Packages without which a backend cannot see an accelerator: then it is not asked (importing JAX
# to ask costs 2 s of every `make demo` on a CPU). JAX reaches GPUs and TPUs through plugin
# packages; PyTorch's and TensorFlow's CPU-only builds say so in their names and versions.
_JAX_ACCELERATOR_PACKAGES = ("jax-cuda", "jax-rocm", "jax-metal", "libtpu")


def loaded_backend() -> str | None:
    """The backend of the Keras already imported in this process, or None if Keras is not loaded yet."""
    keras = sys.modules.get("keras")
    return keras.backend.backend() if keras is not None else None


def requested_backend() -> Backend:
    """The backend Keras will load: `KERAS_BACKEND` if set, else TensorFlow (Keras' default)."""
    name = os.environ.get(ENV, Backend.TENSORFLOW)
    try:
        return Backend(name)
    except ValueError:
        raise BadInputError(f"{ENV}={name!r} is not a backend; use one of: {', '.join(Backend)}") from None


def check_installed(backend: Backend) -> None:
    """A one-line error naming the install command when `backend`'s package is missing."""
    module = MODULES[backend]
    if importlib.util.find_spec(module) is None:
        raise BadInputError(f"the {backend} backend needs the {module} package: {install_hint(module)}")


def select_backend(name: str | None = None) -> Backend:
    """Make Keras load backend `name` (None: keep `KERAS_BACKEND` or the default) and return it.

    Refuses when the backend's package is missing (naming the extra that installs it) or when
    Keras is already loaded with another backend, which no setting can change any more.
    """
    backend = Backend(name) if name else requested_backend()
    check_installed(backend)
    loaded = loaded_backend()
    if loaded is not None and loaded != backend:
        raise BadInputError(
            f"Keras is already loaded with the {loaded} backend in this process; "
            f"start a new one with {ENV}={backend} to use {backend}"
        )
    os.environ[ENV] = str(backend)
    return backend


def require_tensorflow_backend(command: str) -> None:
    """Call first in commands that convert TensorFlow graphs (export, verify, bench, run).

    A shell's `KERAS_BACKEND=jax` is for training; these commands switch to TensorFlow on
    their own so a JAX-trained `.keras` exports in one command. If Keras is already loaded
    with another backend (a library caller's process, not the CLI, which loads Keras lazily)
    this is a one-line error rather than a silent re-run in a subprocess: a function call
    cannot be re-run elsewhere without losing its in-memory arguments and its caller's state.
    """
    loaded = loaded_backend()
    if loaded not in (None, Backend.TENSORFLOW):
        raise BadInputError(
            f"{command} needs Keras on the TensorFlow backend, but this process loaded it with {loaded}; "
            f"run it in a process started with {ENV}=tensorflow (the vae-edge command does this itself)"
        )
    select_backend(Backend.TENSORFLOW)


def _version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def could_see_accelerator(backend: Backend) -> bool:
    """False when `backend`'s installed build cannot reach a GPU or TPU (no need to import it and ask)."""
    if backend == Backend.JAX:
        names = (dist.metadata["Name"] or "" for dist in importlib.metadata.distributions())
        return any(name.lower().startswith(_JAX_ACCELERATOR_PACKAGES) for name in names)
    if backend == Backend.TORCH:
        return not (_version("torch") or "").endswith("+cpu")
    return _version("tensorflow") is not None or _version("tensorflow-cpu") is None  # tensorflow-cpu alone: no GPU


def sees_accelerator(backend: Backend) -> bool:
    """Whether `backend` is installed and finds a GPU or TPU (asked in a child process)."""
    if importlib.util.find_spec(MODULES[backend]) is None or not could_see_accelerator(backend):
        return False
    env = {**os.environ, "XLA_PYTHON_CLIENT_PREALLOCATE": "false", "TF_CPP_MIN_LOG_LEVEL": "3"}
    try:
        done = subprocess.run([sys.executable, "-c", _ACCELERATOR_PROBES[backend]], env=env, capture_output=True,
                              text=True, timeout=PROBE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return False
    return done.returncode == 0 and done.stdout.strip().endswith("accelerator")


@functools.cache  # the machine does not change while a process runs
def training_backend(name: str = AUTO) -> Backend:
    """The backend that trains: `name`, or for "auto" the first of ACCELERATED_ORDER that sees a
    GPU/TPU, else TensorFlow (on a CPU the backends trained within noise of each other, and
    TensorFlow, which export needs anyway, trains in this process)."""
    if name != AUTO:
        return Backend(name)
    return next((backend for backend in ACCELERATED_ORDER if sees_accelerator(backend)), Backend.TENSORFLOW)


def call_in_backend(backend: Backend, function: Callable, *args):
    """`function(*args)` with Keras on `backend`: here when this process's Keras is (or will be) on it,
    else in a fresh child process, since Keras cannot switch backends once loaded. The result and
    any exception (a `BadInputError` too) come back as if the call were local."""
    if (loaded_backend() or requested_backend()) == backend:
        return function(*args)
    check_installed(backend)
    child = multiprocessing.get_context("spawn").Pool(1, initializer=_start_child, initargs=(backend, libraries_quieted()))
    try:
        return child.apply(function, args)
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM here ends the child too; it unwinds as from Ctrl-C,
        child.terminate()  # so its staging folders are removed
        raise
    finally:  # else it leaves when its task is done: a signal would land in its exit handlers (tracebacks)
        child.close()
        child.join()


def _start_child(backend: Backend, quiet: bool) -> None:
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # SIGTERM raises KeyboardInterrupt, like Ctrl-C
    if quiet:  # as quiet as this process: before the call's module loads Keras and TensorFlow
        quiet_libraries()
    select_backend(backend)
