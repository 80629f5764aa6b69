"""App-ready files: standard ONNX, embedded metadata, ORT format, mobile coverage, the bundle README,
the metadata-only example and the portable prior they all rely on."""

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from vae_edge.errors import BadInputError, ExportError, MissingFileError
from vae_edge.export.bundle_readme import render_bundle_readme
from vae_edge.export.metadata import describe_file, embed_file, embed_onnx, metadata_fields, read_metadata
from vae_edge.export.onnx_graph import TF_HALF_PIXEL_FOR_NN, reference_evaluator, standardize_resize
from vae_edge.prior import SEED_LIMIT, prior_latents, reference_vectors
from vae_edge.signatures import RECONSTRUCTION_LOGITS

EXAMPLE = Path(__file__).parents[1] / "examples" / "app_from_metadata.py"
CPU = ["CPUExecutionProvider"]


# --- the portable prior -------------------------------------------------------------------

def test_prior_reference_vectors_are_pinned():
    expected = {
        0: [0.571730852, 0.663602293, -0.583298624, -0.0812835842],
        1: [0.161722898, 0.457028806, 0.951792896, -1.40757966],
        42: [-0.0567593649, -0.45195052, 0.419306725, 0.00714955619],
        4294967295: [1.66709554, -1.09997332, 0.969895184, 1.44251013],
    }
    got = reference_vectors(4)
    assert sorted(got) == sorted(expected)
    for seed, values in expected.items():
        np.testing.assert_allclose(got[seed], values, rtol=0, atol=1e-8)


def test_prior_draws_are_standard_normal():
    z = prior_latents(20000, 16, seed=7).astype(np.float64)
    assert abs(z.mean()) < 0.01  # standard error 1/sqrt(320000) = 0.0018
    assert abs(z.std() - 1.0) < 0.01
    assert abs(np.corrcoef(z[:, 0], z[:, 1])[0, 1]) < 0.03  # neighbouring dimensions independent


@pytest.mark.parametrize("seed", [-1, SEED_LIMIT, 2**40, 1.5, True])
def test_prior_refuses_seeds_outside_the_range(seed):
    with pytest.raises(ValueError, match=r"\[0, 2\^32\)"):
        prior_latents(1, 4, seed=seed)


# --- standard Resize ----------------------------------------------------------------------

def tf_nearest_indices(in_size: int, out_size: int) -> np.ndarray:
    """TensorFlow's ResizeNearestNeighbor(half_pixel_centers=True) source index, in its float32 arithmetic."""
    scale = np.float32(in_size) / np.float32(out_size)
    index = np.floor((np.arange(out_size, dtype=np.float32) + np.float32(0.5)) * scale).astype(np.int64)
    return np.minimum(index, in_size - 1)


def tf2onnx_resize(in_hw, out_hw, batch=None) -> onnx.ModelProto:
    """A Resize node as tf2onnx writes it: NCHW input, float32 scales, tf_half_pixel_for_nn."""
    (h, w), (out_h, out_w) = in_hw, out_hw
    scales = np.array([1, 1, np.float32(out_h) / h, np.float32(out_w) / w], np.float32)
    node = helper.make_node("Resize", ["x", "roi", "scales"], ["y"], name="resize", mode="nearest",
                            coordinate_transformation_mode=TF_HALF_PIXEL_FOR_NN, nearest_mode="floor")
    graph = helper.make_graph(
        [node], "resize", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch or "batch", 2, h, w])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch or "batch", 2, out_h, out_w])],
        [numpy_helper.from_array(np.zeros(0, np.float32), "roi"), numpy_helper.from_array(scales, "scales")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


PAIRS = [((7, 7), (14, 14)), ((14, 14), (28, 28)), ((4, 4), (7, 7)), ((8, 8), (15, 16)), ((15, 16), (29, 31)),
         ((5, 3), (10, 6)), ((10, 6), (20, 12)), ((3, 2), (5, 3)), ((13, 11), (25, 21)), ((1, 1), (3, 5))]


@pytest.mark.parametrize(("in_hw", "out_hw"), PAIRS)
@pytest.mark.parametrize("batch", [None, 1])
def test_standardized_resize_picks_tensorflows_pixels(in_hw, out_hw, batch):
    model = standardize_resize(tf2onnx_resize(in_hw, out_hw, batch))
    onnx.checker.check_model(model, full_check=True)
    (node,) = [n for n in model.graph.node if n.op_type == "Resize"]
    modes = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    whole = all(o % i == 0 for i, o in zip(in_hw, out_hw))
    assert modes["coordinate_transformation_mode"] == (b"asymmetric" if whole else b"half_pixel")
    x = np.arange(2 * 2 * in_hw[0] * in_hw[1], dtype=np.float32).reshape(2, 2, *in_hw)[: batch or 2]
    expected = x[:, :, tf_nearest_indices(in_hw[0], out_hw[0])][:, :, :, tf_nearest_indices(in_hw[1], out_hw[1])]
    on_ort = ort.InferenceSession(model.SerializeToString(), providers=CPU).run(None, {"x": x})[0]
    on_reference = reference_evaluator(model).run(None, {"x": x})[0]
    np.testing.assert_array_equal(on_ort, expected)
    np.testing.assert_array_equal(on_reference, expected)


def test_unknown_size_for_a_fractional_resize_is_one_clear_error():
    model = tf2onnx_resize((4, 4), (7, 7))
    model.graph.input[0].type.tensor_type.shape.dim[2].dim_param = "height"
    with pytest.raises(ExportError, match="known height and width"):
        standardize_resize(model)


# --- metadata without an export -----------------------------------------------------------

FACTS = {"variant": "micro", "input_shape": [28, 28, 1], "latent_dim": 8}
INT8_Z = {"name": "z", "shape": [1, 8], "dtype": "int8", "quantization": {"scale": 0.028, "zero_point": 24}}
RECON = {"name": "reconstruction", "shape": [1, 28, 28, 1], "dtype": "float32", "quantization": None}


def test_metadata_fields_describe_the_graph():
    fields = metadata_fields(FACTS, "decoder", "int8-io", [INT8_Z], [RECON])
    assert (fields["graph"], fields["mode"], fields["signature"]) == ("decoder", "int8-io", "decode")
    assert (fields["image_shape"], fields["latent_size"], fields["class_names"]) == ([28, 28, 1], 8, None)
    (z,) = fields["inputs"]
    assert z["quantization"] == {"scale": 0.028, "zero_point": 24} and "zero_point 24" in z["quantized_as"]
    assert "N(0, I) of width 8" in z["meaning"]
    assert fields["outputs"][0]["range"] == [0.0, 1.0]
    assert fields["prior"]["reference_vectors"]["42"] == reference_vectors()[42]
    json.dumps(fields)  # JSON-serializable
    with pytest.raises(BadInputError, match="latent_dim"):
        metadata_fields({"input_shape": [28, 28, 1]}, "decoder", "float32", [INT8_Z], [RECON])


def test_onnx_metadata_round_trip_and_bad_files(tmp_path):
    fields = metadata_fields(FACTS, "decoder", "float32", [INT8_Z], [RECON])
    path = tmp_path / "resize.onnx"
    onnx.save(embed_onnx(embed_onnx(tf2onnx_resize((7, 7), (14, 14)), {"old": 1}), fields), str(path))
    assert read_metadata(path) == fields  # replaced, not appended
    assert [p.key for p in onnx.load(str(path)).metadata_props] == ["vae_edge"]
    assert "decoder (float32), signature decode" in describe_file(path)
    bare = tmp_path / "bare.onnx"
    onnx.save(tf2onnx_resize((7, 7), (14, 14)), str(bare))
    with pytest.raises(BadInputError, match="no vae_edge metadata"):
        read_metadata(bare)
    with pytest.raises(MissingFileError):
        read_metadata(tmp_path / "missing.tflite")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(BadInputError, match="not a .tflite or .onnx"):
        read_metadata(tmp_path / "notes.txt")
    (tmp_path / "fake.tflite").write_bytes(b"0123456789")
    with pytest.raises(BadInputError, match="TFL3"):
        read_metadata(tmp_path / "fake.tflite")


def test_bundle_readme_shows_this_bundles_decoder():
    decoder = {"format": "tflite", "graph": "decoder", "signature": "decode", "size_bytes": 82000}
    manifest = {
        "schema_version": 1, "model": FACTS, "tools": {"vae-edge": "0.1.0"},
        "artifacts": [
            {**decoder, "path": "tflite/decoder.float32.tflite", "mode": "float32", "batch": None,
             "inputs": [{**INT8_Z, "dtype": "float32", "shape": [-1, 8], "quantization": None}], "outputs": [RECON]},
            {**decoder, "path": "tflite/decoder.float32.b1.tflite", "mode": "float32", "batch": 1,
             "inputs": [{**INT8_Z, "dtype": "float32", "quantization": None}], "outputs": [RECON]},
            {**decoder, "path": "tflite/decoder.int8-io.b1.tflite", "mode": "int8-io", "batch": 1, "inputs": [INT8_Z],
             "outputs": [{**RECON, "dtype": "int8", "quantization": {"scale": 0.00390625, "zero_point": -128}}]},
            {**decoder, "format": "onnx", "path": "onnx/decoder.float32.b1.onnx", "mode": "float32", "batch": 1,
             "inputs": [{**INT8_Z, "dtype": "float32", "quantization": None}], "outputs": [RECON]},
        ],
    }
    tflite_only = render_bundle_readme({**manifest, "artifacts": manifest["artifacts"][:3]})
    assert "ORTSession" not in tflite_only and "Interpreter(FileInputStream" in tflite_only  # only the formats it has
    text = render_bundle_readme(manifest)
    assert 'Interpreter(FileInputStream' in text and '"decoder.float32.b1.tflite"' in text
    assert 'runSignature(mapOf("z" to z), mapOf("reconstruction" to reconstruction), "decode")' in text
    assert "scale 0.028 and zero_point 24" in text and "0.00390625" in text  # the int8-io decoder's parameters
    assert 'signatureRunner(with: "decode")' in text and "ORTSession" in text
    assert "| 42 | -0.0567593649," in text and "0x7FEB352D" in text
    assert "$" not in text.replace("$0", "")  # every placeholder filled (Swift closures use $0)


# --- on the exported bundle ---------------------------------------------------------------

@pytest.fixture(scope="module")
def onnx_files(bundle_dir):
    return sorted((bundle_dir / "onnx").glob("*.onnx"))


@pytest.fixture(scope="module")
def feeds(digits, trained_model):
    return {"image": digits.test[:4], "z": prior_latents(4, trained_model.latent_dim, seed=3)}


def feed_for(session, feeds):
    (tensor,) = session.get_inputs()
    rows = tensor.shape[0] if isinstance(tensor.shape[0], int) else 4
    return {tensor.name: feeds[tensor.name][:rows]}


@pytest.mark.slow
def test_every_exported_onnx_is_standard_and_agrees_with_the_reference_evaluator(onnx_files, feeds, trained_model):
    assert len(onnx_files) >= 8  # encoder and decoder, float32 and int8, dynamic and batch 1
    for path in onnx_files:
        model = onnx.load(str(path))
        onnx.checker.check_model(model, full_check=True)
        assert TF_HALF_PIXEL_FOR_NN.encode() not in model.SerializeToString(), path.name
        session = ort.InferenceSession(str(path), providers=CPU)
        feed = feed_for(session, feeds)
        names = [o.name for o in session.get_outputs()]
        on_ort = dict(zip(names, session.run(names, feed)))
        on_reference = dict(zip(names, reference_evaluator(model).run(names, feed)))
        # float32: the same arithmetic. int8: onnxruntime fuses QDQ into integer kernels, the evaluator
        # dequantizes and computes in float; they agreed exactly on the tiny model, a rounding tie
        # may still move one output by one quantization step (1/256 for pixels)
        bound = 1e-4 if ".float32." in path.name else 0.01
        for name in names:
            assert np.abs(on_ort[name] - on_reference[name]).max() <= bound, f"{path.name} {name}"
        if ".float32." in path.name:
            network = trained_model.decoder if "decoder" in path.name else trained_model.encoder
            keras_out = network.predict(next(iter(feed.values())), verbose=0)
            keras_out = keras_out if isinstance(keras_out, list) else [keras_out]
            by_name = dict(zip(("z_mean", "z_log_var") if "encoder" in path.name else ("reconstruction",), keras_out))
            for name, expected in by_name.items():
                assert np.abs(on_ort[name] - expected).max() <= 1e-4, f"{path.name} {name} against Keras"


@pytest.mark.slow
def test_tflite_metadata_keeps_the_model_runnable(bundle_dir, tmp_path, feeds):
    from ai_edge_litert.interpreter import Interpreter

    manifest = json.loads((bundle_dir / "manifest.json").read_text())
    artifact = next(a for a in manifest["artifacts"] if a["path"] == "tflite/decoder.int8-io.b1.tflite")
    path = shutil.copyfile(bundle_dir / artifact["path"], tmp_path / "decoder.tflite")
    fields = metadata_fields(manifest["model"], artifact["graph"], artifact["mode"], artifact["inputs"], artifact["outputs"])
    embed_file(path, fields)
    embed_file(path, fields)  # embedding twice replaces the entry
    assert read_metadata(path) == json.loads(json.dumps(fields))
    assert fields["inputs"][0]["quantization"] == artifact["inputs"][0]["quantization"]

    def decode(file):
        interpreter = Interpreter(model_path=str(file))
        assert list(interpreter.get_signature_list()) == ["decode"]
        return interpreter.get_signature_runner("decode")(z=np.full((1, 8), 7, np.int8))[RECONSTRUCTION_LOGITS]

    np.testing.assert_array_equal(decode(path), decode(bundle_dir / artifact["path"]))
    assert path.stat().st_size - (bundle_dir / artifact["path"]).stat().st_size < 8192


@pytest.mark.slow
@pytest.mark.parametrize("name", ["decoder.float32.onnx", "decoder.int8.b1.onnx", "encoder.int8.onnx"])
def test_ort_format_runs_like_the_onnx_file(bundle_dir, tmp_path, feeds, name):
    from vae_edge.export.ort import convert_to_ort

    ort_path, config = convert_to_ort(bundle_dir / "onnx" / name, tmp_path / name.replace(".onnx", ".ort"))
    assert ort_path.stat().st_size > 0 and config.name.endswith(".required_operators.config")
    operators = config.read_text()
    assert "ai.onnx;" in operators and name in operators and "/tmp" not in operators
    original = ort.InferenceSession(str(bundle_dir / "onnx" / name), providers=CPU)
    converted = ort.InferenceSession(str(ort_path), providers=CPU)
    feed = feed_for(original, feeds)
    for a, b in zip(original.run(None, feed), converted.run(None, feed)):
        assert np.abs(a - b).max() <= 1e-6


@pytest.mark.slow
def test_fixed_shape_onnx_files_run_whole_on_mobile_accelerators(bundle_dir):
    from vae_edge.export.mobile import onnx_mobile_coverage

    fixed = onnx_mobile_coverage(bundle_dir / "onnx" / "decoder.float32.b1.onnx")
    assert fixed["resize_modes"] == []  # upsampling is DepthToSpace, which every mobile provider takes
    for provider in ("nnapi", "coreml_mlprogram", "coreml_neuralnetwork"):
        assert fixed[provider]["percent"] == 100.0 and fixed[provider]["partitions"] == 1, provider
    dynamic = onnx_mobile_coverage(bundle_dir / "onnx" / "decoder.float32.onnx")
    assert dynamic["nnapi"]["supported_nodes"] == 0 and dynamic["nnapi"]["nodes_with_dynamic_input"] > 0
    int8 = onnx_mobile_coverage(bundle_dir / "onnx" / "decoder.int8.b1.onnx")
    assert int8["nnapi"]["percent"] == 100.0
    assert "ai.onnx:DequantizeLinear" in int8["coreml_mlprogram"]["unsupported_ops"]  # CoreML EP: no QDQ


@pytest.mark.slow
def test_tflite_coverage_of_the_fixed_shape_files(bundle_dir):
    from vae_edge.export.mobile import tflite_coverage

    encoder = tflite_coverage(bundle_dir / "tflite" / "encoder.float32.b1.tflite")
    assert encoder["gpu"]["percent"] == 100.0 and encoder["gpu"]["compatible"]
    assert encoder["xnnpack"]["percent"] == 100.0 and encoder["xnnpack"]["partitions"] == 1
    decoder = tflite_coverage(bundle_dir / "tflite" / "decoder.int8.b1.tflite")
    assert decoder["gpu"]["percent"] == 100.0
    # upsampling is DEPTH_TO_SPACE, not the nearest resize XNNPACK lacks: the whole decoder is one delegate partition
    assert decoder["xnnpack"]["percent"] == 100.0 and decoder["xnnpack"]["partitions"] == 1
    dynamic = tflite_coverage(bundle_dir / "tflite" / "decoder.float32.tflite")
    assert "SHAPE" in dynamic["xnnpack"]["not_delegated_ops"]  # the dynamic batch's Reshape stays on the CPU


@pytest.mark.slow
@pytest.mark.parametrize("name", ["tflite/decoder.int8-io.b1.tflite", "onnx/decoder.float32.onnx"])
def test_example_app_needs_only_the_file(bundle_dir, tmp_path, name):
    manifest = json.loads((bundle_dir / "manifest.json").read_text())
    artifact = next(a for a in manifest["artifacts"] if a["path"] == name)
    lone = shutil.copyfile(bundle_dir / name, tmp_path / Path(name).name)
    embed_file(lone, metadata_fields(manifest["model"], artifact["graph"], artifact["mode"], artifact["inputs"],
                                     artifact["outputs"]))
    out = tmp_path / "grid.png"
    result = subprocess.run([sys.executable, str(EXAMPLE), str(lone), "-n", "5", "--seed", "42", "-o", str(out)],
                            capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    from PIL import Image

    assert Image.open(out).size == (3 * 28, 2 * 28)  # 5 samples in a 3 x 2 grid
    spec = importlib.util.spec_from_file_location("app_from_metadata", EXAMPLE)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    fields = example.read_fields(lone)
    images = example.decode(lone, fields, example.prior(5, fields["latent_size"], 42))
    from vae_edge.runtime import EdgeVAE

    runtime = EdgeVAE.load(bundle_dir, backend=artifact["format"], mode=artifact["mode"]).sample(5, seed=42)
    np.testing.assert_allclose(images, runtime, atol=1e-5)  # the same pixels as the runtime (int8-io: after the sigmoid)
    bare = tmp_path / "bare.onnx"
    onnx.save(tf2onnx_resize((7, 7), (14, 14)), str(bare))
    refused = subprocess.run([sys.executable, str(EXAMPLE), str(bare), "-o", str(out)],
                             capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert refused.returncode != 0 and "no vae_edge metadata" in refused.stderr


def test_example_prior_port_matches_the_package():
    spec = importlib.util.spec_from_file_location("app_from_metadata", EXAMPLE)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    np.testing.assert_allclose(example.prior(3, 5, 2**32 - 1), prior_latents(3, 5, seed=2**32 - 1), rtol=0, atol=1e-6)
