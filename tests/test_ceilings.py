"""Per-precision compute ceilings: the tiny models compute what they claim, and the result's structure."""

import importlib.util

import numpy as np
import pytest

from vae_edge.bench import ceilings
from vae_edge.registry import Mode

ort = pytest.importorskip("onnxruntime")
SIZE = 64  # the models' correctness does not depend on size; keeps the tests fast


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("VAE_EDGE_CACHE", str(tmp_path))


def _weights() -> np.ndarray:
    return ceilings._weights(SIZE)


def test_onnx_float32_model_is_the_matrix_product():
    session = ort.InferenceSession(str(ceilings.onnx_matmul(Mode.FLOAT32, SIZE)), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).random((SIZE, SIZE), dtype=np.float32)
    np.testing.assert_allclose(session.run(None, {"x": x})[0], x @ _weights(), rtol=1e-4, atol=1e-4)


def test_onnx_int8_model_is_an_exact_uint8_by_int8_product():
    path = ceilings.onnx_matmul(Mode.INT8, SIZE)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).integers(0, 64, (SIZE, SIZE), dtype=np.uint8)  # small: no VPMADDUBSW saturation
    weights = np.clip(np.round(_weights() / np.abs(_weights()).max() * 127), -127, 127).astype(np.int32)
    np.testing.assert_array_equal(session.run(None, {"x": x})[0], x.astype(np.int32) @ weights)


def test_models_are_cached(tmp_path):
    path = ceilings.onnx_matmul(Mode.FLOAT32, SIZE)
    written = path.stat().st_mtime_ns
    assert ceilings.onnx_matmul(Mode.FLOAT32, SIZE) == path
    assert path.stat().st_mtime_ns == written
    assert path.parent == tmp_path / "ceilings"


def test_without_tflite_models_litert_is_skipped_with_a_note(monkeypatch):
    monkeypatch.setattr(ceilings, "tflite_matmul", lambda precision, size: None)
    result = ceilings.measure_ceilings(1, size=SIZE, min_seconds=0.01)
    for precision in ("float32", "int8"):
        assert result[precision]["onnxruntime"] > 0
        assert result[precision]["litert"] is None
    assert len(result["notes"]) == 2 and all("no TensorFlow" in note for note in result["notes"])
    assert result["threads"] == 1 and f"{SIZE}x{SIZE}x{SIZE}" in result["method"]


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("tensorflow") is None or importlib.util.find_spec("ai_edge_litert") is None,
                    reason="needs TensorFlow to convert and LiteRT to run")
def test_every_engine_and_precision_is_measured():
    result = ceilings.measure_ceilings(2, size=SIZE, min_seconds=0.01)
    assert {engine: value > 0 for precision in ("float32", "int8") for engine, value in result[precision].items()} == {
        "onnxruntime": True, "litert": True}
    assert result["notes"] == []
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(ceilings.tflite_matmul(Mode.INT8, SIZE)))
    assert [d["dtype"] for d in interpreter.get_input_details()] == [np.int8]  # int8 in: no float quantize step timed
    assert {d["op_name"] for d in interpreter._get_ops_details()} == {"FULLY_CONNECTED"}
