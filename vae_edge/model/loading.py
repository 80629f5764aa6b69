"""Loading `.keras` files safely, and the float32 twin every export is made from.

Keras' safe mode stays on: a user's own layer classes come from modules the user names
(`import_custom_objects`), never from code in the file. A model trained under `mixed_float16`
or `mixed_bfloat16` is rebuilt from its config in float32 and its weights copied over; the copy
is checked bit-for-bit, since the variables of a mixed-precision model are already float32.
"""

import importlib
import importlib.util
import re
import sys
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from vae_edge.errors import BadInputError, ExportError, MissingFileError, first_line
from vae_edge.model.vae import VAE
from vae_edge.registry import Precision


def load_vae(path) -> VAE:
    """Load a VAE saved by this package, with Keras' safe mode on."""
    if not Path(path).is_file():
        raise MissingFileError(f"{path}: no such model file (train one with `vae-edge train`)")
    model = load_keras(path)
    if not isinstance(model, VAE):
        raise BadInputError(f"{path}: holds a {type(model).__name__}, not a VAE trained by vae-edge; export any Keras "
                            "VAE with `vae-edge export --encoder ENC.keras --decoder DEC.keras --dataset DATA`")
    return model


def float32_vae(model: VAE) -> VAE:
    """`model` itself if it is float32, else a float32 twin with identical weights."""
    if model.dtype_policy.name == Precision.FLOAT32:
        return model
    twin = VAE.from_config({**model.get_config(), "dtype": Precision.FLOAT32.value})
    differs = copy_weights(model, twin)
    if differs:
        raise ExportError(f"float32 rebuild differs from the trained model at weight {differs}")
    return twin


def copy_weights(model, twin) -> str | None:
    """Give `twin` (a float32 rebuild of `model`) the model's weights; the path of the first weight that did not
    come across exactly (another path, or another value in float32), or None."""
    import keras

    twin.set_weights(model.get_weights())
    for source, copy in zip(model.weights, twin.weights, strict=True):
        value = np.asarray(keras.ops.convert_to_numpy(source), np.float32)
        if source.path != copy.path or not np.array_equal(value, keras.ops.convert_to_numpy(copy)):
            return source.path
    return None


FLOAT32 = Precision.FLOAT32.value


def layers_of(model) -> list:
    """Every layer of a model, inside nested models too."""
    found = []
    for layer in model.layers:
        found += layers_of(layer) if hasattr(layer, "layers") and layer is not model else [layer]
    return found


def source_precision(*models) -> str:
    """The dtype policy the models were built with: mixed if any layer computes in float16 or bfloat16."""
    policies = {getattr(layer.dtype_policy, "name", FLOAT32) for model in models for layer in layers_of(model)}
    return next((p for p in (Precision.MIXED_FLOAT16, Precision.MIXED_BFLOAT16) if p in policies), FLOAT32)


def float32_model(model):
    """`model` if every layer computes in float32, else a float32 copy with the same weights (checked)."""
    if source_precision(model) == FLOAT32:
        return model

    twin = type(model).from_config(_float32_config(model.get_config()))
    differs = copy_weights(model, twin)
    if differs:
        raise BadInputError(f"the float32 copy of {model.name} differs from it at weight {differs}")
    return twin


def _float32_config(config):
    """A model config with every layer's dtype policy set to float32."""
    if isinstance(config, dict):
        if config.get("class_name") == "DTypePolicy" or config.get("class_name") == "FloatDTypePolicy":
            return {**config, "config": {**config.get("config", {}), "name": FLOAT32}}
        return {key: FLOAT32 if key == "dtype" and isinstance(value, str) else _float32_config(value)
                for key, value in config.items()}
    if isinstance(config, list):
        return [_float32_config(item) for item in config]
    return config


def import_custom_objects(modules: Sequence[str]) -> dict[str, type]:
    """Import each module (a dotted name, or a path to a .py file) and return the Keras layer and model
    classes it defines, by name: the user's own layers, which Keras' safe mode will not build from a file."""
    import keras

    found: dict[str, type] = {}
    for spec in modules:
        module = _import(spec)
        for name, value in vars(module).items():
            if isinstance(value, type) and issubclass(value, keras.layers.Layer) and value.__module__ == module.__name__:
                found[name] = value
        if not any(value.__module__ == module.__name__ for value in found.values()):
            raise BadInputError(f"--custom-objects {spec}: the module defines no Keras layer or model class")
    return found


def _import(spec: str):
    path = Path(spec)
    try:
        if path.suffix == ".py":
            if not path.is_file():
                raise MissingFileError(f"--custom-objects {spec}: no such file")
            name = f"vae_edge_custom_{path.stem}"
            module_spec = importlib.util.spec_from_file_location(name, path)
            module = importlib.util.module_from_spec(module_spec)
            sys.modules[name] = module
            module_spec.loader.exec_module(module)
            return module
        return importlib.import_module(spec)
    except MissingFileError:
        raise
    except Exception as error:  # the user's module raised while importing
        raise BadInputError(f"--custom-objects {spec}: importing it failed "
                            f"({type(error).__name__}: {first_line(error)})") from None


def load_keras(path, custom_objects: dict[str, type] | None = None, role: str = "model"):
    """A `.keras` file as a Keras object, with Keras' safe mode on; one-line errors for what goes wrong."""
    import keras

    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"{path}: no such {role} file")
    if path.suffix != ".keras" or not zipfile.is_zipfile(path):
        raise BadInputError(f"{path}: not a .keras model file (it is not a Keras zip archive)")
    try:
        return keras.models.load_model(path, safe_mode=True, custom_objects=custom_objects or None)
    except Exception as error:  # Keras raises many types for corrupt or foreign archives
        missing = _missing_class(error)
        if missing:
            raise BadInputError(f"{path}: uses a layer or model class {missing!r} that Keras does not know; pass "
                                f"--custom-objects with the module (or .py file) that defines it") from None
        raise BadInputError(f"{path}: cannot load this .keras file ({type(error).__name__}: {first_line(error)})") from None


def _missing_class(error: BaseException) -> str | None:
    """The class name a Keras deserialization error says it could not find, if any."""
    texts = []
    while error is not None:
        texts.append(str(error))
        error = error.__cause__ or error.__context__
    text = "\n".join(texts)
    match = re.search(r"Could not locate class '(\w+)'", text) or re.search(r"'class_name': '(\w+)'", text)
    return match.group(1) if match else None
