"""Loading `.keras` files safely, and the float32 twin every export is made from.

A model trained under `mixed_float16` or `mixed_bfloat16` is rebuilt from its config in
float32 and its weights copied over; the copy is checked bit-for-bit, since the variables
of a mixed-precision model are already float32.
"""

import zipfile
from pathlib import Path

import numpy as np

from vae_edge.errors import BadInputError, ExportError, MissingFileError, first_line
from vae_edge.model.vae import VAE
from vae_edge.registry import Precision


def load_vae(path) -> VAE:
    """Load a VAE saved by this package, with Keras' safe mode on."""
    import keras

    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"{path}: no such model file (train one with `vae-edge train`)")
    if path.suffix != ".keras" or not zipfile.is_zipfile(path):
        raise BadInputError(f"{path}: not a .keras model file (it is not a Keras zip archive)")
    try:
        model = keras.models.load_model(path, safe_mode=True)
    except Exception as error:  # Keras raises many types for corrupt or foreign archives
        raise BadInputError(f"{path}: cannot load this .keras file ({type(error).__name__}: {first_line(error)})") from None
    if not isinstance(model, VAE):
        raise BadInputError(f"{path}: holds a {type(model).__name__}, not a VAE from vae_edge")
    return model


def float32_vae(model: VAE) -> VAE:
    """`model` itself if it is float32, else a float32 twin with identical weights."""
    if model.dtype_policy.name == Precision.FLOAT32:
        return model
    twin = VAE.from_config({**model.get_config(), "dtype": Precision.FLOAT32.value})
    twin.set_weights(model.get_weights())
    for source, copy in zip(model.weights, twin.weights, strict=True):
        if source.path != copy.path or not np.array_equal(np.asarray(source.numpy(), np.float32), copy.numpy()):
            raise ExportError(f"float32 rebuild differs from the trained model at weight {source.path}")
    return twin
