"""Where an integer file loses accuracy: one row per quantized tensor, in graph order.

Each row gives the op that writes the tensor and two signal-to-quantization-noise ratios (dB):
local, the op's integer output against the same op run in float on the quantized model's own
inputs (what this op adds), and accumulated, the quantized model's tensor against the float
model's (everything upstream too). A low local figure names the op to keep in float; a high
local but low accumulated one says the error comes from upstream. Graph outputs computed in
float (a float head) get a row with the accumulated figure only.

TFLite rows come from TensorFlow's `QuantizationDebugger`: its NumericVerify ops compare each
quantized op with a float twin (float weights) fed the same dequantized inputs, so local error
includes the weights' rounding. ONNX rows come from onnxruntime's `qdq_loss_debug`: `qdq_err`
compares a tensor before its QuantizeLinear with after its DequantizeLinear (the output's
rounding and clipping; where the range starts at 0, the Relu the quantizer folded into it is
applied first), and `xmodel_err` the float model's tensor with the QDQ model's. A few
calibration batches are enough: SQNR is a ratio of mean powers. TFLite's intermediate tensors are read with LiteRT's
reference kernels (XNNPACK keeps only its partitions' outputs), so the integer rounding can
differ from a delegated run by a step here and there.
"""

import csv
import io
import math
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from vae_edge.errors import BadInputError
from vae_edge.export.tflite import Calibration, float_head_debugger, new_converter, quiet
from vae_edge.registry import Mode
from vae_edge.runtime.engines import quantize

DIAGNOSIS_BATCHES = 16  # calibration batches run through both models (batch 1 for a dynamic-batch graph)
MAX_SQNR_DB = 200.0  # an exact tensor (zero noise), so rows stay valid JSON


@dataclass(frozen=True)
class LayerError:
    """One quantized tensor (or a float graph output) of an integer file."""

    op: str  # the op that writes it: CONV_2D, LOGISTIC... (TFLite), Conv, Sigmoid... (ONNX)
    tensor: str  # its name, shortened; graph outputs by their signature name
    local_sqnr_db: float | None  # None for a tensor computed in float
    accumulated_sqnr_db: float | None  # None where the float model has no tensor of that name
    scale: float | None = None
    zero_point: int | None = None

    def to_json(self) -> dict:
        return asdict(self)


def sqnr_db(signal_power: float, noise_power: float) -> float:
    """10 log10(signal / noise), capped at MAX_SQNR_DB."""
    if noise_power <= 0.0:
        return MAX_SQNR_DB
    return float(min(MAX_SQNR_DB, 10.0 * math.log10(max(signal_power, 1e-30) / noise_power)))


def short_name(name: str) -> str:
    """A converter's fused tensor name (`encoder_1/stem_relu_1/Relu;encoder_1/stem_bn_1/...`) as its first
    part without the model's scope (`stem_relu_1/Relu`)."""
    first = name.split(";")[0]
    scope, _, rest = first.partition("/")
    return rest if rest and scope.endswith("_1") else first


# -- TFLite ---------------------------------------------------------------------------------------------

_POWERS = {  # QuantizationDebugger's direct-compare metrics: (float value, quantized value, scale, zero point)
    "signal_power": lambda f, q, scale, zero: float(np.mean(np.square(f, dtype=np.float64))),
    "noise_power": lambda f, q, scale, zero: float(np.mean(np.square(f - (q.astype(np.float64) - zero) * scale))),
}


def tflite_layer_errors(savedmodel_path, signature: str, mode: Mode, calibration: Calibration,
                        batches: int = DIAGNOSIS_BATCHES, debugger=None) -> list[LayerError]:
    """The per-layer table of `to_tflite(savedmodel_path, signature, mode, calibration)` (`int8` or `int8-io`),
    quantized as export quantizes it, measured on the first `batches` calibration batches. `debugger` is the
    calibrated `QuantizationDebugger` an `int8` file was quantized with (`tflite.converted` returns it), so
    that the model is not converted and calibrated again; without it one is made here."""
    import tensorflow as tf

    if mode not in (Mode.INT8, Mode.INT8_IO):
        raise BadInputError(f"the per-layer diagnosis is for full-integer modes ({Mode.INT8}, {Mode.INT8_IO}), not {mode}")
    rows = [{name: np.asarray(value, np.float32) for name, value in row.items()} for _, row in zip(range(batches), calibration())]
    debug_options = tf.lite.experimental.QuantizationDebugOptions
    with quiet():
        if debugger is None:
            converter = new_converter(savedmodel_path, signature, mode, calibration)
            if mode == Mode.INT8:
                debugger = float_head_debugger(converter)
            else:  # integer from end to end, as the converter writes int8-io
                debugger = tf.lite.experimental.QuantizationDebugger(converter=converter)
                debugger.options = debug_options(fully_quantize=True)
        debug_model = debugger.get_debug_quantized_model()
        quantized, reference = _Run(debug_model, signature, rows), _Run(debugger.calibrated_model, signature, rows)
        # A second debugger over the same debug model, whose interpreter keeps every tensor for the direct compare.
        local = tf.lite.experimental.QuantizationDebugger(
            quant_debug_model_content=debug_model,
            debug_dataset=lambda: [quantized.feed(row) for row in rows],
            debug_options=debug_options(layer_direct_compare_metrics=_POWERS),
        )
        local.run()
        dump = io.StringIO()
        local.layer_statistics_dump(dump)
    table = []
    for row in csv.DictReader(io.StringIO(dump.getvalue())):
        index = int(row["tensor_idx"])  # the quantized tensor (its `tensor_name` column loses a trailing digit)
        twin = reference.twin(quantized.names[index], quantized.values[index].shape)
        name = quantized.outputs.get(index) or (twin and reference.outputs.get(twin)) or short_name(
            reference.names[twin] if twin is not None else quantized.names[index])
        table.append(LayerError(
            op=row["op_name"], tensor=name, local_sqnr_db=sqnr_db(float(row["signal_power"]), float(row["noise_power"])),
            accumulated_sqnr_db=None if twin is None else _sqnr(reference.values[twin], quantized.values[index]),
            scale=float(row["scale"]), zero_point=int(row["zero_point"]),
        ))
    reference_outputs = {name: index for index, name in reference.outputs.items()}
    for index, name in quantized.outputs.items():
        if quantized.floating(index) and quantized.producers[index] != "DEQUANTIZE":  # computed by the float head
            table.append(LayerError(op=quantized.producers[index], tensor=name, local_sqnr_db=None,
                                    accumulated_sqnr_db=_sqnr(reference.values[reference_outputs[name]],
                                                              quantized.values[index])))
    return table


def _sqnr(reference: np.ndarray, values: np.ndarray) -> float:
    return sqnr_db(float(np.mean(np.square(reference))), float(np.mean(np.square(values - reference))))


class _Run:
    """One model run on the rows through LiteRT's reference kernels, every tensor an op writes kept
    (dequantized, rows stacked); XNNPACK would keep only its partitions' outputs."""

    def __init__(self, model: bytes, signature: str, rows: list[dict[str, np.ndarray]]):
        from ai_edge_litert.interpreter import Interpreter, OpResolverType

        interpreter = Interpreter(model_content=model, experimental_preserve_all_tensors=True,
                                  experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
        runner = interpreter.get_signature_runner(signature)
        inputs = runner.get_input_details()
        by_index = {d["index"]: name for name, d in inputs.items()}
        self._inputs = [(by_index[d["index"]], d) for d in interpreter.get_input_details()]
        self.outputs = {d["index"]: name for name, d in runner.get_output_details().items()}
        self.producers = {t: op["op_name"] for op in interpreter._get_ops_details() for t in op["outputs"]}
        self.details = {d["index"]: d for d in interpreter.get_tensor_details()
                        if d["index"] in self.producers and d["dtype"] in (np.float32, np.int8)}
        self.names = {index: d["name"] for index, d in self.details.items()}
        values: dict[int, list[np.ndarray]] = {index: [] for index in self.details}
        for row in rows:
            runner(**{name: _as_input(row[name], inputs[name]) for name in inputs})
            for index, d in self.details.items():
                values[index].append(_dequantized(interpreter.get_tensor(index), d))
        self.values = {index: np.stack(parts) for index, parts in values.items()}
        self._by_name = {d["name"]: index for index, d in self.details.items()}

    def feed(self, row: dict[str, np.ndarray]) -> list[np.ndarray]:
        """A row as the debugger feeds it: in input-tensor order, int8 inputs quantized here (the debugger
        quantizes them itself only when the zero point is not 0)."""
        return [_as_input(row[name], detail) for name, detail in self._inputs]

    def floating(self, index: int) -> bool:
        return self.details[index]["dtype"] == np.float32

    def twin(self, name: str, shape) -> int | None:
        """The index of this (float) run's tensor for a quantized one: the quantizer names it like the float
        tensor, at times with a numeric suffix (when a float twin in the debug model took the name)."""
        for cut in range(3):
            if cut and not name[-cut:].isdigit():
                break
            index = self._by_name.get(name[: len(name) - cut])
            if index is not None and self.values[index].shape == shape:
                return index
        return None


def _as_input(value: np.ndarray, detail: dict) -> np.ndarray:
    """A float input row as the model takes it (quantized for an int8 input)."""
    if detail["dtype"] != np.int8:
        return np.asarray(value, np.float32)
    scale, zero = detail["quantization"]
    return quantize(value, {"scale": scale, "zero_point": zero}, np.int8)


def _dequantized(value: np.ndarray, detail: dict) -> np.ndarray:
    if detail["dtype"] != np.int8:
        return np.array(value, np.float64)
    scale, zero = detail["quantization"]
    return (value.astype(np.float64) - zero) * scale


# -- ONNX -----------------------------------------------------------------------------------------------


def onnx_layer_errors(float_onnx_path, int8_onnx_path, calibration: Calibration | Iterable[Mapping[str, np.ndarray]],
                      batches: int = DIAGNOSIS_BATCHES) -> list[LayerError]:
    """The per-layer table of a QDQ int8 ONNX file against the float32 file it was quantized from, measured on
    the first `batches` calibration batches (dicts of graph input name -> array)."""
    import onnx
    from onnxruntime.quantization import qdq_loss_debug as debug

    from vae_edge.export.onnx_int8 import iter_feeds

    rows = [{name: np.asarray(value, np.float32) for name, value in row.items()}
            for _, row in zip(range(batches), iter_feeds(calibration))]
    with tempfile.TemporaryDirectory(prefix="vae-edge-diagnosis-") as scratch:
        activations = {}
        for key, path in (("float", float_onnx_path), ("int8", int8_onnx_path)):
            augmented = str(Path(scratch) / f"{key}.onnx")
            with quiet():
                debug.modify_model_output_intermediate_tensors(str(path), augmented)
                activations[key] = debug.collect_activations(augmented, rows)
    model = onnx.load(str(int8_onnx_path))
    producers = {output: node for node in model.graph.node for output in node.output}
    constants = {tensor.name: onnx.numpy_helper.to_array(tensor) for tensor in model.graph.initializer}
    outputs = {tensor.name for tensor in model.graph.output}
    matches = debug.create_activation_matching(activations["int8"], activations["float"])
    sqnr = debug.compute_signal_to_quantization_noice_ratio  # as debug.compute_activation_error, which fails on
    table = []  # a tensor the float graph lacks
    for node in model.graph.node:  # graph order
        if node.op_type == "QuantizeLinear" and node.input[0] in matches:  # an activation (weights are stored quantized)
            name, match = node.input[0], matches[node.input[0]]
            zero_point = _constant(constants, node.input, 2, int)
            before = match["pre_qdq"]
            if zero_point is not None and zero_point == np.iinfo(constants[node.input[2]].dtype).min:
                before = [np.maximum(value, 0.0) for value in before]  # a range from 0: the Relu the quantizer folded in
            table.append(LayerError(
                op=_onnx_op(producers, name), tensor=name, local_sqnr_db=min(MAX_SQNR_DB, sqnr(before, match["post_qdq"])),
                accumulated_sqnr_db=min(MAX_SQNR_DB, sqnr(match["float"], match["post_qdq"])) if match.get("float") else None,
                scale=_constant(constants, node.input, 1, float), zero_point=zero_point,
            ))
        for name in set(node.output) & outputs:  # a float head's outputs
            if name in activations["float"] and name in activations["int8"]:
                table.append(LayerError(op=node.op_type, tensor=name, local_sqnr_db=None, accumulated_sqnr_db=min(
                    MAX_SQNR_DB, sqnr(activations["float"][name], activations["int8"][name]))))
    return table


def _constant(constants: dict, inputs, position: int, kind):
    """A QuantizeLinear's scale (1) or zero point (2) when it is a stored scalar."""
    if len(inputs) <= position or inputs[position] not in constants or constants[inputs[position]].size != 1:
        return None
    return kind(constants[inputs[position]].item())


def _onnx_op(producers: dict, tensor: str) -> str:
    node = producers.get(tensor)
    return node.op_type if node is not None else "input"
