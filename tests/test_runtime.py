"""The TensorFlow-free runtime: `EdgeVAE` on LiteRT and onnxruntime, its validation and its CLI."""

import json
import re
import subprocess
import sys
import threading

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from vae_edge.bundle import Bundle
from vae_edge.cli import VaeEdgeGroup
from vae_edge.cli.runtime import interpolate, reconstruct, sample, score
from vae_edge.cpu import cpu_class
from vae_edge.errors import BadInputError, IntegrityError, MissingFileError
from vae_edge.registry import DEFAULT_STATIC_BATCH, FORMATS, MODES, RUNTIME_FORMATS, Format, Graph, Mode, Target
from vae_edge.runtime import EdgeVAE, default_mode
from vae_edge.runtime.edge import quantized_for_another_cpu
from vae_edge.runtime.engines import open_artifact
from vae_edge.signatures import IMAGE, RECONSTRUCTION, Z_LOG_VAR, Z_MEAN, Z

PIPELINES = [(fmt, mode) for fmt in RUNTIME_FORMATS for mode in FORMATS[fmt].modes]
INT8_IO, ONNX_INT8 = (Format.TFLITE, Mode.INT8_IO), (Format.ONNX, Mode.INT8)  # float I/O and int8 I/O engines
ONNX_FLOAT32 = (Format.ONNX, Mode.FLOAT32)
# max |mode - float32| per pixel of the tiny model's samples; measured 0.0002 (float16) to 0.011 (onnx int8)
COMPRESSED_SAMPLE_BOUND = 0.05


@pytest.fixture(scope="module")
def vaes(bundle_dir):
    return {pipeline: EdgeVAE.load(bundle_dir, *pipeline) for pipeline in PIPELINES}


@pytest.fixture(scope="module")
def vae(vaes):
    return vaes[Format.TFLITE, Mode.FLOAT32]


@pytest.mark.parametrize("pipeline", PIPELINES, ids="/".join)
def test_every_pipeline_samples_encodes_and_reconstructs(vaes, digits, pipeline):
    vae = vaes[pipeline]
    images = vae.sample(5, seed=1)
    assert images.shape == (5, 28, 28, 1) and images.dtype == np.float32
    assert 0.0 <= images.min() and images.max() <= 1.0
    np.testing.assert_array_equal(images, vae.sample(5, seed=1))
    assert not np.array_equal(images, vae.sample(5, seed=2))
    z_mean, z_log_var = vae.encode(digits.test[:7])
    assert z_mean.shape == z_log_var.shape == (7, vae.latent_dim)
    assert vae.reconstruct(digits.test[:7]).shape == (7, 28, 28, 1)
    assert vae.decode(z_mean).shape == (7, 28, 28, 1)


def test_float32_backends_agree_with_each_other_and_with_keras(vaes, trained_model, digits):
    keras_samples = trained_model.sample(16, seed=3)
    for fmt in RUNTIME_FORMATS:
        np.testing.assert_allclose(vaes[fmt, Mode.FLOAT32].sample(16, seed=3), keras_samples, atol=1e-4)
    litert, onnx = vaes[Format.TFLITE, Mode.FLOAT32], vaes[ONNX_FLOAT32]
    np.testing.assert_allclose(litert.encode(digits.test[:16])[0], onnx.encode(digits.test[:16])[0], atol=1e-4)
    np.testing.assert_allclose(litert.anomaly_score(digits.test[:16]), onnx.anomaly_score(digits.test[:16]), rtol=1e-4)


@pytest.mark.parametrize("pipeline", [p for p in PIPELINES if p[1] != Mode.FLOAT32], ids="/".join)
def test_compressed_modes_stay_near_float32(vaes, pipeline):
    reference = vaes[pipeline[0], Mode.FLOAT32].sample(32, seed=4)
    assert np.abs(vaes[pipeline].sample(32, seed=4) - reference).max() < COMPRESSED_SAMPLE_BOUND


def test_batches_of_any_size_match_one_at_a_time(vaes, digits):
    for pipeline in (INT8_IO, ONNX_INT8):
        vae = vaes[pipeline]
        x = np.concatenate([digits.test] * 8)[:300]  # more than one engine chunk
        batch = vae.reconstruct(x)
        for i in (0, 1, 255, 256, 299):
            np.testing.assert_allclose(vae.reconstruct(x[i : i + 1])[0], batch[i], atol=1e-6)


def test_noise_scores_higher_than_digits(vaes, digits):
    noise = np.random.default_rng(0).random((32, 28, 28, 1), dtype=np.float32)
    for vae in vaes.values():
        assert vae.anomaly_score(noise).min() > np.median(vae.anomaly_score(digits.test))
        assert vae.is_anomaly(noise).all()
        assert vae.is_anomaly(digits.test).mean() < 0.5


def test_scores_match_the_exported_threshold_definition(vae, digits, bundle_dir):
    manifest = json.loads((bundle_dir / "manifest.json").read_text())
    pipeline = manifest["verification"]["pipelines"][Target(vae.backend, vae.mode).key]
    assert vae.threshold == pipeline["anomaly_threshold"]  # the loaded pipeline's own threshold
    assert vae.threshold == pytest.approx(manifest["anomaly"]["threshold"], rel=1e-4)  # float32: same as Keras'
    # the threshold is the 99th percentile of the same score on the same held-out images
    assert np.quantile(vae.anomaly_score(digits.test), 0.99) == pytest.approx(vae.threshold, rel=1e-4)


def test_uint8_pixels_equal_float_pixels(vae, digits):
    pixels = (digits.test[:4] * 255).round().astype(np.uint8)
    np.testing.assert_allclose(vae.encode(pixels)[0], vae.encode(pixels / np.float32(255))[0], atol=1e-6)
    np.testing.assert_allclose(vae.encode(digits.test[:4, ..., 0])[0], vae.encode(digits.test[:4])[0])


@pytest.mark.parametrize("method", ["linear", "slerp"])
def test_interpolation_starts_and_ends_at_the_reconstructions(vae, digits, method):
    a, b = digits.test[0, ..., 0], digits.test[1:2]  # (H, W) and (1, H, W, C) both mean one image
    frames = vae.interpolate(a, b, steps=6, method=method)
    assert frames.shape == (6, 28, 28, 1)
    np.testing.assert_allclose(frames[[0, -1]], vae.reconstruct(digits.test[:2]), atol=1e-5)


def test_temperature_zero_decodes_the_prior_mean(vae):
    images = vae.sample(3, seed=0, temperature=0.0)
    np.testing.assert_allclose(images, vae.decode(np.zeros((3, vae.latent_dim))), atol=1e-6)
    numpy_scalars = vae.sample(3, seed=np.int64(0), temperature=np.float32(0.5))
    np.testing.assert_array_equal(numpy_scalars, vae.sample(3, seed=0, temperature=0.5))


GOOD = np.full((2, 28, 28, 1), 0.5, np.float32)
BAD_IMAGES = {
    "no batch axis": (GOOD[0], "shape (N, 28, 28, 1)"),
    "wrong size": (np.zeros((2, 32, 32, 1), np.float32), "shape (N, 28, 28, 1)"),
    "wrong channels": (np.zeros((2, 28, 28, 3), np.float32), "shape (N, 28, 28, 1)"),
    "wrong rank": (np.zeros((2, 784), np.float32), "shape (N, 28, 28, 1)"),
    "empty batch": (np.zeros((0, 28, 28, 1), np.float32), "empty batch"),
    "strings": (np.full((2, 28, 28, 1), "a"), "numeric"),
    "booleans": (np.zeros((2, 28, 28, 1), bool), "numeric"),
    "complex": (np.zeros((2, 28, 28, 1), complex), "numeric"),
    "int64 pixels": (np.zeros((2, 28, 28, 1), np.int64), "uint8 pixels 0..255"),
    "nan": (np.where(np.arange(784).reshape(1, 28, 28, 1) == 5, np.nan, GOOD), "NaN or Inf"),
    "inf": (np.where(np.arange(784).reshape(1, 28, 28, 1) == 5, np.inf, GOOD), "NaN or Inf"),
    "0..255 floats": (GOOD * 255, "[0, 1]"),
    "negative": (GOOD - 1, "[0, 1]"),
    "ragged list": ([[0.5], [0.5, 0.5]], "numeric"),
}


@pytest.mark.parametrize("case", BAD_IMAGES, ids=str)
@pytest.mark.parametrize("method", ["encode", "reconstruct", "anomaly_score", "is_anomaly"])
def test_bad_images_are_refused_with_what_was_expected(vaes, case, method):
    images, expected = BAD_IMAGES[case]
    for vae in (vaes[INT8_IO], vaes[ONNX_FLOAT32]):
        with pytest.raises(BadInputError, match=re.escape(expected)):
            getattr(vae, method)(images)


@pytest.mark.parametrize("z, expected", [
    (np.zeros((2, 7), np.float32), "shape (N, 8)"),
    (np.zeros(8, np.float32), "shape (N, 8)"),
    (np.zeros((0, 8), np.float32), "empty batch"),
    (np.full((2, 8), np.nan, np.float32), "NaN or Inf"),
    (np.full((2, 8), "x"), "numeric"),
], ids=["width", "rank", "empty", "nan", "strings"])
def test_bad_latents_are_refused(vaes, z, expected):
    for vae in (vaes[INT8_IO], vaes[ONNX_INT8]):
        with pytest.raises(BadInputError, match=re.escape(expected)):
            vae.decode(z)


@pytest.mark.parametrize("kwargs, expected", [
    ({"n": 0}, "n must be a positive integer"),
    ({"n": -3}, "n must be a positive integer"),
    ({"n": 2.5}, "n must be a positive integer"),
    ({"n": True}, "n must be a positive integer"),
    ({"n": 2, "seed": -1}, "seed must be"),
    ({"n": 2, "temperature": float("nan")}, "temperature must be"),
    ({"n": 2, "temperature": -1.0}, "temperature must be"),
])
def test_bad_sample_arguments_are_refused(vae, kwargs, expected):
    with pytest.raises(BadInputError, match=expected):
        vae.sample(**kwargs)


@pytest.mark.parametrize("kwargs, expected", [
    ({"steps": 1}, "at least 2"),
    ({"steps": 0}, "positive integer"),
    ({"method": "cubic"}, "linear, slerp"),
    ({"x_a": GOOD}, "one image, got a batch of 2"),
])
def test_bad_interpolation_arguments_are_refused(vae, kwargs, expected):
    arguments = {"x_a": GOOD[0], "x_b": GOOD[1], "steps": 4, "method": "linear", **kwargs}
    with pytest.raises(BadInputError, match=expected):
        vae.interpolate(**arguments)


def _pipeline_sizes(bundle, backend):
    """Bytes of every graph of each dynamic-batch pipeline of `backend` that may be a default, by mode."""
    here = cpu_class()
    return {t.mode: sum(a.size_bytes for a in bundle.pipeline(t).values())
            for t in bundle.targets()
            if t.format == backend and t.batch is None and not quantized_for_another_cpu(bundle, t, here)}


def test_defaults_pick_litert_and_the_most_compact_verified_mode(bundle_dir):
    vae = EdgeVAE.load(bundle_dir)
    assert vae.backend == RUNTIME_FORMATS[0] and vae.mode == default_mode(vae.bundle, vae.backend)
    assert vae.mode != Mode.FLOAT32  # every mode of the tiny model passes verification
    sizes = _pipeline_sizes(vae.bundle, vae.backend)
    assert set(sizes) == set(FORMATS[vae.backend].modes) and sizes[vae.mode] == min(sizes.values())
    for backend in RUNTIME_FORMATS[1:]:  # no bench.json in the bundle: the most compact that may be a default
        sizes = _pipeline_sizes(vae.bundle, backend)
        assert sizes[EdgeVAE.load(bundle_dir, backend=backend).mode] == min(sizes.values())


def test_default_mode_falls_back_to_float32_without_verification(bundle_copy):
    manifest = json.loads((bundle_copy / "manifest.json").read_text())
    chosen = EdgeVAE.load(bundle_copy).mode
    manifest["verification"]["pipelines"][Target(RUNTIME_FORMATS[0], chosen).key]["passed"] = False
    (bundle_copy / "manifest.json").write_text(json.dumps(manifest))
    assert EdgeVAE.load(bundle_copy).mode not in (chosen, Mode.FLOAT32)  # the next smallest verified one
    del manifest["verification"]
    (bundle_copy / "manifest.json").write_text(json.dumps(manifest))
    for backend in RUNTIME_FORMATS:
        assert EdgeVAE.load(bundle_copy, backend=backend).mode == Mode.FLOAT32


@pytest.mark.parametrize("kwargs, expected", [
    ({"backend": "coreml"}, f"choose one of {', '.join(RUNTIME_FORMATS)}"),
    ({"backend": Format.SAVEDMODEL}, f"choose one of {', '.join(RUNTIME_FORMATS)}"),  # in the bundle, but needs TensorFlow
    ({"backend": Format.TFLITE, "mode": "int4"}, ", ".join(FORMATS[Format.TFLITE].modes)),
    ({"backend": Format.ONNX, "mode": next(m for m in FORMATS[Format.TFLITE].modes if m not in FORMATS[Format.ONNX].modes)},
     f"choose one of {', '.join(FORMATS[Format.ONNX].modes)}"),
], ids=["unknown-backend", "not-a-runtime-format", "unknown-mode", "mode-of-another-backend"])
def test_unknown_backend_or_mode_names_the_valid_ones(bundle_dir, kwargs, expected):
    with pytest.raises(BadInputError, match=re.escape(expected)):
        EdgeVAE.load(bundle_dir, **kwargs)


def test_missing_tampered_or_escaping_files_are_refused(bundle_copy, tmp_path):
    bundle = Bundle(bundle_copy)
    with pytest.raises(MissingFileError):
        EdgeVAE.load(tmp_path / "nowhere")
    for batch in (None, DEFAULT_STATIC_BATCH):  # the fixed-shape variant is opened (and checked) too
        path = bundle_copy / bundle.find(Target(Format.TFLITE, Mode.INT8, batch), Graph.DECODER).path
        original = path.read_bytes()
        path.write_bytes(b"not a model")
        with pytest.raises(IntegrityError, match="sha256"):
            EdgeVAE.load(bundle_copy, Format.TFLITE, Mode.INT8)
        path.write_bytes(original)
    EdgeVAE.load(bundle_copy, Format.TFLITE, Mode.INT8)
    (bundle_copy / bundle.find(Target(*ONNX_FLOAT32), Graph.ENCODER).path).unlink()
    with pytest.raises(MissingFileError, match="missing"):
        EdgeVAE.load(bundle_copy, *ONNX_FLOAT32)
    manifest = json.loads((bundle_copy / "manifest.json").read_text())
    escaping = bundle.find(Target(Format.TFLITE, Mode.FLOAT16), Graph.ENCODER).path
    for artifact in manifest["artifacts"]:
        if artifact["path"] == escaping:
            artifact["path"] = "../../etc/passwd"
    (bundle_copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(IntegrityError, match="outside the bundle"):
        EdgeVAE.load(bundle_copy, Format.TFLITE, Mode.FLOAT16)


@pytest.mark.parametrize("pipeline", PIPELINES, ids="/".join)
def test_the_runtime_opens_the_dynamic_and_the_fixed_shape_variant(vaes, pipeline):
    for graph in Graph:
        assert sorted(e.batch or 0 for e in vaes[pipeline].engines[graph]) == [0, DEFAULT_STATIC_BATCH]


def _record_calls(engine, calls: list, monkeypatch):
    run = engine.run
    monkeypatch.setattr(engine, "run", lambda feeds: calls.append(engine.batch) or run(feeds))


@pytest.mark.parametrize("pipeline", PIPELINES, ids="/".join)
def test_a_batch_the_fixed_engine_fits_runs_there_with_the_dynamic_engines_numbers(vaes, digits, pipeline, monkeypatch):
    vae = vaes[pipeline]
    calls = []
    for graph in Graph:
        for engine in vae.engines[graph]:
            _record_calls(engine, calls, monkeypatch)
    dynamic = {graph: next(e for e in vae.engines[graph] if e.batch is None) for graph in Graph}
    x = digits.test[: 4 * DEFAULT_STATIC_BATCH]
    z_mean, z_log_var = vae.encode(x)
    reconstruction = vae.decode(z_mean)
    assert calls == [DEFAULT_STATIC_BATCH] * 2
    expected = dynamic[Graph.ENCODER].run({IMAGE: x})
    np.testing.assert_allclose(z_mean, expected[Z_MEAN], atol=1e-6)
    np.testing.assert_allclose(z_log_var, expected[Z_LOG_VAR], atol=1e-6)
    np.testing.assert_allclose(reconstruction, dynamic[Graph.DECODER].run({Z: z_mean})[RECONSTRUCTION], atol=1e-6)


def test_a_batch_the_fixed_engine_does_not_fit_runs_on_the_dynamic_one(bundle_dir):
    """With recording stand-ins for engines of batch 4 and dynamic batch, only the choice is under test."""

    bundle = Bundle(bundle_dir)

    class Recorder:
        def __init__(self, batch):
            self.batch, self.rows = batch, []

        def run(self, feeds):
            self.rows.append(len(feeds[Z]))
            return {RECONSTRUCTION: np.zeros((len(feeds[Z]), *bundle.model["input_shape"]), np.float32)}

    fixed, dynamic = Recorder(4), Recorder(None)
    vae = EdgeVAE(bundle, Format.TFLITE, Mode.FLOAT32, {Graph.ENCODER: [], Graph.DECODER: [fixed, dynamic]})
    for rows in (8, 3, 4, 6):
        vae.decode(np.zeros((rows, vae.latent_dim), np.float32))
    assert (fixed.rows, dynamic.rows) == ([8, 4], [3, 6])


@pytest.mark.parametrize("fmt", RUNTIME_FORMATS)
def test_a_fixed_shape_file_runs_any_batch_in_chunks(bundle_dir, digits, fmt):
    bundle = Bundle(bundle_dir)
    fixed = open_artifact(bundle, bundle.find(Target(fmt, Mode.FLOAT32, DEFAULT_STATIC_BATCH), Graph.ENCODER))
    dynamic = open_artifact(bundle, bundle.find(Target(fmt, Mode.FLOAT32), Graph.ENCODER))
    assert fixed.batch == DEFAULT_STATIC_BATCH
    x = {IMAGE: digits.test[: 3 * DEFAULT_STATIC_BATCH]}
    reference = dynamic.run(x)
    for name, value in fixed.run(x).items():
        assert value.shape == reference[name].shape
        np.testing.assert_allclose(value, reference[name], atol=1e-6)


@pytest.mark.parametrize("pipeline", [INT8_IO, ONNX_FLOAT32], ids="/".join)
def test_concurrent_calls_give_single_threaded_results(vaes, digits, pipeline):
    vae = vaes[pipeline]
    sizes = [1, 3, 8, 17, 2]
    expected = {n: (vae.sample(n, seed=n), vae.anomaly_score(digits.test[:n])) for n in sizes}
    failures = []

    def worker(index):
        for call in range(20):
            n = sizes[(index + call) % len(sizes)]
            if not (np.array_equal(vae.sample(n, seed=n), expected[n][0])
                    and np.array_equal(vae.anomaly_score(digits.test[:n]), expected[n][1])):
                failures.append((index, call, n))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []


def test_importing_the_runtime_imports_no_tensorflow_or_keras():
    code = ("import sys, vae_edge.runtime, vae_edge.cli.runtime; "
            "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules, "
            "sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras'))")
    subprocess.run([sys.executable, "-c", code], check=True)


def _cli(command, args):
    """Run a runtime command the way the main group does, turning package errors into exit 2."""
    return CliRunner().invoke(VaeEdgeGroup(commands=[command]), [command.name, *map(str, args)])


def test_cli_sample_writes_png_and_npy(bundle_dir, tmp_path):
    result = _cli(sample, [bundle_dir, "-n", 6, "--seed", 0, "--backend", "onnx", "--mode", "int8", "-o", tmp_path / "s.png"])
    assert result.exit_code == 0, result.output
    with Image.open(tmp_path / "s.png") as picture:
        assert picture.size[0] > 28 * 3
    result = _cli(sample, [bundle_dir, "-n", 6, "--seed", 0, "--mode", "float32", "-o", tmp_path / "s.npy"])
    assert result.exit_code == 0, result.output
    np.testing.assert_allclose(np.load(tmp_path / "s.npy"), EdgeVAE.load(bundle_dir, *ONNX_FLOAT32).sample(6, seed=0), atol=1e-4)


def test_cli_reconstruct_score_and_interpolate_read_images_and_npy(bundle_dir, digits, tmp_path):
    files = []
    for i in range(2):  # 56x56 pictures, resized to the model's 28x28
        files.append(tmp_path / f"digit{i}.png")
        Image.fromarray((digits.test[i, ..., 0] * 255).astype(np.uint8)).resize((56, 56)).save(files[-1])
    np.save(tmp_path / "noise.npy", np.random.default_rng(0).random((3, 28, 28, 1), dtype=np.float32))
    result = _cli(reconstruct, [bundle_dir, *files, tmp_path / "noise.npy", "-o", tmp_path / "r.npy"])
    assert result.exit_code == 0, result.output
    assert np.load(tmp_path / "r.npy").shape == (5, 28, 28, 1)
    assert _cli(reconstruct, [bundle_dir, files[0], "-o", tmp_path / "r.png"]).exit_code == 0
    assert (tmp_path / "r.png").is_file()

    result = _cli(score, [bundle_dir, *files, tmp_path / "noise.npy"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith("threshold") and len(lines) == 6
    assert all("ANOMALY" in line for line in lines[3:]) and "noise.npy[2]" in lines[5]

    result = _cli(interpolate, [bundle_dir, files[0], files[1], "--steps", 5, "--method", "slerp", "-o", tmp_path / "i.npy"])
    assert result.exit_code == 0, result.output
    assert np.load(tmp_path / "i.npy").shape == (5, 28, 28, 1)


@pytest.mark.parametrize("args, expected", [
    (["-n", 0], "n must be a positive integer"),
    (["-o", "samples.jpg"], "must end in .png or .npy"),
    (["--mode", "int4"], "'int4' is not one of"),
    (["--backend", Format.ONNX, "--mode", next(m for m in MODES if m not in FORMATS[Format.ONNX].modes)],
     f"choose one of {', '.join(FORMATS[Format.ONNX].modes)}"),
], ids=["n", "suffix", "mode", "mode-of-another-backend"])
def test_cli_errors_are_one_line_with_exit_2(bundle_dir, tmp_path, args, expected):
    result = _cli(sample, [bundle_dir, "-o", tmp_path / "s.png", *args])
    assert result.exit_code == 2 and expected in result.output and "Traceback" not in result.output


def test_cli_missing_image_is_a_one_line_error(bundle_dir, tmp_path):
    result = _cli(score, [bundle_dir, tmp_path / "missing.png"])
    assert result.exit_code == 2 and "no such image" in result.output
