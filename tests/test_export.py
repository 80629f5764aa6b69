"""Every artifact loaded in the engine a user would use and compared with the Keras model.

TensorFlow, Keras and the converters are imported inside the tests that need them, so that
collecting this module (for `pytest -m "not slow"`) stays cheap.
"""

import json

import numpy as np
import onnx
import pytest
from ai_edge_litert.interpreter import Interpreter
from click.testing import CliRunner

from vae_edge.bundle import Bundle, sha256_of
from vae_edge.errors import BadInputError, VerificationFailed
from vae_edge.export.options import ExportOptions
from vae_edge.prior import prior_latents
from vae_edge.registry import DEFAULT_STATIC_BATCH, FORMATS, MODES, Engine, Format, Graph, Mode, Target, targets
from vae_edge.signatures import (
    IMAGE,
    RECONSTRUCTION,
    RECONSTRUCTION_LOGITS,
    SIGNATURES,
    Z_LOG_VAR,
    Z_MEAN,
    Z,
    graph_specs,
    logits_spec,
)

# Integer modes cannot match element-wise; these bounds are the measured errors of the tiny
# test model (about 0.01-0.015 on latents and reconstructions) with a 10x margin.
MAX_ABS = {Mode.FLOAT32: 1e-4, Mode.FLOAT16: 1e-2, Mode.DYNAMIC: 0.15, Mode.INT8: 0.15, Mode.INT8_IO: 0.15}
FIXED = [t for t in targets() if t.batch is not None]


def test_every_mode_has_a_bound():
    assert set(MAX_ABS) == set(MODES)


@pytest.fixture(scope="module")
def inputs(digits, trained_model):
    images = digits.test[:16]
    z = prior_latents(16, trained_model.latent_dim, seed=1)
    z_mean, z_log_var = trained_model.encode(images)
    return {
        Graph.ENCODER: ({IMAGE: images}, {Z_MEAN: z_mean, Z_LOG_VAR: z_log_var}),
        Graph.DECODER: ({Z: z}, {RECONSTRUCTION: trained_model.decode(z)}),
    }


def run_litert(path, signature, feed):
    """One signature of a .tflite file in the LiteRT interpreter, quantizing int8 inputs and outputs by hand."""
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


def open_in_own_engine(fmt, path, signature, savedmodel):
    """A callable running one graph file in the library a user would load it with (not the package's engines)."""
    import onnxruntime as ort

    if fmt == Format.SAVEDMODEL:
        return lambda feed: {k: v.numpy() for k, v in savedmodel.signatures[signature](**feed).items()}
    if fmt == Format.TFLITE:
        return lambda feed: run_litert(path, signature, feed)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return lambda feed: dict(zip(names, session.run(names, feed)))


def run_in_own_engine(bundle, artifact, feed, savedmodel):
    """Run an artifact on `feed`; a fixed-shape file gets it in slices of its own batch."""
    run = open_in_own_engine(artifact.format, bundle.path_of(artifact), artifact.signature, savedmodel)
    rows = len(next(iter(feed.values())))
    step = artifact.batch or rows
    parts = [run({k: v[start : start + step] for k, v in feed.items()}) for start in range(0, rows, step)]
    outputs = {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}
    if RECONSTRUCTION_LOGITS in outputs:  # an integer-output decoder: the app applies the sigmoid
        outputs[RECONSTRUCTION] = 1.0 / (1.0 + np.exp(-outputs[RECONSTRUCTION_LOGITS]))
    return outputs


def test_every_artifact_matches_keras_in_its_own_engine(bundle_dir, inputs):
    import tensorflow as tf

    bundle = Bundle(bundle_dir)
    assert [a.key for a in bundle.artifacts] == [t.artifact_key(g) for t in targets() for g in Graph]
    assert any(a.batch is not None for a in bundle.artifacts)
    savedmodel = tf.saved_model.load(str(bundle.path_of(bundle.find(Target(Format.SAVEDMODEL, Mode.FLOAT32), Graph.ENCODER))))
    for artifact in bundle.artifacts:
        feed, expected = inputs[Graph(artifact.graph)]
        outputs = run_in_own_engine(bundle, artifact, feed, savedmodel)
        for name, reference in expected.items():
            assert outputs[name].shape == reference.shape, f"{artifact.key} {name}"
            error = np.abs(outputs[name] - reference).max()
            assert error <= MAX_ABS[artifact.mode], f"{artifact.key} {name}: max abs error {error}"


@pytest.mark.parametrize("target", FIXED, ids=lambda t: t.key)
def test_fixed_shape_files_have_every_dimension_fixed_and_keep_the_signatures(bundle_dir, target):
    bundle = Bundle(bundle_dir)
    specs = graph_specs(bundle.model["input_shape"], bundle.model["latent_dim"])
    for graph, artifact in bundle.pipeline(target).items():
        path, spec = bundle.path_of(artifact), specs[graph]
        if graph == Graph.DECODER and MODES[target.mode].logits_out:  # integer output: the decoder's logits
            spec = logits_spec(spec)
        assert artifact.batch == target.batch == DEFAULT_STATIC_BATCH
        if FORMATS[target.format].engine == Engine.LITERT:
            interpreter = Interpreter(model_path=str(path))
            assert list(interpreter.get_signature_list()) == [SIGNATURES[graph]]
            runner = interpreter.get_signature_runner(SIGNATURES[graph])
            tensors = {**runner.get_input_details(), **runner.get_output_details()}
            shapes = {name: list(details["shape_signature"]) for name, details in tensors.items()}
        else:  # ONNX and ORT files: graph inputs and outputs by name, as onnxruntime reads them
            import onnxruntime as ort

            session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
            shapes = {t.name: list(t.shape) for t in session.get_inputs() + session.get_outputs()}
            if target.format == Format.ONNX:
                model = onnx.load(str(path))
                tensors = [*model.graph.input, *model.graph.output]
                assert all(d.HasField("dim_value") for t in tensors for d in t.type.tensor_type.shape.dim), artifact.key
        expected = {t.name: [target.batch, *t.shape[1:]] for t in spec.inputs + spec.outputs}
        assert shapes == expected, artifact.key


def test_savedmodel_runs_batchnorm_in_inference_mode(bundle_dir, trained_model, inputs):
    import keras
    import tensorflow as tf

    (feed, expected) = inputs[Graph.DECODER]
    folder = Bundle(bundle_dir).find(Target(Format.SAVEDMODEL, Mode.FLOAT32), Graph.DECODER).path
    decode = tf.saved_model.load(str(bundle_dir / folder)).signatures[SIGNATURES[Graph.DECODER]]
    exported = decode(z=tf.constant(feed[Z]))[RECONSTRUCTION].numpy()
    weights = trained_model.get_weights()
    training_mode = keras.ops.convert_to_numpy(trained_model.decoder(feed[Z], training=True))
    trained_model.set_weights(weights)  # a training-mode call moves the BN statistics
    assert np.abs(exported - expected[RECONSTRUCTION]).max() < 1e-5
    assert np.abs(exported - training_mode).max() > 1e-3  # so the check above can tell them apart


def test_manifest_describes_every_artifact(bundle_dir, trained_run):
    manifest = json.loads((bundle_dir / "manifest.json").read_text())
    specs = graph_specs(manifest["model"]["input_shape"], manifest["model"]["latent_dim"])
    assert manifest["schema_version"] == 1
    assert manifest["model"]["preprocessing"]["pixel_range"] == [0.0, 1.0]
    assert manifest["model"]["source"]["sha256"] == [sha256_of(trained_run / "model.keras")]
    assert {"tensorflow-cpu", "keras", "tf2onnx", "onnxruntime", "ai-edge-litert"} <= set(manifest["tools"])
    assert manifest["anomaly"]["threshold"] > 0
    for entry in manifest["artifacts"]:
        assert sha256_of(bundle_dir / entry["path"]) == entry["sha256"]
        assert entry["size_bytes"] > 0
        spec = specs[Graph(entry["graph"])]
        if entry["graph"] == Graph.DECODER and MODES[entry["mode"]].logits_out:  # integer output: the logits
            spec = logits_spec(spec)
        assert entry["signature"] == spec.signature
        assert sorted(t["name"] for t in entry["inputs"] + entry["outputs"]) == sorted(spec.input_names + spec.output_names)
        for tensor in entry["inputs"] + entry["outputs"]:
            if entry["batch"] is None:
                assert tensor["shape"][0] == -1
            else:
                assert tensor["shape"][0] == entry["batch"] and min(tensor["shape"]) > 0, entry["path"]
            if entry["mode"] == Mode.INT8_IO:
                assert tensor["dtype"] == "int8" and tensor["quantization"]["scale"] > 0


def test_dynamic_tflite_is_batch_one_and_resizable(bundle_dir, inputs):
    path = bundle_dir / Bundle(bundle_dir).find(Target(Format.TFLITE, Mode.FLOAT32), Graph.DECODER).path
    detail = Interpreter(model_path=str(path)).get_input_details()[0]
    assert detail["shape"][0] == 1 and detail["shape_signature"][0] == -1
    out = run_litert(path, SIGNATURES[Graph.DECODER], {Z: inputs[Graph.DECODER][0][Z][:5]})
    assert out[RECONSTRUCTION].shape[0] == 5


def test_onnx_has_dynamic_batch_and_passes_the_checker(bundle_dir):
    bundle = Bundle(bundle_dir)
    model = onnx.load(str(bundle.path_of(bundle.find(Target(Format.ONNX, Mode.FLOAT32), Graph.ENCODER))))
    onnx.checker.check_model(model, full_check=True)
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    assert model.opset_import[0].version == 18
    for batch in (None, DEFAULT_STATIC_BATCH):
        quantized = onnx.load(str(bundle.path_of(bundle.find(Target(Format.ONNX, Mode.INT8, batch), Graph.DECODER))))
        onnx.checker.check_model(quantized, full_check=True)
        assert any(node.op_type == "QuantizeLinear" for node in quantized.graph.node)


@pytest.mark.slow
def test_mixed_precision_model_is_rebuilt_in_float32_with_equal_weights(digits, tmp_path):
    from vae_edge.export import export_bundle
    from vae_edge.model import VAE
    from vae_edge.model.loading import float32_vae

    mixed = VAE.from_variant("micro", input_shape=(28, 28, 1), latent_dim=4, dtype="mixed_bfloat16")
    twin = float32_vae(mixed)
    assert twin.dtype_policy.name == "float32" and twin is not mixed
    for a, b in zip(mixed.weights, twin.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    bundle = export_bundle(
        mixed, tmp_path / "b", calibration_images=digits.train, heldout_images=digits.test, log=lambda m: None,
        options=ExportOptions(formats=(Format.TFLITE,), modes=(Mode.FLOAT32,), static_batch=None, calibration_samples=16),
    )
    assert Bundle(bundle).manifest["model"]["trained_precision"] == "mixed_bfloat16"
    assert Bundle(bundle).manifest["verification"]["passed"]


def test_a_static_batch_above_one_is_written_fixed_and_padded_at_run_time(trained_model, digits, tmp_path):
    """`static_batch=2`: @b2 files with every dimension 2; 3 rows run as two padded calls and match the dynamic file."""
    from vae_edge.export import export_bundle
    from vae_edge.runtime.engines import open_artifact

    target = Target(Format.ONNX, Mode.FLOAT32, 2)
    bundle = Bundle(export_bundle(
        trained_model, tmp_path / "b2", calibration_images=digits.train, heldout_images=digits.test, log=lambda m: None,
        options=ExportOptions(formats=(target.format,), modes=(target.mode,), static_batch=target.batch,
                              calibration_samples=16),
    ))
    assert bundle.targets() == [Target(target.format, target.mode), target]
    assert bundle.verified(target)
    fixed = open_artifact(bundle, bundle.find(target, Graph.ENCODER))
    dynamic = open_artifact(bundle, bundle.find(Target(target.format, target.mode), Graph.ENCODER))
    assert fixed.batch == 2 and dynamic.batch is None
    assert fixed.inputs[0]["shape"] == [2, *trained_model.image_shape]
    three = {IMAGE: digits.test[:3]}
    for name, value in fixed.run(three).items():
        assert value.shape[0] == 3
        np.testing.assert_allclose(value, dynamic.run(three)[name], atol=1e-6)


def test_interrupted_export_leaves_the_previous_bundle_untouched(bundle_copy, trained_model, digits, monkeypatch):
    # Importing `tflite` registers its converter, so the patch below cannot be overwritten by export_bundle's import.
    from vae_edge.export import export_bundle, tflite
    from vae_edge.registry import CONVERTERS

    before = {p: p.read_bytes() for p in bundle_copy.rglob("*") if p.is_file()}
    calls = []

    def convert_then_die(job):
        calls.append(job.target)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return tflite.convert(job)

    monkeypatch.setitem(CONVERTERS, Format.TFLITE, convert_then_die)
    with pytest.raises(KeyboardInterrupt):
        export_bundle(
            trained_model, bundle_copy, calibration_images=digits.train, heldout_images=digits.test,
            options=ExportOptions(formats=(Format.TFLITE,), calibration_samples=16), force=True, log=lambda m: None,
        )
    assert len(calls) == 2
    assert {p: p.read_bytes() for p in bundle_copy.rglob("*") if p.is_file()} == before
    leftovers = [p.name for p in bundle_copy.parent.iterdir() if p != bundle_copy and not p.name.endswith(".lock")]
    assert leftovers == []  # no staging folder left


def test_targets_are_every_mode_of_every_format_with_a_fixed_shape_twin_where_the_format_has_one():
    every = {(fmt, mode) for fmt, info in FORMATS.items() for mode in info.modes}
    fixed_shape = {(fmt, mode) for fmt, mode in every if FORMATS[fmt].fixed_shape}
    assert {(t.format, t.mode) for t in targets() if t.batch is None} == every
    assert {(t.format, t.mode) for t in FIXED} == fixed_shape and {t.batch for t in FIXED} == {DEFAULT_STATIC_BATCH}
    assert len(targets()) == len(every) + len(fixed_shape) == len(set(targets()))
    assert targets(None) == tuple(t for t in targets() if t.batch is None)
    assert {t.key for t in targets(3) if t.batch} == {f"{fmt}/{mode}@b3" for fmt, mode in fixed_shape}
    for fixed in FIXED:  # each fixed-shape target right after its dynamic twin, in table order
        assert targets()[targets().index(fixed) - 1] == Target(fixed.format, fixed.mode)


def test_target_keys_and_artifact_paths_name_the_fixed_batch():
    from vae_edge.export import artifact_path

    fixed = Target(Format.TFLITE, Mode.INT8, 1)
    assert (fixed.key, fixed.artifact_key(Graph.DECODER)) == ("tflite/int8@b1", "tflite/decoder/int8@b1")
    assert Target(Format.ONNX, Mode.FLOAT32).artifact_key(Graph.ENCODER) == "onnx/encoder/float32"
    assert artifact_path(fixed, Graph.DECODER) == "tflite/decoder.int8.b1.tflite"
    assert artifact_path(Target(Format.ONNX, Mode.INT8), Graph.ENCODER) == "onnx/encoder.int8.onnx"
    folder = next(fmt for fmt, info in FORMATS.items() if info.folder)
    assert {artifact_path(Target(folder, FORMATS[folder].modes[0]), graph) for graph in Graph} == {str(folder)}  # one folder


def test_plan_selects_modes_and_fixed_shape_variants():
    from vae_edge.export import plan

    assert plan() == list(targets())
    multi = [fmt for fmt, info in FORMATS.items() if Mode.INT8 in info.modes]
    int8 = plan(multi, [Mode.INT8])
    assert {(t.format, t.mode) for t in int8} == {(fmt, Mode.INT8) for fmt in multi}
    assert sorted({t.batch for t in int8}, key=str) == [DEFAULT_STATIC_BATCH, None]
    assert all(t.batch is None for t in plan(multi, [Mode.INT8], static_batch=None))
    assert {t.key for t in plan([Format.TFLITE], [Mode.INT8], static_batch=4)} == {"tflite/int8", "tflite/int8@b4"}
    single = [fmt for fmt, info in FORMATS.items() if len(info.modes) == 1]
    assert {t.format for t in plan(single + multi, [Mode.INT8])} == set(single + multi)  # a one-mode format is always written
    assert plan(single) == [Target(fmt, FORMATS[fmt].modes[0]) for fmt in single]  # no fixed-shape variant


@pytest.mark.parametrize("call, message", [
    (lambda plan: plan(["coreml"], None), "unknown format 'coreml'"),
    (lambda plan: plan([Format.TFLITE], ["int4"]), "unknown mode 'int4'"),
    (lambda plan: plan([Format.ONNX], [next(m for m in MODES if m not in FORMATS[Format.ONNX].modes)]), "apply to none"),
    (lambda plan: plan(None, None, static_batch=0), "--static-batch must be between 1 and"),
], ids=["format", "mode", "mode-of-another-format", "static-batch"])
def test_plan_rejects_unknown_names(call, message):
    from vae_edge.export import plan

    with pytest.raises(BadInputError, match=message):
        call(plan)


def test_flex_op_names_are_extracted_from_converter_errors():
    from vae_edge.export.tflite import flex_ops_from_error

    message = "error: ...\nTF Select ops: AddV2, Conv2D\nDetails:\n'tf.Svd' op is neither a custom op nor a flex op"
    assert flex_ops_from_error(message) == ["AddV2", "Conv2D", "Svd"]


def _export_cli(model, tmp_path, args):
    from vae_edge.cli import main

    return CliRunner().invoke(main, ["export", str(model), "--out", str(tmp_path / "out"), "--no-verify", *args])


@pytest.mark.parametrize(
    "setup, args, message",
    [
        ("missing", [], "no such model file"),
        ("corrupt", [], "not a .keras model file"),
        ("not_vae", [], "without `encoder` and `decoder`"),
        ("missing", ["--format", "coreml"], "'coreml' is not one of"),
        ("missing", ["--quantize", "int3"], "'int3' is not one of"),
        ("missing", ["--static-batch", "-1"], "--static-batch"),
    ],
)
def test_bad_export_input_is_a_one_line_error(setup, args, message, tmp_path):
    path = tmp_path / "model.keras"
    if setup == "corrupt":
        path.write_bytes(b"\x00" * 100)
    elif setup == "not_vae":
        import keras

        keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)]).save(path)
    result = _export_cli(path, tmp_path, args)
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "out").exists()


def test_too_few_calibration_samples_is_a_one_line_error(trained_run, tmp_path):
    result = _export_cli(trained_run / "model.keras", tmp_path, ["--calibration-samples", "4"])
    assert result.exit_code == 2, result.output
    assert "calibration needs between 16" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "out").exists()


def test_an_export_that_fails_verification_keeps_the_old_bundle_and_the_rejected_one(bundle_copy, trained_model, digits):
    from vae_edge.export import export_bundle

    before = (bundle_copy / "manifest.json").read_bytes()
    with pytest.raises(VerificationFailed, match="left as it was"):
        export_bundle(
            trained_model, bundle_copy, calibration_images=digits.train, heldout_images=digits.test, force=True,
            log=lambda m: None, options=ExportOptions(formats=(Format.ONNX,), modes=(Mode.FLOAT32,), static_batch=None,
                                                      calibration_samples=16, tolerances={f"{Mode.FLOAT32}.max_abs": 1e-12}),
        )
    assert (bundle_copy / "manifest.json").read_bytes() == before
    rejected = bundle_copy.with_name("bundle.rejected")
    assert "FAIL" in (rejected / "verify.md").read_text()


def test_a_failing_mode_leaves_a_usable_bundle_of_the_rest_and_says_how_to_go_on(bundle_copy, trained_model, digits):
    """int8 forced to fail (a PSNR no integer file reaches): the float32 files are written and run, the int8 ones
    wait in rejected/ with the reason, the previous bundle is kept whole, and the error says what to do."""
    from vae_edge.errors import PartialExport
    from vae_edge.export import export_bundle
    from vae_edge.runtime import EdgeVAE

    before = {p.relative_to(bundle_copy): p.read_bytes() for p in bundle_copy.rglob("*") if p.is_file()}
    options = ExportOptions(formats=(Format.TFLITE, Format.ONNX, "web"), modes=(Mode.FLOAT32, Mode.INT8), static_batch=None,
                            calibration_samples=16, tolerances={f"{Mode.INT8}.min_psnr_db": 200.0})
    with pytest.raises(PartialExport) as failed:
        export_bundle(trained_model, bundle_copy, calibration_images=digits.train, heldout_images=digits.test,
                      options=options, force=True, log=lambda m: None)
    message = str(failed.value)
    assert "2 of 4 targets" in message and "tflite/int8" in message and "onnx/int8" in message
    assert "--tolerance int8." in message and "--quantize" in message and "rejected" in message
    bundle = Bundle(bundle_copy)
    bundle.check_all()
    assert {t.key for t in bundle.targets()} == {"tflite/float32", "onnx/float32"}
    rejected = {entry["target"]: entry for entry in bundle.manifest["rejected"]}
    assert set(rejected) == {"tflite/int8", "onnx/int8"} and "PSNR" in rejected["tflite/int8"]["reason"]
    for entry in rejected.values():
        assert all((bundle_copy / "rejected" / path).is_file() for path in entry["artifacts"])
    assert not any(a.mode == Mode.INT8 for a in bundle.artifacts)
    golden = json.loads((bundle_copy / "golden" / "golden.json").read_text())["files"]
    assert golden and set(golden) == {a.path for a in bundle.artifacts}  # the golden vectors name the kept files only
    vae = EdgeVAE.load(bundle_copy, backend=Format.TFLITE)
    assert vae.mode == Mode.FLOAT32 and vae.sample(2, seed=0).shape == (2, *trained_model.image_shape)
    assert (bundle_copy / "web" / "index.html").is_file()
    previous = bundle_copy.with_name(f"{bundle_copy.name}.previous")
    assert {p.relative_to(previous): p.read_bytes() for p in previous.rglob("*") if p.is_file()} == before


def test_a_rejected_savedmodel_moves_whole_into_rejected(bundle_copy):
    from vae_edge.export.exporter import VERIFICATION, Failure, set_aside

    savedmodel = next(t for t in Bundle(bundle_copy).targets() if t.format == Format.SAVEDMODEL)
    files = sorted(p.relative_to(bundle_copy / "savedmodel") for p in (bundle_copy / "savedmodel").rglob("*"))
    set_aside(bundle_copy, [Failure(savedmodel, VERIFICATION, "forced")])
    assert not (bundle_copy / "savedmodel").exists()
    assert sorted(p.relative_to(bundle_copy / "rejected" / "savedmodel")
                  for p in (bundle_copy / "rejected" / "savedmodel").rglob("*")) == files
    bundle = Bundle(bundle_copy)
    bundle.check_all()
    assert savedmodel.key not in {t.key for t in bundle.targets()}
    assert bundle.manifest["rejected"] == [{"target": savedmodel.key, "stage": VERIFICATION, "reason": "forced",
                                            "folder": "rejected", "artifacts": ["savedmodel"]}]
