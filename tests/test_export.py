"""Every artifact loaded in the engine a user would use and compared with the Keras model."""

import json

import keras
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import tensorflow as tf
from ai_edge_litert.interpreter import Interpreter
from click.testing import CliRunner

from vae_edge.bundle import Bundle, sha256_of
from vae_edge.cli import main
from vae_edge.elbo import prior_latents
from vae_edge.errors import BadInputError, VerificationFailed
from vae_edge.export import export_bundle, plan
from vae_edge.export import tflite as tflite_export
from vae_edge.model.loading import float32_vae
from vae_edge.model import VAE

# Integer modes cannot match element-wise; these bounds are the measured errors of the tiny
# test model (about 0.02-0.05 on latents and reconstructions) with a 2-3x margin.
MAX_ABS = {"float32": 1e-4, "float16": 1e-2, "dynamic": 0.15, "int8": 0.15, "int8-io": 0.15}


@pytest.fixture(scope="session")
def inputs(digits, trained_model):
    images = digits.test[:16]
    z = prior_latents(16, trained_model.latent_dim, seed=1)
    return {
        "image": images,
        "z": z,
        "encoder": dict(zip(("z_mean", "z_log_var"), trained_model.encode(images))),
        "decoder": {"reconstruction": trained_model.decode(z)},
    }


def run_litert(path, signature, feed):
    runner = Interpreter(model_path=str(path)).get_signature_runner(signature)
    (name, details), = runner.get_input_details().items()
    x = feed[name]
    if details["dtype"] == np.int8:
        scale, zero_point = details["quantization"]
        x = np.clip(np.round(x / scale + zero_point), -128, 127).astype(np.int8)
    outputs = runner(**{name: x})
    result = {}
    for key, value in outputs.items():
        details = runner.get_output_details()[key]
        if details["dtype"] == np.int8:
            scale, zero_point = details["quantization"]
            value = (value.astype(np.float32) - zero_point) * scale
        result[key] = value
    return result


def test_every_artifact_matches_keras_in_its_own_engine(bundle_dir, inputs):
    bundle = Bundle(bundle_dir)
    assert len(bundle.artifacts) == 2 * (1 + 5 + 2)
    savedmodel = tf.saved_model.load(str(bundle_dir / "savedmodel"))
    for artifact in bundle.artifacts:
        path = bundle.path_of(artifact)
        feed = {"image": inputs["image"]} if artifact.graph == "encoder" else {"z": inputs["z"]}
        if artifact.format == "savedmodel":
            outputs = {k: v.numpy() for k, v in savedmodel.signatures[artifact.signature](**feed).items()}
        elif artifact.format == "tflite":
            outputs = run_litert(path, artifact.signature, feed)
        else:
            session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
            names = [o.name for o in session.get_outputs()]
            outputs = dict(zip(names, session.run(names, feed)))
        for name, expected in inputs[artifact.graph].items():
            error = np.abs(outputs[name] - expected).max()
            assert error <= MAX_ABS[artifact.mode], f"{artifact.key} {name}: max abs error {error}"


def test_savedmodel_runs_batchnorm_in_inference_mode(bundle_dir, trained_model, inputs):
    decode = tf.saved_model.load(str(bundle_dir / "savedmodel")).signatures["decode"]
    exported = decode(z=tf.constant(inputs["z"]))["reconstruction"].numpy()
    weights = trained_model.get_weights()
    training_mode = keras.ops.convert_to_numpy(trained_model.decoder(inputs["z"], training=True))
    trained_model.set_weights(weights)  # a training-mode call moves the BN statistics
    assert np.abs(exported - inputs["decoder"]["reconstruction"]).max() < 1e-5
    assert np.abs(exported - training_mode).max() > 1e-3  # so the check above can tell them apart


def test_manifest_describes_every_artifact(bundle_dir):
    manifest = json.loads((bundle_dir / "manifest.json").read_text())
    assert manifest["schema_version"] == 1
    assert manifest["model"]["preprocessing"]["pixel_range"] == [0.0, 1.0]
    assert {"tensorflow-cpu", "keras", "tf2onnx", "onnxruntime", "ai-edge-litert"} <= set(manifest["tools"])
    assert manifest["anomaly"]["threshold"] > 0
    for entry in manifest["artifacts"]:
        assert sha256_of(bundle_dir / entry["path"]) == entry["sha256"]
        assert entry["size_bytes"] > 0
        names = [t["name"] for t in entry["inputs"] + entry["outputs"]]
        expected = ["image", "z_log_var", "z_mean"] if entry["graph"] == "encoder" else ["reconstruction", "z"]
        assert sorted(names) == expected, entry["path"]
        for tensor in entry["inputs"] + entry["outputs"]:
            assert tensor["shape"][0] in (-1, 1)
            if entry["mode"] == "int8-io":
                assert tensor["dtype"] == "int8" and tensor["quantization"]["scale"] > 0


def test_tflite_is_batch_one_and_resizable(bundle_dir, inputs):
    interpreter = Interpreter(model_path=str(bundle_dir / "tflite/decoder.float32.tflite"))
    detail = interpreter.get_input_details()[0]
    assert detail["shape"][0] == 1 and detail["shape_signature"][0] == -1
    out = run_litert(bundle_dir / "tflite/decoder.float32.tflite", "decode", {"z": inputs["z"][:5]})
    assert out["reconstruction"].shape[0] == 5


def test_onnx_has_dynamic_batch_and_passes_the_checker(bundle_dir):
    model = onnx.load(str(bundle_dir / "onnx/encoder.float32.onnx"))
    onnx.checker.check_model(model, full_check=True)
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    assert model.opset_import[0].version == 18
    quantized = onnx.load(str(bundle_dir / "onnx/decoder.int8.onnx"))
    assert any(node.op_type == "QuantizeLinear" for node in quantized.graph.node)


def test_mixed_precision_model_is_rebuilt_in_float32_with_equal_weights(digits, tmp_path):
    mixed = VAE.from_variant("micro", input_shape=(28, 28, 1), latent_dim=4, dtype="mixed_bfloat16")
    twin = float32_vae(mixed)
    assert twin.dtype_policy.name == "float32" and twin is not mixed
    for a, b in zip(mixed.weights, twin.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    bundle = export_bundle(
        mixed, tmp_path / "b", calibration_images=digits.train, heldout_images=digits.test,
        formats=["tflite"], modes=["float32"], calibration_samples=16, log=lambda m: None,
    )
    assert Bundle(bundle).manifest["model"]["trained_precision"] == "mixed_bfloat16"
    assert Bundle(bundle).manifest["verification"]["passed"]


def test_interrupted_export_leaves_the_previous_bundle_untouched(bundle_copy, trained_model, digits, monkeypatch):
    before = {p: p.read_bytes() for p in bundle_copy.rglob("*") if p.is_file()}
    calls = []

    def convert_then_die(*args, **kwargs):
        calls.append(args)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    original = tflite_export.convert
    monkeypatch.setattr(tflite_export, "convert", convert_then_die)
    with pytest.raises(KeyboardInterrupt):
        export_bundle(
            trained_model, bundle_copy, calibration_images=digits.train, heldout_images=digits.test,
            formats=["tflite"], calibration_samples=16, force=True, log=lambda m: None,
        )
    assert {p: p.read_bytes() for p in bundle_copy.rglob("*") if p.is_file()} == before
    assert [p.name for p in bundle_copy.parent.iterdir()] == ["bundle"]  # no staging folder left


def test_plan_selects_modes_and_rejects_unknown_names():
    jobs = plan(["tflite", "onnx"], ["int8"])
    assert [(f, m) for f, _, m in jobs] == [("tflite", "int8")] * 2 + [("onnx", "int8")] * 2
    with pytest.raises(BadInputError, match="unknown format 'coreml'"):
        plan(["coreml"], None)
    with pytest.raises(BadInputError, match="unknown mode 'int4'"):
        plan(["tflite"], ["int4"])
    with pytest.raises(BadInputError, match="apply to none"):
        plan(["onnx"], ["float16"])


def test_flex_op_names_are_extracted_from_converter_errors():
    message = "error: ...\nTF Select ops: AddV2, Conv2D\nDetails:\n'tf.Svd' op is neither a custom op nor a flex op"
    assert tflite_export.flex_ops_from_error(message) == ["AddV2", "Conv2D", "Svd"]


@pytest.mark.parametrize(
    "setup, args, message",
    [
        ("missing", [], "no such model file"),
        ("corrupt", [], "not a .keras model file"),
        ("not_vae", [], "not a VAE from vae_edge"),
        ("vae", ["--format", "coreml"], "unknown format"),
        ("vae", ["--quantize", "int3"], "unknown mode"),
        ("vae", ["--calibration-samples", "4"], "calibration needs at least 16"),
    ],
)
def test_bad_export_input_is_a_one_line_error(setup, args, message, tmp_path, trained_run):
    path = tmp_path / "model.keras"
    if setup == "corrupt":
        path.write_bytes(b"\x00" * 100)
    elif setup == "not_vae":
        keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)]).save(path)
    elif setup == "vae":
        path = trained_run / "model.keras"
    result = CliRunner().invoke(main, ["export", str(path), "--out", str(tmp_path / "out"), "--no-verify", *args])
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "out").exists()


def test_an_export_that_fails_verification_keeps_the_old_bundle_and_the_rejected_one(bundle_copy, trained_model, digits):
    before = (bundle_copy / "manifest.json").read_bytes()
    with pytest.raises(VerificationFailed, match="left as it was"):
        export_bundle(
            trained_model, bundle_copy, calibration_images=digits.train, heldout_images=digits.test,
            formats=["onnx"], modes=["float32"], calibration_samples=16, force=True, log=lambda m: None,
            tolerances={"float32.max_abs": 1e-12},
        )
    assert (bundle_copy / "manifest.json").read_bytes() == before
    rejected = bundle_copy.with_name("bundle.rejected")
    assert "FAIL" in (rejected / "verify.md").read_text()
