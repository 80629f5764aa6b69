"""One TF SavedModel holding every graph, callable by signature name.

Written through `keras.export.ExportArchive` with endpoints that call the graphs with
`training=False`: `model.export()` was seen writing BatchNormalization in training mode.
It is also the source every TFLite model is converted from, so it is written once per
batch shape (dynamic for the bundle, fixed for the fixed-shape TFLite files).
"""

import shutil
from pathlib import Path

from vae_edge.export.job import ExportJob
from vae_edge.registry import Format, register_converter
from vae_edge.signatures import GraphSpec


def write_savedmodel(endpoints: list[tuple[object, GraphSpec]], path, batch: int | None = None) -> Path:
    """Signatures: one per (Keras graph, its GraphSpec), named by the spec (`encode`, `decode`; an int8-io
    decoder's `decode` returns `reconstruction_logits`), and Keras' `serving_default` (the first one's); inputs
    and outputs by the specs' names, with batch `batch` (None: dynamic)."""
    import keras
    import tensorflow as tf

    archive = keras.export.ExportArchive()
    for network, spec in endpoints:
        archive.track(network)
        archive.add_endpoint(spec.signature, _endpoint(network, spec, batch, tf))
    archive.write_out(str(path), verbose=False)
    return Path(path)


def _endpoint(network, spec: GraphSpec, batch: int | None, tf):
    """A tf.function over the graph's named inputs that returns its outputs by name."""
    input_specs = [tf.TensorSpec(t.with_batch(batch).shape, t.dtype, name=t.name) for t in spec.inputs]

    @tf.function(input_signature=input_specs)
    def endpoint(*inputs):
        outputs = network(inputs[0] if len(inputs) == 1 else list(inputs), training=False)
        outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
        return dict(zip(spec.output_names, outputs))

    return endpoint


@register_converter(Format.SAVEDMODEL)
def convert(job: ExportJob) -> None:
    """The bundle's SavedModel is the dynamic-batch one every TFLite file comes from: copy it."""
    if not job.path.exists():
        shutil.copytree(job.savedmodel(None), job.path)
