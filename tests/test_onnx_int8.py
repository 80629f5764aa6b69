"""ONNX int8 settings: the choice per CPU class, recordable settings, and the quantizer on tiny graphs."""

import json

import numpy as np
import pytest

from vae_edge.cpu import CpuClass, cpu_class, cpu_features, features_of
from vae_edge.errors import BadInputError, MissingFileError
from vae_edge.export.onnx_int8 import CANDIDATES, head_nodes, quantize
from vae_edge.quantization import CHOICES, IntType, QuantFormat, Settings, choose_settings

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")


@pytest.mark.parametrize(("flags", "expected"), [
    ({"avx2", "avx512f", "avx512_vnni"}, CpuClass.VNNI),
    ({"avx2", "avx_vnni"}, CpuClass.VNNI),
    ({"avx2", "fma", "avx512f"}, CpuClass.AVX512),
    ({"avx", "avx2", "fma"}, CpuClass.AVX2),
    ({"fp", "asimd", "asimddp"}, CpuClass.ARM64_DOTPROD),
    ({"fp", "asimd"}, CpuClass.ARM64),
    (set(), CpuClass.OTHER),
])
def test_cpu_class_from_flags(flags, expected):
    assert cpu_class(features_of(flags)) == expected


def test_cpu_features_reads_x86_and_arm_cpuinfo(tmp_path):
    x86 = tmp_path / "x86"
    x86.write_text("processor\t: 0\nflags\t\t: fpu sse avx avx2 fma avx512f avx512_vnni\n\nprocessor\t: 1\nflags\t\t: fpu\n")
    arm = tmp_path / "arm"
    arm.write_text("processor\t: 0\nFeatures\t: fp asimd asimddp\n")
    assert cpu_features(x86) == {"avx2", "avx512f", "vnni"}
    assert cpu_features(arm) == {"asimd", "asimddp"}
    assert cpu_features(tmp_path / "absent") == set()


def test_choices_follow_onnxruntime_kernels():
    vnni, avx2 = choose_settings("vnni"), choose_settings("avx2")
    # VPDPBUSD (VNNI) is uint8 x int8 and cannot saturate; VPMADDUBSW (AVX2) needs 7-bit weights.
    assert (vnni.activations, vnni.weights, vnni.reduce_range) == (IntType.UINT8, IntType.INT8, False)
    assert (avx2.activations, avx2.weights, avx2.reduce_range) == (IntType.UINT8, IntType.INT8, True)
    assert choose_settings("avx512").reduce_range
    assert choose_settings("other").activations == IntType.INT8
    assert choose_settings() == CHOICES[cpu_class(cpu_features())]


def test_unknown_target_is_one_line_error():
    with pytest.raises(BadInputError, match=r"unknown CPU target 'sse2'.*vnni, avx512, avx2, arm64-dotprod, arm64, other"):
        choose_settings("sse2")


def test_every_candidate_is_recordable_and_named_uniquely():
    for name, settings in CANDIDATES.items():
        recorded = json.loads(json.dumps(settings.as_dict()))
        assert Settings.from_dict(recorded) == settings
        assert settings.name == name
    assert len({s.name for s in CANDIDATES.values()}) == len(CANDIDATES) > 16
    assert set(CHOICES.values()) <= set(CANDIDATES.values())


@pytest.mark.parametrize("data", [{"colour": "red"}, {"format": "qlinear"}])
def test_bad_recorded_settings_are_refused(data):
    with pytest.raises(BadInputError, match="ONNX int8 setting"):
        Settings.from_dict(data)


def _tiny_graph(path, rng) -> None:
    """Two named inputs, each through a 3x3 Conv + Relu, added, then a 1x1 Conv: enough for every kernel path."""
    from onnx import TensorProto, helper, numpy_helper

    def weight(name, shape):
        return numpy_helper.from_array((rng.standard_normal(shape) / np.sqrt(np.prod(shape[1:]))).astype(np.float32), name)

    nodes = [
        helper.make_node("Conv", ["a", "wa"], ["ca"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["ca"], ["ra"]),
        helper.make_node("Conv", ["b", "wb"], ["cb"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["cb"], ["rb"]),
        helper.make_node("Add", ["ra", "rb"], ["sum"]),
        helper.make_node("Conv", ["sum", "wo"], ["out"]),
    ]
    inputs = [helper.make_tensor_value_info(name, TensorProto.FLOAT, ["batch", 4, 8, 8]) for name in ("a", "b")]
    graph = helper.make_graph(nodes, "tiny", inputs, [helper.make_tensor_value_info("out", TensorProto.FLOAT, None)],
                              [weight("wa", (16, 4, 3, 3)), weight("wb", (16, 4, 3, 3)), weight("wo", (8, 16, 1, 1))])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    rng = np.random.default_rng(0)
    path = tmp_path_factory.mktemp("onnx") / "tiny.float32.onnx"
    _tiny_graph(path, rng)
    calibration = [{"a": rng.random((8, 4, 8, 8), dtype=np.float32), "b": rng.random((8, 4, 8, 8), dtype=np.float32)}
                   for _ in range(4)]
    heldout = {"a": rng.random((16, 4, 8, 8), dtype=np.float32), "b": rng.random((16, 4, 8, 8), dtype=np.float32)}
    return path, calibration, heldout


def _run(path, feed):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feed)[0]


def _error(path, out, heldout) -> float:
    """Max abs error of the int8 graph as a fraction of the float output's range."""
    expected = _run(path, heldout)
    return float(np.max(np.abs(_run(out, heldout) - expected)) / np.ptp(expected))


@pytest.mark.parametrize("target", list(CpuClass))
def test_chosen_settings_write_the_chosen_types(tiny, tmp_path, target):
    path, calibration, heldout = tiny
    settings = choose_settings(target)
    out = quantize(path, tmp_path / "tiny.int8.onnx", lambda: iter(calibration), settings)
    model = onnx.load(str(out))
    assert sum(node.op_type == "QuantizeLinear" for node in model.graph.node) >= 2  # both inputs quantized
    weight_types = {t.data_type for t in model.graph.initializer if t.name.endswith("_quantized")}
    assert weight_types == {onnx.TensorProto.INT8 if settings.weights == IntType.INT8 else onnx.TensorProto.UINT8}
    assert _run(out, heldout).shape == (16, 8, 8, 8)
    assert list(tmp_path.iterdir()) == [out]  # no scratch files left behind


def test_this_machines_choice_is_accurate(tiny, tmp_path):
    path, calibration, heldout = tiny
    out = quantize(path, tmp_path / "tiny.int8.onnx", calibration, choose_settings())
    assert _error(path, out, heldout) < 0.05  # a few 8-bit steps of the output range (saturation gives 0.08 here)


@pytest.mark.skipif(cpu_class(cpu_features()) not in (CpuClass.AVX2, CpuClass.AVX512),
                    reason="VPMADDUBSW saturation is x86 without VNNI")
def test_full_range_weights_saturate_without_vnni(tiny, tmp_path):
    """Why AVX2 gets reduce_range: the VNNI choice (8-bit weights) overflows int16 pair sums here."""
    path, calibration, heldout = tiny
    full = quantize(path, tmp_path / "full.onnx", calibration, choose_settings("vnni"))
    reduced = quantize(path, tmp_path / "reduced.onnx", calibration, choose_settings("avx2"))
    assert _error(path, full, heldout) > 2 * _error(path, reduced, heldout)


def test_qoperator_format_writes_integer_operators(tiny, tmp_path):
    path, calibration, heldout = tiny
    settings = Settings(format=QuantFormat.QOPERATOR, reduce_range=True)
    out = quantize(path, tmp_path / "tiny.int8.onnx", calibration, settings)
    assert "QLinearConv" in {node.op_type for node in onnx.load(str(out)).graph.node}
    assert _error(path, out, heldout) < 0.05


def test_feeds_must_name_the_graph_inputs(tiny, tmp_path):
    path, calibration, _ = tiny
    with pytest.raises(BadInputError, match=r"has inputs \['a'\] but the graph takes \['a', 'b'\]"):
        quantize(path, tmp_path / "x.onnx", [{"a": calibration[0]["a"]}])
    with pytest.raises(BadInputError, match="no calibration batches"):
        quantize(path, tmp_path / "x.onnx", [])
    with pytest.raises(MissingFileError, match="export the float32 ONNX graph first"):
        quantize(tmp_path / "absent.onnx", tmp_path / "x.onnx", calibration)
    assert not (tmp_path / "x.onnx").exists()


def _sigmoid_graph(path) -> None:
    """A Conv whose logits sit near -12, then a Sigmoid and a Reshape: like the decoder's dim background pixels."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(1)
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["logits"], pads=[1, 1, 1, 1], name="conv"),
             helper.make_node("Sigmoid", ["logits"], ["p"], name="sigmoid"),
             helper.make_node("Reshape", ["p", "shape"], ["out"], name="to_pixels")]
    initializers = [numpy_helper.from_array(rng.standard_normal((1, 4, 3, 3)).astype(np.float32) * 0.3, "w"),
                    numpy_helper.from_array(np.array([-12.0], np.float32), "b"),
                    numpy_helper.from_array(np.array([-1, 64], np.int64), "shape")]
    graph = helper.make_graph(nodes, "head", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4, 8, 8])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, None)], initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))


def test_float_head_keeps_small_probabilities(tmp_path):
    path = tmp_path / "head.onnx"
    _sigmoid_graph(path)
    assert head_nodes(onnx.load(str(path))) == ["to_pixels", "sigmoid"]
    rng = np.random.default_rng(2)
    calibration = [{"x": rng.random((8, 4, 8, 8), dtype=np.float32) * 20 - 10} for _ in range(2)]
    feed = {"x": rng.random((4, 4, 8, 8), dtype=np.float32)}
    float_head = quantize(path, tmp_path / "float_head.onnx", calibration, choose_settings("avx2"))
    quantized_head = quantize(path, tmp_path / "quantized_head.onnx", calibration, Settings(reduce_range=True, float_head=False))
    assert np.all(_run(float_head, feed) > 0)  # every probability survives, so the log-likelihood stays finite
    assert np.mean(_run(quantized_head, feed) == 0) > 0.5  # 1/255 steps round them to exactly 0
