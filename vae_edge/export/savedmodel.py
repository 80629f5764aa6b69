"""One TF SavedModel holding both graphs, callable by signature name.

Written through `keras.export.ExportArchive` with endpoints that call the graphs with
`training=False`: `model.export()` was seen writing BatchNormalization in training mode.
"""

from pathlib import Path

ENCODE, DECODE = "encode", "decode"


def signature_specs(image_shape, latent_dim: int):
    """Input specs with a dynamic batch; their names become the signature input names."""
    import tensorflow as tf

    return (
        tf.TensorSpec([None, *image_shape], tf.float32, name="image"),
        tf.TensorSpec([None, latent_dim], tf.float32, name="z"),
    )


def write_savedmodel(encoder, decoder, path) -> Path:
    """Signatures: `encode(image) -> z_mean, z_log_var`, `decode(z) -> reconstruction`,
    and `serving_default` = `encode`."""
    import keras
    import tensorflow as tf

    image_spec, z_spec = signature_specs(encoder.input_shape[1:], decoder.input_shape[-1])
    archive = keras.export.ExportArchive()
    archive.track(encoder)
    archive.track(decoder)

    @tf.function(input_signature=[image_spec])
    def encode(image):
        z_mean, z_log_var = encoder(image, training=False)
        return {"z_mean": z_mean, "z_log_var": z_log_var}

    @tf.function(input_signature=[z_spec])
    def decode(z):
        return {"reconstruction": decoder(z, training=False)}

    archive.add_endpoint("serving_default", encode)
    archive.add_endpoint(ENCODE, encode)
    archive.add_endpoint(DECODE, decode)
    archive.write_out(str(path), verbose=False)
    return Path(path)


class SavedModelEngine:
    """One signature of the SavedModel behind the runtime's engine interface (needs TensorFlow)."""

    def __init__(self, path, signature: str):
        import tensorflow as tf

        self.function = tf.saved_model.load(str(path)).signatures[signature]
        from vae_edge.runtime.engines import tensor_spec

        inputs = self.function.structured_input_signature[1]
        self.inputs = [tensor_spec(name, spec.shape, "float32") for name, spec in inputs.items()]
        self.outputs = [tensor_spec(name, spec.shape, "float32") for name, spec in self.function.structured_outputs.items()]

    def ops(self) -> list[str]:
        return sorted({op.type for op in self.function.graph.get_operations()})

    def run(self, feeds):
        import tensorflow as tf

        results = self.function(**{spec["name"]: tf.constant(feeds[spec["name"]], tf.float32) for spec in self.inputs})
        return {name: value.numpy() for name, value in results.items()}
