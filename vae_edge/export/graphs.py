"""The two graphs that get exported, always in float32.

A model trained under `mixed_float16` or `mixed_bfloat16` is rebuilt from its config in
float32 and its weights copied over; the copy is checked bit-for-bit, since the variables
of a mixed-precision model are already float32.
"""

import numpy as np

from vae_edge.errors import ExportError


def float32_vae(model):
    """`model` itself if it is float32, else a float32 twin with identical weights."""
    from vae_edge.model import VAE

    if model.dtype_policy.name == "float32":
        return model
    twin = VAE.from_config({**model.get_config(), "dtype": "float32"})
    twin.set_weights(model.get_weights())
    for source, copy in zip(model.weights, twin.weights, strict=True):
        if source.path != copy.path or not np.array_equal(np.asarray(source.numpy(), np.float32), copy.numpy()):
            raise ExportError(f"float32 rebuild differs from the trained model at weight {source.path}")
    return twin
