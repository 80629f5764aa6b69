"""vae-edge: train a ResNet VAE in Keras 3, export it for devices, verify and benchmark it.

Importing the package is cheap: Keras and TensorFlow load only when a training or export
name is first used, so `vae_edge.runtime` stays TensorFlow-free. So that `import vae_edge`
followed by `keras.models.load_model("model.keras")` finds the VAE class, the package's
Keras classes are registered as soon as Keras itself is imported (or now, if it already is).
"""

import importlib
import importlib.abc
import importlib.util
import sys

__version__ = "0.1.0"
_KERAS_CLASSES = "vae_edge.model"  # importing it registers VAE and Sampling with Keras


class _RegisterAfterKeras(importlib.abc.MetaPathFinder):
    """Finds nothing itself; when `keras` is about to load, wraps its loader so that our Keras
    classes are imported right after Keras finishes loading (Python has no post-import hook)."""

    def find_spec(self, fullname, path, target=None):
        if fullname != "keras":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(fullname)
        if spec is not None and spec.loader is not None:
            exec_module = spec.loader.exec_module

            def exec_then_register(module):
                exec_module(module)
                importlib.import_module(_KERAS_CLASSES)

            spec.loader.exec_module = exec_then_register
        return spec


if "keras" in sys.modules:
    importlib.import_module(_KERAS_CLASSES)
elif not any(isinstance(finder, _RegisterAfterKeras) for finder in sys.meta_path):
    sys.meta_path.insert(0, _RegisterAfterKeras())


def __getattr__(name: str):
    if name in ("VAE", "Sampling"):
        return getattr(importlib.import_module(_KERAS_CLASSES), name)
    raise AttributeError(f"module 'vae_edge' has no attribute {name!r}")
