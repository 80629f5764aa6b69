"""ONNX export through tf2onnx, and an int8 variant through onnxruntime's static QDQ quantization.

Activations and weights are quantized as unsigned 8-bit (U8U8): with signed activations
onnxruntime's optimizer left convolutions in float on AVX2 CPUs and the error tripled.
"""

import shutil
import tempfile
from pathlib import Path

import numpy as np

from vae_edge.errors import ExportError, first_line

ONNX_MODES = ("float32", "int8")
BATCH_AXIS = "batch"


def default_opset() -> int:
    """The newest opset tf2onnx writes (18 for tf2onnx 1.17); onnxruntime runs it since 1.14."""
    from tf2onnx import constants

    return max(constants.OPSET_TO_IR_VERSION)


def convert(graph, output_names: list[str], path, opset: int | None = None) -> Path:
    """Convert a Keras functional graph (inference mode) to ONNX with a dynamic batch axis."""
    import onnx
    import tensorflow as tf
    import tf2onnx

    spec = tf.TensorSpec([None, *graph.input_shape[1:]], tf.float32, name=graph.inputs[0].name)

    @tf.function(input_signature=[spec])
    def forward(x):
        outputs = graph(x, training=False)
        outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
        return dict(zip(output_names, outputs))

    try:
        model, _ = tf2onnx.convert.from_function(forward, input_signature=[spec], opset=opset or default_opset())
    except Exception as error:
        raise ExportError(f"ONNX conversion of the {graph.name} failed: {first_line(error)}") from None
    for tensor in [*model.graph.input, *model.graph.output]:
        tensor.type.tensor_type.shape.dim[0].dim_param = BATCH_AXIS  # tf2onnx names it unk__NN
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))
    return Path(path)


def quantize_int8(float_path, path, input_name: str, samples: np.ndarray) -> Path:
    """Static QDQ quantization calibrated on `samples` (per-channel weights, U8U8)."""
    import onnxruntime
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.batches = iter(samples[:, np.newaxis].astype(np.float32))

        def get_next(self):
            batch = next(self.batches, None)
            return None if batch is None else {input_name: batch}

    onnxruntime.set_default_logger_severity(3)
    scratch = Path(tempfile.mkdtemp(prefix="vae-edge-onnx-"))
    try:
        prepared = scratch / "prepared.onnx"
        quant_pre_process(str(float_path), str(prepared))
        quantize_static(
            str(prepared), str(path), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
            activation_type=QuantType.QUInt8, weight_type=QuantType.QUInt8,
            calibrate_method=CalibrationMethod.MinMax,
        )
    except Exception as error:
        raise ExportError(f"ONNX int8 quantization of {Path(float_path).name} failed: {first_line(error)}") from None
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return Path(path)
