"""vae-edge: train a ResNet VAE in Keras 3, export it for devices, verify and benchmark it.

Importing the package is cheap: Keras and TensorFlow load only when a training or export
name is first used, so `vae_edge.runtime` stays TensorFlow-free.
"""

__version__ = "0.1.0"


def __getattr__(name: str):
    if name in ("VAE", "Sampling"):
        from vae_edge import model

        return getattr(model, name)
    raise AttributeError(f"module 'vae_edge' has no attribute {name!r}")
