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


# --- the graph onnxruntime runs: transpose-free integer kernels --------------------------------

def _node(op, inputs, outputs, **attributes):
    from onnx import helper

    return helper.make_node(op, inputs, outputs, name=outputs[0], **attributes)


def _weights(rng, name, shape):
    from onnx import numpy_helper

    fan_in = np.prod(shape[1:]) if len(shape) == 4 else shape[0]
    return numpy_helper.from_array((rng.standard_normal(shape) / np.sqrt(fan_in)).astype(np.float32), name)


def _save(path, nodes, inputs, output, initializers, output_shape=None) -> None:
    from onnx import TensorProto, helper

    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in inputs],
                              [helper.make_tensor_value_info(output, TensorProto.FLOAT, output_shape)], initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))


def _upsample(kind, x, out, initializers):
    """A 2x nearest upsampling as tf2onnx writes NearestUpsampling (four copies + DepthToSpace) or as a Resize."""
    if kind == "repeat":
        return [_node("Concat", [x] * 4, [f"{out}_copies"], axis=1), _node("DepthToSpace", [f"{out}_copies"], [out], blocksize=2)]
    from onnx import numpy_helper

    initializers.append(numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), f"{out}_scales"))
    return [_node("Resize", [x, "", f"{out}_scales"], [out], mode="nearest", coordinate_transformation_mode="asymmetric",
                  nearest_mode="floor")]


def _decoder_graph(path, rng, kind="repeat", dense="matmul") -> None:
    """tf2onnx's shape of our decoder: Dense (MatMul + Add, or one Gemm for a fixed batch) + Relu, unflatten to
    NHWC and transpose to NCHW, a Conv, then twice a 2x nearest upsampling and a Conv, a Sigmoid, back to NHWC:
    z (batch, 8) -> (batch, 16, 16, 1)."""
    from onnx import numpy_helper

    w = _weights(rng, "w", (8, 256))
    if dense == "gemm":  # with the weights stored transposed, as Gemm(transB=1) reads them
        w = numpy_helper.from_array(numpy_helper.to_array(w).T.copy(), "w")
    initializers = [w, numpy_helper.from_array(rng.standard_normal(256).astype(np.float32), "b"),
                    numpy_helper.from_array(np.array([-1, 4, 4, 16], np.int64), "unflat"),
                    numpy_helper.from_array(np.array([-1, 16, 16, 1], np.int64), "pixels"),
                    _weights(rng, "k0", (16, 16, 3, 3)), _weights(rng, "k1", (8, 16, 3, 3)), _weights(rng, "k2", (1, 8, 3, 3))]
    same = {"pads": [1, 1, 1, 1], "kernel_shape": [3, 3]}
    product = [_node("MatMul", ["z", "w"], ["dense"]), _node("Add", ["dense", "b"], ["biased"])] if dense == "matmul" else \
        [_node("Gemm", ["z", "w", "b"], ["biased"], transB=1)]
    nodes = [*product, _node("Relu", ["biased"], ["act"]),
             _node("Reshape", ["act", "unflat"], ["nhwc"]), _node("Transpose", ["nhwc"], ["x0"], perm=[0, 3, 1, 2]),
             _node("Conv", ["x0", "k0"], ["c0"], **same), _node("Relu", ["c0"], ["r0"]),
             *_upsample(kind, "r0", "u1", initializers), _node("Conv", ["u1", "k1"], ["c1"], **same),
             _node("Relu", ["c1"], ["r1"]),
             *_upsample(kind, "r1", "u2", initializers), _node("Conv", ["u2", "k2"], ["c2"], **same),
             _node("Sigmoid", ["c2"], ["p"]), _node("Reshape", ["p", "pixels"], ["reconstruction"])]
    _save(path, nodes, [("z", ["batch", 8])], "reconstruction", initializers, ["batch", 16, 16, 1])


def _optimized(path, tmp_path):
    """The graph onnxruntime runs (ORT_ENABLE_ALL, the runtime's level)."""
    options = ort.SessionOptions()
    options.log_severity_level = 3  # not the warning that an NCHWc graph is saved for this CPU only
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.optimized_model_filepath = str(tmp_path / f"{path.stem}.optimized.onnx")
    ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return onnx.load(options.optimized_model_filepath).graph


def _optimized_ops(path, tmp_path) -> dict[str, int]:
    """Operator counts of the graph onnxruntime runs, across domains."""
    from collections import Counter

    return Counter(node.op_type for node in _optimized(path, tmp_path).node)


def _integer_shuffles(path, tmp_path) -> list[str]:
    """DepthToSpace nodes that move integers (not after a DequantizeLinear, i.e. not in the float head)."""
    graph = _optimized(path, tmp_path)
    producers = {output: node.op_type for node in graph.node for output in node.output}
    shuffles = [node for node in graph.node if node.op_type == "DepthToSpace"]
    return [node.name for node in shuffles if producers.get(node.input[0]) != "DequantizeLinear"]


@pytest.mark.parametrize(("kind", "dense"), [("repeat", "matmul"), ("resize", "gemm")])
def test_rewrites_keep_the_decoders_numbers(tmp_path, kind, dense):
    from vae_edge.export.onnx_graph import projections_as_convolutions, subpixel_convolutions

    path = tmp_path / "decoder.onnx"
    _decoder_graph(path, np.random.default_rng(3), kind, dense)
    model = onnx.load(str(path))
    assert projections_as_convolutions(model) == 1 and subpixel_convolutions(model) == 2
    onnx.checker.check_model(model, full_check=True)
    ops = [node.op_type for node in model.graph.node]
    assert not {"MatMul", "Gemm", "Concat", "Resize"} & set(ops) and ops[-3:] == ["DepthToSpace", "Sigmoid", "Reshape"]
    onnx.save(model, str(tmp_path / "rewritten.onnx"))
    z = {"z": np.random.default_rng(4).standard_normal((5, 8)).astype(np.float32)}
    expected = _run(path, z)
    assert expected.shape == (5, 16, 16, 1)
    np.testing.assert_allclose(_run(tmp_path / "rewritten.onnx", z), expected, atol=1e-6)


@pytest.mark.parametrize(("size", "bias", "kind"), [(1, True, "repeat"), (3, False, "resize"), (5, True, "repeat"),
                                                    (7, True, "resize")])
def test_subpixel_convolution_is_exact_for_odd_kernels(tmp_path, size, bias, kind):
    from onnx import numpy_helper

    from vae_edge.export.onnx_graph import subpixel_convolutions

    rng = np.random.default_rng(size)
    initializers = [_weights(rng, "k", (6, 3, size, size))]
    if bias:
        initializers.append(numpy_helper.from_array(rng.standard_normal(6).astype(np.float32), "bias"))
    conv = _node("Conv", ["up", "k", *(["bias"] if bias else [])], ["out"], pads=[size // 2] * 4, kernel_shape=[size, size])
    _save(tmp_path / "up.onnx", [*_upsample(kind, "x", "up", initializers), conv], [("x", ["batch", 3, 5, 7])], "out",
          initializers)
    model = onnx.load(str(tmp_path / "up.onnx"))
    assert subpixel_convolutions(model) == 1
    onnx.save(model, str(tmp_path / "subpixel.onnx"))
    x = {"x": rng.standard_normal((2, 3, 5, 7)).astype(np.float32)}
    np.testing.assert_allclose(_run(tmp_path / "subpixel.onnx", x), _run(tmp_path / "up.onnx", x), atol=1e-5)


def test_rewrites_leave_other_graphs_alone(tmp_path):
    """Not nearest upsampling (DepthToSpace CRD of copies, copies of two tensors) or not a plain Conv (stride 2): unchanged."""
    from vae_edge.export.onnx_graph import projections_as_convolutions, repeats_as_resize, subpixel_convolutions

    rng = np.random.default_rng(5)
    same = {"pads": [1, 1, 1, 1], "kernel_shape": [3, 3]}
    nodes = [_node("Concat", ["x"] * 4, ["copies"], axis=1), _node("DepthToSpace", ["copies"], ["crd"], blocksize=2, mode="CRD"),
             _node("Conv", ["crd", "k"], ["a"], **same),
             _node("Concat", ["x", "x", "y", "y"], ["mixed"], axis=1), _node("DepthToSpace", ["mixed"], ["dcr"], blocksize=2),
             _node("Conv", ["dcr", "k"], ["b"], **same),
             _node("Concat", ["x"] * 4, ["copies2"], axis=1), _node("DepthToSpace", ["copies2"], ["up"], blocksize=2),
             _node("Conv", ["up", "k"], ["c"], strides=[2, 2], **same),
             _node("Add", ["a", "b"], ["ab"]), _node("Add", ["ab", "c_up"], ["out"]),
             _node("Resize", ["c", "", "twice"], ["c_up"], mode="nearest")]
    from onnx import numpy_helper

    initializers = [_weights(rng, "k", (2, 2, 3, 3)), numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "twice")]
    _save(tmp_path / "other.onnx", nodes, [("x", [1, 2, 4, 4]), ("y", [1, 2, 4, 4])], "out", initializers)
    model = onnx.load(str(tmp_path / "other.onnx"))
    before = model.SerializeToString()
    assert subpixel_convolutions(model) == 0 and projections_as_convolutions(model) == 0
    assert model.SerializeToString() == before
    assert repeats_as_resize(model) == 1  # only the copies feeding the stride-2 Conv are an upsampling
    onnx.save(model, str(tmp_path / "resized.onnx"))
    feed = {"x": rng.standard_normal((1, 2, 4, 4)).astype(np.float32), "y": rng.standard_normal((1, 2, 4, 4)).astype(np.float32)}
    np.testing.assert_allclose(_run(tmp_path / "resized.onnx", feed), _run(tmp_path / "other.onnx", feed), atol=1e-6)


def test_int8_decoder_runs_transpose_free_on_integer_kernels(tmp_path):
    """What made the int8 decoder slow: tf2onnx's upsampling kept two uint8 Transposes and a DepthToSpace each
    (QLinearConcat too), and the dense layer ran as QGemm with per-column zero points. Now every Conv and the
    projection are QLinearConv, the only Transposes left are a pixel shuffle and the output's layout, and the
    one DepthToSpace shuffles the last Conv's output in the float head."""
    path = tmp_path / "decoder.float32.onnx"
    rng = np.random.default_rng(6)
    _decoder_graph(path, rng)
    z = rng.standard_normal((64, 8)).astype(np.float32)
    out = quantize(path, tmp_path / "decoder.int8.onnx", [{"z": z[i:i + 1]} for i in range(32)], choose_settings("vnni"))
    ops = _optimized_ops(out, tmp_path)
    assert ops["QLinearConv"] == 4  # the projection and the three convolutions
    assert not {"Concat", "QLinearConcat", "Resize", "QGemm", "Gemm", "MatMul", "Conv", "FusedConv"} & set(ops)
    assert ops["Transpose"] <= 2 and ops["DepthToSpace"] == 1 and _integer_shuffles(out, tmp_path) == []
    assert ops["QuantizeLinear"] == ops["DequantizeLinear"] == 1  # into integers once, out once, for the float head
    expected = _run(path, {"z": z[32:]})
    assert np.abs(_run(out, {"z": z[32:]}) - expected).max() < 0.05


def test_conditional_upsampling_quantizes_with_a_dynamic_batch(tmp_path):
    """The conditional decoder adds a per-class bias between the upsampling and the Conv, so the upsampling
    becomes a Resize: its batch, a new symbol for onnxruntime's shape inference, must merge with the label's."""
    from onnx import numpy_helper

    rng = np.random.default_rng(8)
    initializers = [_weights(rng, "wl", (3, 4)), _weights(rng, "k", (4, 4, 3, 3)),
                    numpy_helper.from_array(np.array([-1, 1, 1, 4], np.int64), "map")]
    nodes = [_node("MatMul", ["label", "wl"], ["lb"]), _node("Reshape", ["lb", "map"], ["lb_nhwc"]),
             _node("Transpose", ["lb_nhwc"], ["bias"], perm=[0, 3, 1, 2]), *_upsample("repeat", "x", "up", initializers),
             _node("Add", ["up", "bias"], ["biased"]),
             _node("Conv", ["biased", "k"], ["out"], pads=[1, 1, 1, 1], kernel_shape=[3, 3])]
    path = tmp_path / "conditional.onnx"
    _save(path, nodes, [("x", ["batch", 4, 4, 4]), ("label", ["batch", 3])], "out", initializers)
    feeds = [{"x": rng.random((1, 4, 4, 4), dtype=np.float32), "label": np.eye(3, dtype=np.float32)[[i % 3]]} for i in range(12)]
    out = quantize(path, tmp_path / "conditional.int8.onnx", feeds, choose_settings("vnni"))
    assert "QLinearConcat" not in _optimized_ops(out, tmp_path) and _integer_shuffles(out, tmp_path) == []
    assert np.abs(_run(out, feeds[0]) - _run(path, feeds[0])).max() < 0.1 * np.ptp(_run(path, feeds[0]))


def test_grey_stem_stays_in_float(tmp_path):
    """A Conv reading a 1-channel image runs faster in float (onnxruntime's kernel for few input channels)."""
    from onnx import numpy_helper

    from vae_edge.export.onnx_int8 import stem_nodes

    rng = np.random.default_rng(7)
    initializers = [numpy_helper.from_array(np.array([-1, 1, 8, 8], np.int64), "nchw"), _weights(rng, "k0", (8, 1, 3, 3)),
                    _weights(rng, "k1", (8, 8, 3, 3))]
    same = {"pads": [1, 1, 1, 1], "kernel_shape": [3, 3]}
    nodes = [_node("Reshape", ["image", "nchw"], ["x"]), _node("Conv", ["x", "k0"], ["c0"], **same),
             _node("Relu", ["c0"], ["r0"]), _node("Conv", ["r0", "k1"], ["c1"], **same),
             _node("Relu", ["c1"], ["out"])]
    path = tmp_path / "encoder.onnx"
    _save(path, nodes, [("image", ["batch", 8, 8, 1])], "out", initializers)
    assert stem_nodes(onnx.load(str(path))) == ["c0", "r0"]
    images = rng.random((16, 8, 8, 1), dtype=np.float32)
    out = quantize(path, tmp_path / "encoder.int8.onnx", [{"image": images[i:i + 1]} for i in range(16)], choose_settings("vnni"))
    ops = _optimized_ops(out, tmp_path)
    assert ops["QLinearConv"] == 1 and ops["Conv"] + ops["FusedConv"] == 1  # the stem in float, the next Conv in int8


@pytest.mark.slow
def test_exported_int8_graphs_run_on_integer_kernels(bundle_dir, tmp_path):
    """The real tf2onnx graphs of the tiny model (dynamic batch, and batch 1 where tf2onnx writes a Gemm), as
    onnxruntime optimizes them."""
    for suffix in ("int8.onnx", "int8.b1.onnx"):
        decoder = _optimized_ops(bundle_dir / "onnx" / f"decoder.{suffix}", tmp_path)
        assert not {"Concat", "QLinearConcat", "Resize", "QGemm", "Gemm", "Conv", "FusedConv"} & set(decoder)
        assert decoder["Transpose"] <= 2 and decoder["QLinearConv"] >= 5, suffix
        assert _integer_shuffles(bundle_dir / "onnx" / f"decoder.{suffix}", tmp_path) == []
        encoder = _optimized_ops(bundle_dir / "onnx" / f"encoder.{suffix}", tmp_path)
        assert encoder["Conv"] + encoder["FusedConv"] == 1 and encoder["QLinearConv"] >= 4  # the grey stem alone in float
        assert encoder["Transpose"] <= 2, suffix
