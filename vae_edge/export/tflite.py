"""TFLite (LiteRT) conversion in every mode, from the SavedModel's signatures.

Converting `from_saved_model` is deliberate: `from_concrete_functions` on Keras 3 models
was seen producing a graph that outputs NaN. Only built-in ops are allowed; a graph that
would need TensorFlow (Flex) ops fails with their names. A dynamic-batch model has batch 1
and a dynamic batch signature, so the interpreter can resize it at run time; a fixed-shape
model comes from a SavedModel whose signatures have the fixed batch.

`int8` keeps a float head: the ops between the last compute op and each graph output (the
decoder's sigmoid, the encoder's SoftRange on z_log_var) run in float, so the last compute
op's output is quantized with a scale of its own and the head's output is not cut to 256
levels. A sigmoid's int8 output has a fixed step of 1/256: dim pixels' probabilities round
to 0, which the Bernoulli likelihood charges heavily (a 1-epoch `small` lost 21 % of its
ELBO; with the float head -0.05 %: benchmarks/results/int8_elbo.md). The selection goes through TensorFlow's own tool for
it, `QuantizationDebugger` with `denylisted_nodes` (ai-edge-quantizer 0.10 was measured
too: its float head still requantized the output and it left DEPTH_TO_SPACE in float).
`int8-io` stays integer from end to end (integer-only targets run no float op), so a graph
meant for it should end in its last compute op: the decoder is converted without its sigmoid
(`reconstruction_logits` out, with a scale calibrated for logits) and the runtime applies it.
"""

import contextlib
import re
import warnings
from collections.abc import Callable, Iterable, Mapping

import numpy as np

from vae_edge.errors import ExportError, first_line
from vae_edge.export.job import ExportJob
from vae_edge.logs import native_stderr_silenced
from vae_edge.registry import MODES, Format, Mode, register_converter

# Ops that multiply by weights: where a float head starts (walking back from an output).
COMPUTE_OPS = frozenset({"CONV_2D", "DEPTHWISE_CONV_2D", "TRANSPOSE_CONV", "FULLY_CONNECTED", "BATCH_MATMUL"})
Calibration = Callable[[], Iterable[Mapping[str, np.ndarray]]]  # batches of {input_name: array}


@register_converter(Format.TFLITE)
def convert(job: ExportJob):
    """Convert the graph's signature of the SavedModel with the target's batch. Returns the `float_head_debugger`
    an `int8` file was quantized with, which the per-layer diagnosis reuses (None for other modes)."""
    mode, signature = job.target.mode, job.spec.signature
    content, debugger = converted(job.savedmodel(job.target.batch), signature, mode, job.calibration_batches)
    job.path.write_bytes(content)
    return debugger


def to_tflite(savedmodel_path, signature: str, mode: Mode, calibration: Calibration) -> bytes:
    """One signature of a SavedModel as TFLite; `calibration()` lists `{input_name: array}` batches."""
    return converted(savedmodel_path, signature, mode, calibration)[0]


def converted(savedmodel_path, signature: str, mode: Mode, calibration: Calibration):
    """`to_tflite`'s file, and for `int8` the calibrated `float_head_debugger` it was quantized with (else None)."""
    converter = new_converter(savedmodel_path, signature, mode, calibration)
    try:
        with quiet():
            if mode != Mode.INT8:
                return converter.convert(), None
            debugger = float_head_debugger(converter)
            return debugger.get_nondebug_quantized_model(), debugger
    except Exception as error:  # tf.lite's ConverterError and friends
        ops = flex_ops_from_error(str(error))
        if ops:
            raise ExportError(
                f"TFLite {mode} {signature} needs TensorFlow ops that LiteRT does not have built in: "
                f"{', '.join(ops)}; replace those layers (see export/README.md)"
            ) from None
        raise ExportError(f"TFLite {mode} {signature} conversion failed: {first_line(error)}") from None


def new_converter(savedmodel_path, signature: str, mode: Mode, calibration: Calibration):
    """A `TFLiteConverter` for one signature, set up for `mode` (built-in ops only)."""
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
    return converter


def float_head_debugger(converter):
    """A `QuantizationDebugger` that has calibrated `converter` (an `int8` one) and quantizes all but the
    float head; `get_nondebug_quantized_model()` is the `int8` file.
    Call it inside `quiet()`: calibration and the quantizer are chatty."""
    import tensorflow as tf

    debugger = tf.lite.experimental.QuantizationDebugger(converter=converter)
    head = head_tensors(debugger.calibrated_model)
    debugger.options = tf.lite.experimental.QuantizationDebugOptions(denylisted_nodes=head or None)
    return debugger


def head_tensors(model: bytes) -> list[str]:
    """Output tensor names of the ops between the last compute op (`COMPUTE_OPS`) and each graph output of a
    float (or calibrated) TFLite model, walking back from the outputs."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=model)
    names = {tensor["index"]: tensor["name"] for tensor in interpreter.get_tensor_details()}
    producers = {output: op for op in interpreter._get_ops_details() for output in op["outputs"]}
    head, seen = [], set()
    pending = [tensor["index"] for tensor in interpreter.get_output_details()]
    while pending:
        op = producers.get(pending.pop())
        if op is None or op["op_name"] in COMPUTE_OPS or op["index"] in seen:
            continue
        seen.add(op["index"])
        head += [names[output] for output in op["outputs"]]
        pending += [tensor for tensor in op["inputs"] if tensor >= 0]
    return head


@contextlib.contextmanager
def quiet():
    """Calibration warns and the quantizer prints per tensor: both hidden."""
    with warnings.catch_warnings(), native_stderr_silenced():
        warnings.simplefilter("ignore")
        yield


def flex_ops_from_error(message: str) -> list[str]:
    """The TensorFlow op names a ConverterError says are not TFLite built-ins."""
    names = set(re.findall(r"'tf\.(\w+)' op is neither a custom op nor a flex op", message))
    for kind in ("TF Select ops", "Custom ops"):
        match = re.search(kind + r": ([^\n]*)", message)
        if match:
            names.update(name.strip() for name in match.group(1).split(",") if name.strip())
    return sorted(names)
