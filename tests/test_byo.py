"""Bring your own VAE: three architectures written the way users write them (the keras.io VAE, a Dense-only
VAE with logits out, convolutions with BatchNormalization and bilinear upsampling), trained briefly,
exported to every format, verified, run by the TensorFlow-free runtime and in the web page; and a model
that does not fit the contract refused in one line, before anything is written."""

import re
import shutil
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from browser_page import served_page
from click.testing import CliRunner

from vae_edge.bundle import Bundle
from vae_edge.cli import main
from vae_edge.prior import prior_latents
from vae_edge.registry import MODES, RUNTIME_FORMATS, Format, Mode, SourceKind, targets

ROOT = Path(__file__).resolve().parent.parent
KERAS_IO = ROOT / "examples" / "keras_io_vae.py"
BYO_MODELS = Path(__file__).resolve().parent / "byo_models.py"
ARCHITECTURES = ["keras-io", "dense-logits", "batchnorm-bilinear"]


def cli(args) -> "CliRunner.invoke":
    return CliRunner().invoke(main, [str(a) for a in args])


def _import(path: Path):
    """The module at `path` (as the tests' own copy; export imports it again under its own name)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"byo_test_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module", params=ARCHITECTURES)
def exported(request, digits, tmp_path_factory):
    """One architecture trained briefly and exported as its user would: (bundle folder, the Keras decoder as
    trained, whether it returns logits)."""
    import keras

    byo = _import(BYO_MODELS)
    root = tmp_path_factory.mktemp(request.param)
    out = root / "bundle"
    keras.utils.set_random_seed(0)
    if request.param == "keras-io":  # two files and the README's command
        encoder, decoder = _import(KERAS_IO).build(latent_dim=2)
        byo.fit_briefly(encoder, decoder, digits.train, epochs=2)
        encoder.save(root / "encoder.keras")
        decoder.save(root / "decoder.keras")
        done = cli(["export", "--encoder", root / "encoder.keras", "--decoder", root / "decoder.keras",
                    "--custom-objects", KERAS_IO, "--dataset", "mnist-5k", "--out", out])
        assert done.exit_code == 0, done.output
        return out, decoder, False
    if request.param == "dense-logits":  # in memory, from Python
        from vae_edge.export import ExportOptions, export_encoder_decoder

        encoder, decoder = byo.dense_vae()
        byo.fit_briefly(encoder, decoder, digits.train, logits=True, epochs=2)
        export_encoder_decoder(encoder, decoder, out, calibration_images=digits.train, heldout_images=digits.test,
                               decoder_output="logits", dataset="mnist-5k", options=ExportOptions(calibration_samples=64),
                               log=lambda message: None)
        return out, decoder, True
    encoder, decoder = byo.batchnorm_bilinear_vae()  # one subclassed model's file, Gaussian likelihood
    byo.fit_briefly(encoder, decoder, digits.train, likelihood="gaussian", epochs=2).save(root / "vae.keras")
    done = cli(["export", root / "vae.keras", "--custom-objects", BYO_MODELS, "--likelihood", "gaussian",
                "--encoder-outputs", "mean,log_var", "--dataset", "mnist-5k", "--out", out])
    assert done.exit_code == 0, done.output
    return out, decoder, False


def test_every_format_mode_and_fixed_shape_is_exported_and_verified(exported):
    bundle = Bundle(exported[0])
    bundle.check_all()
    assert {t.key for t in bundle.targets()} == {t.key for t in targets()}
    verification = bundle.manifest["verification"]
    assert verification["passed"] and "rejected" not in bundle.manifest
    assert all(v["passed"] for v in verification["pipelines"].values())
    for artifact in bundle.artifacts:
        if artifact.format == Format.TFLITE:
            from vae_edge.runtime.engines import open_artifact

            ops = open_artifact(bundle, artifact).ops()
            assert not [op for op in ops if op.startswith("Flex") or op == "CUSTOM"], (artifact.key, ops)


def test_the_manifest_says_what_the_model_is_and_where_it_came_from(exported):
    model = Bundle(exported[0]).manifest["model"]
    assert model["origin"] == "keras" and model["input_shape"] == [28, 28, 1]
    assert model["source"]["kind"] in {SourceKind.ENCODER_DECODER, SourceKind.IN_MEMORY, SourceKind.SUBMODELS}
    assert model["decoder_output"] == ("logits" if exported[2] else "probabilities")
    assert "VAE" not in model["layer_types"] and model["parameters"] > 0


@pytest.mark.parametrize("backend", RUNTIME_FORMATS)
def test_seeded_samples_equal_the_keras_decoder_on_the_same_z(exported, backend):
    from vae_edge.runtime import EdgeVAE

    folder, decoder, logits = exported
    vae = EdgeVAE.load(folder, backend=backend, mode=Mode.FLOAT32)
    samples = vae.sample(8, seed=3)
    keras_out = np.asarray(decoder.predict(prior_latents(8, vae.latent_dim, 3), verbose=0), np.float64)
    expected = 1.0 / (1.0 + np.exp(-keras_out)) if logits else keras_out
    assert np.abs(samples - expected).max() <= MODES[Mode.FLOAT32].tolerance["max_abs"]
    assert vae.anomaly_score(samples).shape == (8,) and vae.encode(samples)[0].shape == (8, vae.latent_dim)


def test_int8_costs_little_elbo_and_integer_io_returns_logits_only_for_a_bernoulli_decoder(exported):
    bundle = Bundle(exported[0])
    pipelines = bundle.manifest["verification"]["pipelines"]
    for mode in (Mode.INT8, Mode.INT8_IO):
        assert abs(pipelines[f"{Format.TFLITE}/{mode}"]["elbo_increase_pct"]) < 2.0
    decoder = bundle.find(next(t for t in bundle.targets() if t.mode == Mode.INT8_IO and t.batch is None), "decoder")
    gaussian = bundle.model["reconstruction_loss"] == "mse"
    assert decoder.outputs[0]["name"] == ("reconstruction" if gaussian else "reconstruction_logits")
    assert decoder.outputs[0]["dtype"] == "int8"


def test_phone_accelerator_coverage_is_reported_for_the_fixed_shape_files(exported):
    from vae_edge.export.mobile import onnx_mobile_coverage, tflite_coverage

    bundle = Bundle(exported[0])
    fixed = [a for a in bundle.artifacts if a.batch and a.mode == Mode.FLOAT32 and a.format in (Format.ONNX, Format.TFLITE)]
    assert {a.format for a in fixed} == {Format.ONNX, Format.TFLITE}
    for artifact in fixed:
        path = bundle.path_of(artifact)
        coverage = onnx_mobile_coverage(path) if artifact.format == Format.ONNX else tflite_coverage(path)
        for name, found in coverage.items():
            if isinstance(found, dict):
                assert 0 < found["nodes"] and 0 <= found["supported_nodes"] <= found["nodes"], (artifact.key, name)
        if artifact.format == Format.ONNX:
            assert coverage["nnapi"]["nodes_with_dynamic_input"] == 0  # every dimension fixed, as NNAPI needs
    described = cli(["info", exported[0]])
    assert described.exit_code == 0 and described.output.count("phone: ") >= len(fixed)


def test_the_web_page_runs_the_bundle_as_the_python_runtime_does(exported, browser):
    from vae_edge.runtime import EdgeVAE

    folder = exported[0]
    with served_page(browser, folder / "web") as page:
        got = page.run("const t = await vae.sample(4, {seed: 5}); return {data: Array.from(t.data), shape: t.shape};")
        assert page.errors == []
    expected = EdgeVAE.load(folder, backend=Format.ONNX, mode=page.info["mode"]).sample(4, seed=5)
    tolerance = MODES[Mode(page.info["mode"])].tolerance.get("max_abs", 2e-2)
    assert np.abs(np.asarray(got["data"], np.float32).reshape(got["shape"]) - expected).max() <= tolerance


def test_verify_loads_the_model_again_from_the_files_the_manifest_names(exported, tmp_path):
    folder = exported[0]
    kind = Bundle(folder).manifest["model"]["source"]["kind"]
    bundle = Path(shutil.copytree(folder, tmp_path / "bundle"))
    if kind == SourceKind.IN_MEMORY:  # nothing to load: the saved outputs can still be judged again
        done = cli(["verify", bundle])
        assert done.exit_code == 2 and "--rejudge" in done.output
        done = cli(["verify", bundle, "--rejudge"])
        assert done.exit_code == 0, done.output
        return
    modules = Bundle(folder).manifest["model"]["source"]["custom_objects"]
    refused = cli(["verify", bundle])
    assert refused.exit_code == 2 and "--custom-objects" in refused.output
    done = cli(["verify", bundle, *(arg for module in modules for arg in ("--custom-objects", module))])
    assert done.exit_code == 0, done.output


@pytest.mark.slow
def test_a_layer_one_format_cannot_take_fails_that_format_alone_and_names_the_op(digits, tmp_path):
    from vae_edge.errors import PartialExport
    from vae_edge.export import ExportOptions, export_encoder_decoder

    byo = _import(BYO_MODELS)
    encoder, _ = byo.dense_vae(latent_dim=2)
    options = ExportOptions(formats=(Format.TFLITE, Format.ONNX, "web"), modes=(Mode.FLOAT32,), static_batch=None,
                            calibration_samples=16)
    with pytest.raises(PartialExport) as failed:
        export_encoder_decoder(encoder, byo.erf_decoder(), tmp_path / "b", calibration_images=digits.train,
                               heldout_images=digits.test, options=options, log=lambda message: None)
    assert "tflite/float32" in str(failed.value) and "Erf" in str(failed.value) and "--format" in str(failed.value)
    bundle = Bundle(tmp_path / "b")
    assert {t.key for t in bundle.targets()} == {"onnx/float32"} and bundle.manifest["verification"]["passed"]
    (rejected,) = bundle.manifest["rejected"]
    assert (rejected["target"], rejected["stage"]) == ("tflite/float32", "conversion") and "Erf" in rejected["reason"]
    assert (tmp_path / "b" / "web" / "index.html").is_file()


# --- models that do not fit the contract: one line, exit 2, nothing written --------------------------------------


def _encoder(latent: int = 2, outputs: int = 2, shape=(28, 28, 1), second_input: bool = False):
    import keras

    image = keras.Input(shape)
    inputs = [image, keras.Input((3,))] if second_input else image
    x = keras.layers.Flatten()(image)
    heads = [keras.layers.Dense(latent, name=name)(x) for name in ("z_mean", "z_log_var", "z")[:outputs]]
    return keras.Model(inputs, heads if outputs > 1 else heads[0])


def _decoder(latent: int = 2, shape=(28, 28, 1), activation="sigmoid"):
    import keras

    z = keras.Input((latent,))
    x = keras.layers.Dense(int(np.prod(shape)), activation=activation)(z)
    return keras.Model(z, keras.layers.Reshape(shape)(x))


BAD_CONTRACTS = [  # (encoder, decoder, extra options, what the one line must say)
    (lambda: _encoder(), lambda: _decoder(shape=(32, 32, 3)), [],
     "the decoder's output is (None, 32, 32, 3) but the encoder takes (None, 28, 28, 1)"),
    (lambda: _encoder(latent=2), lambda: _decoder(latent=3), [],
     "the decoder takes (None, 3) but the encoder's z_mean is (None, 2)"),
    (lambda: _encoder(outputs=1), lambda: _decoder(), [], "the encoder has 1 output(s)"),
    (lambda: _encoder(), lambda: _decoder(activation=None), [], "is not a sigmoid"),
    (lambda: _encoder(), lambda: _decoder(), ["--decoder-output", "logits"], "ends in a sigmoid"),
    (lambda: _encoder(), lambda: _decoder(activation=None), ["--likelihood", "gaussian", "--decoder-output", "logits"],
     "a Gaussian decoder outputs means, not logits"),
    (lambda: _encoder(shape=(784,)), lambda: _decoder(), [], "add keras.layers.Reshape"),
    (lambda: _encoder(second_input=True), lambda: _decoder(), [], "takes 2 inputs"),
    (lambda: _encoder(outputs=3), lambda: _decoder(), ["--encoder-outputs", "mean,mean,sample"], "must be one mean"),
    (lambda: _encoder(), lambda: _decoder(), ["--encoder-outputs", "mean,spread"], "unknown encoder output 'spread'"),
    (lambda: _encoder(), lambda: _decoder(), ["--likelihood", "poisson"], "'poisson' is not one of"),
]


@pytest.mark.parametrize("make_encoder, make_decoder, options, message", BAD_CONTRACTS,
                         ids=[case[3][:40] for case in BAD_CONTRACTS])
def test_a_model_that_does_not_fit_the_contract_is_one_line_and_writes_nothing(make_encoder, make_decoder, options, message,
                                                                             tmp_path):
    make_encoder().save(tmp_path / "encoder.keras")
    make_decoder().save(tmp_path / "decoder.keras")
    before = sorted(tmp_path.rglob("*"))
    done = cli(["export", "--encoder", tmp_path / "encoder.keras", "--decoder", tmp_path / "decoder.keras",
                "--dataset", "mnist-5k", "--out", tmp_path / "out", *options])
    _assert_one_line(done, message)
    assert sorted(tmp_path.rglob("*")) == before


def _assert_one_line(done, message: str) -> None:
    lines = done.output.strip().splitlines()
    assert done.exit_code == 2, done.output
    assert len(lines) == 1 and lines[0].startswith("Error: ") and message in lines[0], done.output
    assert "Traceback" not in done.output


@pytest.mark.parametrize("setup, message", [
    ("no-dataset", "--dataset is required for a model not trained by vae-edge"),
    ("encoder-only", "--encoder and --decoder go together"),
    ("model-and-halves", "not both"),
    ("unknown-layer", "uses a layer or model class 'Sampling' that Keras does not know; pass --custom-objects"),
    ("missing-module", "--custom-objects"),
    ("module-that-raises", "importing it failed (RuntimeError: no GPU here)"),
    ("plain-model", "without `encoder` and `decoder` sub-models; pass its two halves"),
    ("wrong-images", "do not fit a model of input shape (28, 28, 1)"),
])
def test_what_a_user_leaves_out_or_gets_wrong_is_named_in_one_line(setup, message, tmp_path):
    import keras

    encoder, decoder = tmp_path / "encoder.keras", tmp_path / "decoder.keras"
    _encoder().save(encoder)
    _decoder().save(decoder)
    args = ["--encoder", encoder, "--decoder", decoder, "--dataset", "mnist-5k"]
    if setup == "no-dataset":
        args = args[:4]
    elif setup == "encoder-only":
        args = ["--encoder", encoder, "--dataset", "mnist-5k"]
    elif setup == "model-and-halves":
        args = [encoder, *args]
    elif setup == "unknown-layer":
        kio_encoder, _ = _import(KERAS_IO).build()
        kio_encoder.save(encoder)
    elif setup == "missing-module":
        args += ["--custom-objects", tmp_path / "nowhere.py"]
    elif setup == "module-that-raises":
        (tmp_path / "raises.py").write_text("raise RuntimeError('no GPU here')\n")
        args += ["--custom-objects", tmp_path / "raises.py"]
    elif setup == "plain-model":
        keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)]).save(tmp_path / "plain.keras")
        args = [tmp_path / "plain.keras", "--dataset", "mnist-5k"]
    elif setup == "wrong-images":
        np.save(tmp_path / "rgb.npy", np.zeros((40, 32, 32, 3), np.float32))
        args = ["--encoder", encoder, "--decoder", decoder, "--dataset", tmp_path / "rgb.npy"]
    before = sorted(tmp_path.rglob("*"))
    _assert_one_line(cli(["export", *args, "--out", tmp_path / "out"]), message)
    assert sorted(tmp_path.rglob("*")) == before


SAVE_UNDER_BACKEND = """
import sys
import numpy as np
import keras
sys.path.insert(0, {tests!r})
import byo_models
keras.utils.set_random_seed(0)
encoder, decoder = byo_models.dense_vae(latent_dim=3)
encoder.save({out!r} + "/encoder.keras")
decoder.save({out!r} + "/decoder.keras")
z = np.linspace(-2, 2, 12, dtype="float32").reshape(4, 3)
np.save({out!r} + "/decoded.npy", keras.ops.convert_to_numpy(decoder(z, training=False)))
"""


@pytest.mark.slow
@pytest.mark.parametrize("saved_under", ["jax", "torch"])
def test_models_saved_under_jax_or_pytorch_load_with_their_numbers(saved_under, tmp_path):
    """A user's .keras files written by Keras on the JAX or PyTorch backend export here on TensorFlow."""
    import importlib.util
    import os
    import subprocess

    if importlib.util.find_spec(saved_under) is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{saved_under} is not installed, and CI tests every backend")
        pytest.skip(f"{saved_under} is not installed")
    from vae_edge.model.source import load_graphs

    script = SAVE_UNDER_BACKEND.format(tests=str(BYO_MODELS.parent), out=str(tmp_path))
    env = {**os.environ, "KERAS_BACKEND": saved_under, "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    graphs = load_graphs(encoder_path=tmp_path / "encoder.keras", decoder_path=tmp_path / "decoder.keras",
                         decoder_output="logits", log=lambda message: None)
    z = np.linspace(-2, 2, 12, dtype="float32").reshape(4, 3)
    expected = 1.0 / (1.0 + np.exp(-np.load(tmp_path / "decoded.npy").astype(np.float64)))  # the sigmoid export adds
    np.testing.assert_allclose(graphs.decode(z), expected, atol=1e-5)


def test_a_mixed_precision_model_exports_as_a_float32_copy_and_is_recorded_as_mixed():
    import byo_models
    import keras

    from vae_edge.model.loading import layers_of
    from vae_edge.model.source import vae_graphs

    keras.config.set_dtype_policy("mixed_float16")
    try:
        encoder, decoder = byo_models.dense_vae(latent_dim=3)
    finally:
        keras.config.set_dtype_policy("float32")
    graphs = vae_graphs(encoder, decoder, decoder_output="logits", log=lambda message: None)
    assert graphs.facts["trained_precision"] == "mixed_float16"  # as trained, not as the float32 copy
    assert {layer.dtype_policy.name for model in (graphs.encoder, graphs.decoder) for layer in layers_of(model)} \
        == {"float32"}
    weights = {w.path: np.asarray(w.numpy()) for w in encoder.weights + decoder.weights}
    copied = {w.path: np.asarray(w.numpy()) for w in graphs.encoder.weights + graphs.decoder.weights}
    assert weights.keys() <= copied.keys() and all(np.array_equal(weights[p], copied[p]) for p in weights)


def test_the_model_files_are_checked_against_the_manifests_digests(tmp_path):
    import byo_models

    from vae_edge.bundle import ModelSource
    from vae_edge.errors import BadInputError
    from vae_edge.model.source import reload_graphs

    encoder, decoder = byo_models.dense_vae(latent_dim=3)
    paths = (str(tmp_path / "encoder.keras"), str(tmp_path / "decoder.keras"))
    encoder.save(paths[0])
    decoder.save(paths[1])
    exported = ModelSource(SourceKind.ENCODER_DECODER, paths, decoder_output="logits").with_digests()
    quiet = {"log": lambda message: None}
    assert reload_graphs(exported, **quiet).source == exported  # the same files: loaded
    ModelSource(SourceKind.ENCODER_DECODER, paths, ("", "")).check_same_files(exported)  # no digests recorded: passes
    for recorded in (replace(exported, sha256=(exported.sha256[0], "0" * 64)),  # the decoder was retrained
                     replace(exported, paths=paths[:1], sha256=exported.sha256[:1])):  # one file recorded, two read
        with pytest.raises(BadInputError, match="not the model the bundle was exported from"):
            recorded.check_same_files(exported)
    with pytest.raises(BadInputError, match="^" + re.escape(f"{paths[1]}: not the model the bundle was exported from")):
        reload_graphs(replace(exported, sha256=(exported.sha256[0], "0" * 64)), **quiet)
