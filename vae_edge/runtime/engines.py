"""Inference engines behind one small interface: float arrays in, float arrays out, by name.

`LiteRTEngine` runs a `.tflite` signature with ai-edge-litert, `OnnxEngine` an `.onnx`
model with onnxruntime, `SavedModelEngine` a SavedModel signature with TensorFlow (for
verification and benchmarks only; the runtime never opens it). LiteRT int8-io models get
their inputs quantized and outputs dequantized with the model's own parameters (ONNX QDQ
models take floats). Every engine accepts any batch size: a dynamic-batch graph runs in
chunks of at most `CHUNK` rows (so a huge batch cannot exhaust memory), a fixed-shape graph
in chunks of its own batch, the last one padded. Engines are safe to call from many threads.
Only `SavedModelEngine` imports TensorFlow, and only when it is opened.
"""

import importlib.util
import threading
from pathlib import Path

import numpy as np

from vae_edge.bundle import Artifact, Bundle
from vae_edge.errors import BadInputError, first_line
from vae_edge.logs import native_stderr_silenced
from vae_edge.registry import ENGINES, FORMATS, Engine, Format, format_of_suffix, install_hint
from vae_edge.signatures import RECONSTRUCTION, RECONSTRUCTION_LOGITS

CHUNK = 256  # rows per engine call: large enough to be fast, small enough to bound the arena


def tensor_spec(name: str, shape, dtype, quantization=None) -> dict:
    """The manifest's description of one input or output (-1 for a dynamic dimension)."""
    return {
        "name": name,
        "shape": [int(d) if d is not None and int(d) >= 0 else -1 for d in shape],
        "dtype": np.dtype(dtype).name,
        "quantization": quantization,
    }


class InferenceEngine:
    """A loaded graph. `inputs`/`outputs` are manifest-style tensor specs."""

    inputs: list[dict]
    outputs: list[dict]

    @property
    def batch(self) -> int | None:
        """The fixed batch size of a fixed-shape graph, None for a dynamic batch."""
        first = self.inputs[0]["shape"][0]
        return None if first == -1 else first

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Float arrays by input name in, float32 arrays by output name out, any batch size."""
        missing = [spec["name"] for spec in self.inputs if spec["name"] not in feeds]
        if missing:
            raise BadInputError(f"missing inputs {missing}; this graph takes {[s['name'] for s in self.inputs]}")
        arrays = {spec["name"]: np.ascontiguousarray(feeds[spec["name"]], dtype=np.float32) for spec in self.inputs}
        rows = len(next(iter(arrays.values())))
        step = self.batch or CHUNK
        if rows == step or (self.batch is None and rows <= step):
            return with_probabilities(self._run(arrays))
        parts = []
        for start in range(0, rows, step):
            chunk = {name: value[start : start + step] for name, value in arrays.items()}
            short = step - len(next(iter(chunk.values())))
            if self.batch and short:  # pad the last chunk of a fixed-shape graph, then drop the padding
                chunk = {name: np.concatenate([v, np.zeros((short, *v.shape[1:]), v.dtype)]) for name, v in chunk.items()}
            result = self._run(chunk)
            parts.append({name: value[: step - short] for name, value in result.items()} if self.batch else result)
        return with_probabilities({name: np.concatenate([part[name] for part in parts]) for name in parts[0]})

    def ops(self) -> list[str]:
        """The operator names the graph uses, sorted."""
        raise NotImplementedError

    def _run(self, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        raise NotImplementedError


def with_probabilities(outputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """`outputs`, with the reconstruction's probabilities beside its logits when a file returns logits
    (integer-output decoders: 256 levels of logits hold dim pixels that 256 levels of probability round to 0)."""
    if RECONSTRUCTION_LOGITS not in outputs:
        return outputs
    logits = outputs[RECONSTRUCTION_LOGITS].astype(np.float64)
    return {**outputs, RECONSTRUCTION: (0.5 * (1.0 + np.tanh(0.5 * logits))).astype(np.float32)}  # the sigmoid, stably


def quantize(x: np.ndarray, quantization: dict, dtype) -> np.ndarray:
    """float -> integer with a tensor's scale and zero point, clipped to the integer type."""
    info = np.iinfo(dtype)
    q = np.round(x / quantization["scale"] + quantization["zero_point"])
    return np.clip(q, info.min, info.max).astype(dtype)


def dequantize(q: np.ndarray, quantization: dict) -> np.ndarray:
    return ((q.astype(np.float32) - quantization["zero_point"]) * quantization["scale"]).astype(np.float32)


class LiteRTEngine(InferenceEngine):
    """One signature of a `.tflite` model in the LiteRT interpreter (XNNPACK on by default)."""

    def __init__(self, path, signature: str | None = None, num_threads: int | None = None):
        from ai_edge_litert.interpreter import Interpreter

        try:
            with native_stderr_silenced():  # "Created TensorFlow Lite XNNPACK delegate for CPU."
                self.interpreter = Interpreter(model_path=str(path), num_threads=num_threads)
                self.interpreter.allocate_tensors()
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
        return sorted({op["op_name"] for op in self.interpreter._get_ops_details()})

    def _run(self, arrays):
        prepared = {}
        for spec in self.inputs:
            x = arrays[spec["name"]]
            prepared[spec["name"]] = quantize(x, spec["quantization"], spec["dtype"]) if spec["dtype"] != "float32" else x
        with self._lock:
            results = self.runner(**prepared)
        outputs = {}
        for spec in self.outputs:
            value = results[spec["name"]]
            outputs[spec["name"]] = dequantize(value, spec["quantization"]) if spec["dtype"] != "float32" else np.array(value)
        return outputs


ORT_OPERATORS_CONFIG = ".required_operators.config"  # written beside each .ort file by onnxruntime's converter
ONNX_DTYPES = {"tensor(float)": "float32", "tensor(int8)": "int8", "tensor(uint8)": "uint8"}


class OnnxEngine(InferenceEngine):
    """An `.onnx` model in onnxruntime on the CPU (its `run` is thread-safe)."""

    def __init__(self, path, signature: str | None = None, num_threads: int | None = None):
        import onnxruntime as ort

        ort.set_default_logger_severity(3)
        options = ort.SessionOptions()
        options.log_severity_level = 3
        # The default, made explicit: int8 graphs are fast only once the layout optimizers of this level run their
        # QLinearConv channels-last (at ORT_ENABLE_EXTENDED the int8 decoder took 1.9x as long at batch 64).
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
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
        """The operator types the graph uses (needs the `onnx` package); of an ORT-format file, the
        operators its reduced-operator config beside it lists."""
        config = self.path.with_suffix(ORT_OPERATORS_CONFIG)
        if self.path.suffix == FORMATS[Format.ORT].suffix:
            lines = config.read_text().splitlines() if config.is_file() else []
            return sorted({op for line in lines if line and not line.startswith("#") for op in line.split(";")[-1].split(",")})
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


class SavedModelEngine(InferenceEngine):
    """One signature of a SavedModel (needs TensorFlow: verification and benchmarks only)."""

    def __init__(self, path, signature: str | None = None, num_threads: int | None = None):
        import tensorflow as tf

        signatures = tf.saved_model.load(str(path)).signatures
        self.function = signatures[signature or next(iter(signatures))]
        inputs = self.function.structured_input_signature[1]
        self.inputs = [tensor_spec(name, spec.shape, "float32") for name, spec in inputs.items()]
        self.outputs = [tensor_spec(name, spec.shape, "float32") for name, spec in self.function.structured_outputs.items()]

    def ops(self) -> list[str]:
        return sorted({op.type for op in self.function.graph.get_operations()})

    def _run(self, arrays):
        import tensorflow as tf

        results = self.function(**{name: tf.constant(value) for name, value in arrays.items()})
        return {name: value.numpy() for name, value in results.items()}


ENGINE_CLASSES: dict[Engine, type[InferenceEngine]] = {
    Engine.LITERT: LiteRTEngine, Engine.ONNXRUNTIME: OnnxEngine, Engine.TENSORFLOW: SavedModelEngine,
}


def installed(engine: Engine) -> bool:
    return importlib.util.find_spec(ENGINES[engine].module) is not None


def require(engine: Engine) -> None:
    """A one-line error naming the pip extra when the engine's library is not installed."""
    if not installed(engine):
        module = ENGINES[engine].module
        raise BadInputError(f"{engine} needs the {module} package; install it with {install_hint(module)}")


def format_of_path(path) -> Format:
    path = Path(path)
    fmt = Format.SAVEDMODEL if path.is_dir() else format_of_suffix(path.suffix)
    if fmt is None:
        suffixes = " or ".join(info.suffix for info in FORMATS.values() if info.suffix)
        raise BadInputError(f"{path}: expected a {suffixes} file or a SavedModel folder")
    return fmt


def open_engine(path, signature: str | None = None, num_threads: int | None = None) -> InferenceEngine:
    """Open a model file (or SavedModel folder) with the engine its format names."""
    engine = FORMATS[format_of_path(path)].engine
    require(engine)
    return ENGINE_CLASSES[engine](path, signature, num_threads)


def open_artifact(bundle: Bundle, artifact: Artifact, num_threads: int | None = None, check: bool = True) -> InferenceEngine:
    """A bundle's artifact in its engine; `check` compares it with the manifest's sha256 first."""
    return open_engine(bundle.path_of(artifact, check), artifact.signature, num_threads)
