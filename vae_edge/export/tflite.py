"""TFLite (LiteRT) conversion in every mode, from the SavedModel's signatures.

Converting `from_saved_model` is deliberate: `from_concrete_functions` on Keras 3 models
was seen producing a graph that outputs NaN. Only built-in ops are allowed; a graph that
would need TensorFlow (Flex) ops fails with their names. A dynamic-batch model has batch 1
and a dynamic batch signature, so the interpreter can resize it at run time; a fixed-shape
model comes from a SavedModel whose signatures have the fixed batch.
"""

import re
import warnings

from vae_edge.errors import ExportError, first_line
from vae_edge.export.job import ExportJob
from vae_edge.logs import native_stderr_silenced
from vae_edge.registry import MODES, Format, Mode, register_converter


@register_converter(Format.TFLITE)
def convert(job: ExportJob) -> None:
    """Convert the graph's signature of the SavedModel with the target's batch."""
    mode, signature = job.target.mode, job.spec.signature
    job.path.write_bytes(to_tflite(job.savedmodel(job.target.batch), signature, mode, job.calibration_batches))


def to_tflite(savedmodel_path, signature: str, mode: Mode, calibration) -> bytes:
    """One signature of a SavedModel as TFLite; `calibration()` lists `{input_name: array}` batches."""
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_saved_model(str(savedmodel_path), signature_keys=[signature])
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if mode != Mode.FLOAT32:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if mode == Mode.FLOAT16:
        converter.target_spec.supported_types = [tf.float16]
    if MODES[mode].calibrated:
        converter.representative_dataset = calibration
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    if mode == Mode.INT8_IO:
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    try:
        with warnings.catch_warnings(), native_stderr_silenced():  # calibration warns; the quantizer prints per tensor
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
