"""Compute ceilings per precision, measured through the engines the artifacts run on.

A numpy matmul says what BLAS can do in float32; it says nothing about int8, nor about the
kernels onnxruntime (MLAS) and LiteRT (XNNPACK) actually have. So each ceiling here is one
large square matrix product built as a tiny model and run by the engine itself: float32, and
int8 the way the exported int8 graphs compute (onnxruntime: uint8 x int8 `MatMulInteger`, the
U8S8 kernel; LiteRT: a fully integer `FULLY_CONNECTED` with int8 input and output).

The ONNX models are written with `onnx.helper`; the .tflite ones need TensorFlow's converter
once, then come from a cache folder (`$VAE_EDGE_CACHE`, default `~/.cache/vae-edge/ceilings`),
so a device without TensorFlow measures LiteRT only if the cache was filled (say, by copying
it from the export machine); otherwise its LiteRT cells are None with a note saying why.
"""

import importlib.util
import os
import time
from pathlib import Path

import numpy as np

from vae_edge.fsutil import write_bytes
from vae_edge.registry import ENGINES, Engine, Mode
from vae_edge.runtime.engines import installed

SIZE = 512  # M = N = K: 268 MFLOP a product, a few ms per run on one core
MIN_SECONDS = 0.5  # per engine, precision and thread count
PRECISIONS = (Mode.FLOAT32, Mode.INT8)


def cache_dir() -> Path:
    """Where the tiny models are kept between runs."""
    return Path(os.environ.get("VAE_EDGE_CACHE", Path.home() / ".cache" / "vae-edge")) / "ceilings"


def method(size: int = SIZE) -> str:
    """One line for reports: what the ceiling numbers are."""
    return (f"fastest run of a {size}x{size}x{size} matrix product (2*{size}^3 ops) as a one-op model: onnxruntime MatMul "
            "(float32) and MatMulInteger uint8 x int8 (int8); LiteRT/XNNPACK FULLY_CONNECTED float32 and full int8 "
            "(int8 in and out); at the given intra-op thread count")


def _weights(size: int) -> np.ndarray:
    return (np.random.default_rng(0).standard_normal((size, size)) / np.sqrt(size)).astype(np.float32)


def onnx_matmul(precision: Mode, size: int = SIZE) -> Path:
    """A one-node ONNX model (x @ constant weights) for `precision`, cached."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    path = cache_dir() / f"matmul{size}.{precision}.onnx"
    if path.is_file():
        return path
    weights = _weights(size)
    if precision == Mode.INT8:
        weights = np.clip(np.round(weights / np.abs(weights).max() * 127), -127, 127).astype(np.int8)
        node, input_type, output_type = "MatMulInteger", TensorProto.UINT8, TensorProto.INT32
    else:
        node, input_type, output_type = "MatMul", TensorProto.FLOAT, TensorProto.FLOAT
    graph = helper.make_graph(
        [helper.make_node(node, ["x", "w"], ["y"])], f"matmul{size}",
        [helper.make_tensor_value_info("x", input_type, [size, size])],
        [helper.make_tensor_value_info("y", output_type, [size, size])],
        [numpy_helper.from_array(weights, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_bytes(path, model.SerializeToString())


def tflite_matmul(precision: Mode, size: int = SIZE) -> Path | None:
    """A one-op .tflite model (x @ constant weights) for `precision`, cached; None without TensorFlow or cache."""
    path = cache_dir() / f"matmul{size}.{precision}.tflite"
    if path.is_file():
        return path
    if importlib.util.find_spec("tensorflow") is None:
        return None
    import tensorflow as tf

    weights = tf.constant(_weights(size))

    @tf.function(input_signature=[tf.TensorSpec([size, size], tf.float32)])
    def matmul(x):
        return tf.matmul(x, weights)

    converter = tf.lite.TFLiteConverter.from_concrete_functions([matmul.get_concrete_function()], matmul)
    if precision == Mode.INT8:
        rng = np.random.default_rng(1)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([rng.standard_normal((size, size)).astype(np.float32)] for _ in range(4))
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = converter.inference_output_type = tf.int8
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_bytes(path, converter.convert())


def _fastest_seconds(run, min_seconds: float) -> float:
    run()  # warm: first-run packing and allocation
    best, start = float("inf"), time.perf_counter()
    while time.perf_counter() - start < min_seconds:
        t0 = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - t0)
    return best


def _input(precision: Mode, size: int, integer_type) -> np.ndarray:
    rng = np.random.default_rng(2)
    if precision == Mode.INT8:
        info = np.iinfo(integer_type)
        return rng.integers(info.min, info.max + 1, (size, size), dtype=integer_type)
    return rng.random((size, size), dtype=np.float32)


def _onnxruntime_runner(path: Path, precision: Mode, size: int, threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    x = _input(precision, size, np.uint8)
    return lambda: session.run(None, {"x": x})


def _litert_runner(path: Path, precision: Mode, size: int, threads: int):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path), num_threads=threads)
    interpreter.allocate_tensors()
    index = interpreter.get_input_details()[0]["index"]
    x = _input(precision, size, np.int8)

    def run():
        interpreter.set_tensor(index, x)
        interpreter.invoke()

    return run


def measure_ceilings(threads: int, size: int = SIZE, min_seconds: float = MIN_SECONDS) -> dict:
    """GFLOP/s (float32) and GOP/s (int8) of each engine at `threads` intra-op threads.

    Returns {"float32": {"onnxruntime": g, "litert": g}, "int8": {...}, "threads", "size",
    "method", "notes"}; a cell is None (with a note) when its engine or model is unavailable.
    """
    ops = 2.0 * size**3
    result: dict = {str(p): {} for p in PRECISIONS}
    notes = []
    for precision in PRECISIONS:
        for engine, build, runner in ((Engine.ONNXRUNTIME, onnx_matmul, _onnxruntime_runner),
                                      (Engine.LITERT, tflite_matmul, _litert_runner)):
            path = build(precision, size) if installed(engine) else None
            if path is None:
                reason = f"{ENGINES[engine].module} is not installed" if not installed(engine) else (
                    f"no cached {precision} .tflite in {cache_dir()} and no TensorFlow to make one")
                notes.append(f"{engine} {precision}: skipped, {reason}")
                result[str(precision)][str(engine)] = None
                continue
            seconds = _fastest_seconds(runner(path, precision, size, threads), min_seconds)
            result[str(precision)][str(engine)] = ops / seconds / 1e9
    return {**result, "threads": threads, "size": size, "method": method(size), "notes": notes}
