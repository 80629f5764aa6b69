"""TFLite (LiteRT) conversion in every mode, from the SavedModel's signatures.

Converting `from_saved_model` is deliberate: `from_concrete_functions` on Keras 3 models
was seen producing a graph that outputs NaN. Only built-in ops are allowed; a graph that
would need TensorFlow (Flex) ops fails with their names. The converted model has batch 1
and a dynamic batch signature, so the interpreter can resize it at run time.
"""

import re
import warnings
from collections.abc import Callable, Iterator

import numpy as np

from vae_edge.errors import ExportError, first_line

TFLITE_MODES = ("float32", "float16", "dynamic", "int8", "int8-io")
INTEGER_MODES = ("int8", "int8-io")


def convert(savedmodel_path, signature: str, mode: str, calibration: Callable[[], Iterator[dict]] | None = None) -> bytes:
    """Convert one signature of the SavedModel; `calibration` yields `{input_name: batch-1 array}`."""
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_saved_model(str(savedmodel_path), signature_keys=[signature])
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if mode != "float32":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if mode == "float16":
        converter.target_spec.supported_types = [tf.float16]
    if mode in INTEGER_MODES:
        converter.representative_dataset = calibration
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    if mode == "int8-io":
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    try:
        with warnings.catch_warnings():  # calibration runs TF's own deprecated interpreter, which warns
            warnings.simplefilter("ignore")
            return converter.convert()
    except Exception as error:  # tf.lite's ConverterError and friends
        ops = flex_ops_from_error(str(error))
        if ops:
            raise ExportError(
                f"TFLite {mode} {signature} needs TensorFlow ops that LiteRT does not have built in: "
                f"{', '.join(ops)}; replace those layers (see export/README.md)"
            ) from None
        raise ExportError(f"TFLite {mode} {signature} conversion failed: {first_line(error)}") from None


def flex_ops_from_error(message: str) -> list[str]:
    """The TensorFlow op names a ConverterError says are not TFLite built-ins."""
    names = set(re.findall(r"'tf\.(\w+)' op is neither a custom op nor a flex op", message))
    for kind in ("TF Select ops", "Custom ops"):
        match = re.search(kind + r": ([^\n]*)", message)
        if match:
            names.update(name.strip() for name in match.group(1).split(",") if name.strip())
    return sorted(names)


def calibration_feed(name: str, samples: np.ndarray) -> Callable[[], Iterator[dict]]:
    """A representative dataset: batches of one, the converted graph's own batch size."""

    def feed():
        for sample in samples:
            yield {name: sample[np.newaxis].astype(np.float32)}

    return feed
