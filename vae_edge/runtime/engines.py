"""Inference engines behind one small interface: float arrays in, float arrays out, by name.

`LiteRTEngine` runs a `.tflite` signature with ai-edge-litert, `OnnxEngine` an `.onnx`
model with onnxruntime. LiteRT int8-io models get their inputs quantized and outputs
dequantized with the model's own parameters (ONNX QDQ models take floats). Both accept any
batch size (run in chunks of at most `CHUNK` rows, so a huge batch cannot exhaust memory)
and are safe to call from many threads.
Neither imports TensorFlow.
"""

import threading
from pathlib import Path

import numpy as np

from vae_edge.errors import BadInputError, first_line

CHUNK = 256  # rows per engine call: large enough to be fast, small enough to bound the arena


def tensor_spec(name: str, shape, dtype, quantization=None) -> dict:
    """The manifest's description of one input or output."""
    return {
        "name": name,
        "shape": [int(d) if d is not None and int(d) >= 0 else -1 for d in shape],
        "dtype": np.dtype(dtype).name,
        "quantization": quantization,
    }


class Engine:
    """A loaded graph. `inputs`/`outputs` are manifest-style tensor specs."""

    inputs: list[dict]
    outputs: list[dict]

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Float arrays by input name in, float32 arrays by output name out, any batch size."""
        arrays = {spec["name"]: np.ascontiguousarray(feeds[spec["name"]], dtype=np.float32) for spec in self.inputs}
        rows = len(next(iter(arrays.values())))
        if rows <= CHUNK:
            return self._run(arrays)
        parts = [self._run({k: v[start : start + CHUNK] for k, v in arrays.items()}) for start in range(0, rows, CHUNK)]
        return {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}

    def _run(self, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        raise NotImplementedError


def _quantize(x: np.ndarray, quantization: dict, dtype) -> np.ndarray:
    info = np.iinfo(dtype)
    q = np.round(x / quantization["scale"] + quantization["zero_point"])
    return np.clip(q, info.min, info.max).astype(dtype)


def _dequantize(q: np.ndarray, quantization: dict) -> np.ndarray:
    return ((q.astype(np.float32) - quantization["zero_point"]) * quantization["scale"]).astype(np.float32)


class LiteRTEngine(Engine):
    """One signature of a `.tflite` model in the LiteRT interpreter (XNNPACK on by default)."""

    def __init__(self, path, signature: str | None = None, num_threads: int | None = None):
        from ai_edge_litert.interpreter import Interpreter

        try:
            self.interpreter = Interpreter(model_path=str(path), num_threads=num_threads)
        except (ValueError, RuntimeError) as error:
            raise BadInputError(f"{path}: LiteRT cannot load this file ({first_line(error)})") from None
        signatures = list(self.interpreter.get_signature_list())
        if not signatures:
            raise BadInputError(f"{path}: has no signatures; export it with `vae-edge export`")
        self.signature = signature or signatures[0]
        if self.signature not in signatures:
            raise BadInputError(f"{path}: no signature {self.signature!r}; it has {signatures}")
        self.runner = self.interpreter.get_signature_runner(self.signature)
        self._lock = threading.Lock()  # an interpreter must not run two calls at once
        self.inputs = [self._spec(n, d) for n, d in self.runner.get_input_details().items()]
        self.outputs = [self._spec(n, d) for n, d in self.runner.get_output_details().items()]

    @staticmethod
    def _spec(name: str, details: dict) -> dict:
        scale, zero_point = details["quantization"]
        quantization = {"scale": float(scale), "zero_point": int(zero_point)} if scale else None
        return tensor_spec(name, details["shape_signature"], details["dtype"], quantization)

    def ops(self) -> list[str]:
        """The operator names the model uses, sorted."""
        return sorted({op["op_name"] for op in self.interpreter._get_ops_details()})

    def _run(self, arrays):
        prepared = {}
        for spec in self.inputs:
            x = arrays[spec["name"]]
            prepared[spec["name"]] = _quantize(x, spec["quantization"], spec["dtype"]) if spec["dtype"] != "float32" else x
        with self._lock:
            results = self.runner(**prepared)
        outputs = {}
        for spec in self.outputs:
            value = results[spec["name"]]
            outputs[spec["name"]] = _dequantize(value, spec["quantization"]) if spec["dtype"] != "float32" else np.array(value)
        return outputs


ONNX_DTYPES = {"tensor(float)": "float32", "tensor(int8)": "int8", "tensor(uint8)": "uint8"}


class OnnxEngine(Engine):
    """An `.onnx` model in onnxruntime on the CPU (its `run` is thread-safe)."""

    def __init__(self, path, signature: str | None = None, num_threads: int | None = None):
        import onnxruntime as ort

        ort.set_default_logger_severity(3)  # tf2onnx's nearest Resize triggers a harmless deprecation warning
        options = ort.SessionOptions()
        options.log_severity_level = 3
        # Idle worker threads must not spin: a VAE runs an encoder and a decoder session back to
        # back, and spinning threads of one starved the other (end to end took 3x the sum of both).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if num_threads:
            options.intra_op_num_threads = num_threads
            options.inter_op_num_threads = 1  # the graphs are sequential: no parallel branches to run
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as error:  # onnxruntime raises its own exception types for bad files
            raise BadInputError(f"{path}: onnxruntime cannot load this file ({first_line(error)})") from None
        self.path = Path(path)
        self.inputs = [self._spec(t) for t in self.session.get_inputs()]
        self.outputs = [self._spec(t) for t in self.session.get_outputs()]

    def ops(self) -> list[str]:
        """The operator types the graph uses, sorted (needs the `onnx` package)."""
        import onnx

        return sorted({node.op_type for node in onnx.load(str(self.path)).graph.node})

    @staticmethod
    def _spec(tensor) -> dict:
        dtype = ONNX_DTYPES.get(tensor.type)
        if dtype is None:
            raise BadInputError(f"tensor {tensor.name!r} has type {tensor.type}; vae-edge runs float32 and int8 models only")
        shape = [d if isinstance(d, int) else -1 for d in tensor.shape]
        return tensor_spec(tensor.name, shape, dtype)

    def _run(self, arrays):
        values = self.session.run([spec["name"] for spec in self.outputs], arrays)
        return {spec["name"]: value for spec, value in zip(self.outputs, values)}


def open_engine(path, signature: str | None = None, num_threads: int | None = None) -> Engine:
    """Open a `.tflite` or `.onnx` file with the engine that runs it."""
    suffix = Path(path).suffix
    if suffix == ".tflite":
        return LiteRTEngine(path, signature, num_threads)
    if suffix == ".onnx":
        return OnnxEngine(path, signature, num_threads)
    raise BadInputError(f"{path}: expected a .tflite or .onnx file")
