"""Which Keras backend runs: TensorFlow, JAX or PyTorch, chosen before Keras is first imported.

Keras fixes its backend when it is imported (from `KERAS_BACKEND`, else `~/.keras/keras.json`),
so choosing one is setting that variable early; once Keras is loaded a different backend can
only come from a new process. Training and evaluation run on any backend and `.keras` files
move between them; export, verification and benchmarks convert TensorFlow graphs and so need
the TensorFlow backend. Importable without Keras or any backend.
"""

import importlib.util
import os
import sys
from enum import StrEnum

from vae_edge.errors import BadInputError
from vae_edge.registry import install_hint

ENV = "KERAS_BACKEND"


class Backend(StrEnum):
    TENSORFLOW = "tensorflow"
    JAX = "jax"
    TORCH = "torch"


# The module each backend imports; `registry.install_hint` says how to install it.
MODULES: dict[Backend, str] = {Backend.TENSORFLOW: "tensorflow", Backend.JAX: "jax", Backend.TORCH: "torch"}


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


def select_backend(name: str | None = None) -> Backend:
    """Make Keras load backend `name` (None: keep `KERAS_BACKEND` or the default) and return it.

    Refuses when the backend's package is missing (naming the extra that installs it) or when
    Keras is already loaded with another backend, which no setting can change any more.
    """
    backend = Backend(name) if name else requested_backend()
    module = MODULES[backend]
    if importlib.util.find_spec(module) is None:
        raise BadInputError(f"the {backend} backend needs the {module} package: {install_hint(module)}")
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
