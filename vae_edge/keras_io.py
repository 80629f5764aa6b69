"""Loading `.keras` files safely, with one-line errors for every way it can go wrong."""

import zipfile
from pathlib import Path

from vae_edge.errors import BadInputError, MissingFileError, first_line


def load_vae(path):
    """Load a VAE saved by this package, with Keras' safe mode on."""
    import keras

    from vae_edge.model import VAE

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
