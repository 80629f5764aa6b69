"""`vae-edge verify`: every artifact against Keras, its typed report, its statistics and tolerances."""

import json

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from PIL import Image

from vae_edge.bundle import Bundle, sha256_of
from vae_edge.cli import main
from vae_edge.errors import BadInputError, IntegrityError, MissingFileError
from vae_edge.prior import prior_latents
from vae_edge.registry import DEFAULT_STATIC_BATCH, MODES, RUNTIME_FORMATS, Format, Graph, Mode, Target, targets
from vae_edge.runtime.engines import open_artifact
from vae_edge.signatures import RECONSTRUCTION, Z_LOG_VAR, Z_MEAN, Z
from vae_edge.verify import VerifyReport
from vae_edge.verify.results import ErrorStats
from vae_edge.verify.stats import compare, kind_of
from vae_edge.verify.tolerances import judge, judge_elbo, resolve


def rewrite_checksum(bundle, relative):
    manifest = json.loads((bundle / "manifest.json").read_text())
    for entry in manifest["artifacts"]:
        if entry["path"] == relative:
            entry["sha256"] = sha256_of(bundle / relative)
    (bundle / "manifest.json").write_text(json.dumps(manifest))


def verify(bundle, model, images):
    from vae_edge.verify import verify_bundle

    return verify_bundle(bundle, model, images, log=lambda m: None)


def test_export_verified_every_artifact_and_wrote_the_report(bundle_dir):
    report = VerifyReport.from_json(json.loads((bundle_dir / "verify.json").read_text()))
    bundle = Bundle(bundle_dir)
    assert report.passed
    assert {o.artifact for o in report.outputs} == {a.key for a in bundle.artifacts}
    assert [p.pipeline for p in report.pipelines] == [t.key for t in targets()]
    for pipeline in report.pipelines:
        assert pipeline.passed and pipeline.end_to_end.passed and pipeline.end_to_end.output == RECONSTRUCTION
        assert pipeline.pipeline == Target(Format(pipeline.format), Mode(pipeline.mode), pipeline.batch).key
    manifest = json.loads((bundle_dir / "manifest.json").read_text())
    assert manifest["verification"]["passed"]
    assert set(manifest["verification"]["pipelines"]) == {t.key for t in targets()}
    assert all(p["passed"] for p in manifest["verification"]["pipelines"].values())
    markdown = (bundle_dir / "verify.md").read_text()
    for artifact in bundle.artifacts:
        assert f"| {artifact.key} |" in markdown
    with Image.open(bundle_dir / "verify.png") as picture:
        assert picture.width > 200


def test_reported_errors_are_what_an_independent_run_measures(bundle_dir, trained_model, digits):
    """The decoder rows of verify.json, recomputed here from the recorded inputs with the engines and plain numpy."""
    report = VerifyReport.from_json(json.loads((bundle_dir / "verify.json").read_text()))
    bundle = Bundle(bundle_dir)
    seed, count = report.inputs["seed"], report.inputs["prior_latents"]
    latents = np.concatenate([prior_latents(count, trained_model.latent_dim, seed), trained_model.encode(digits.test)[0]])
    reference = np.asarray(trained_model.decode(latents), np.float64)
    rows = {(o.artifact, o.output): o for o in report.outputs}
    checked = 0
    for target in targets():
        if target.format not in RUNTIME_FORMATS:
            continue
        artifact = bundle.find(target, Graph.DECODER)
        error = np.abs(open_artifact(bundle, artifact).run({Z: latents})[RECONSTRUCTION] - reference)
        stats = rows[artifact.key, RECONSTRUCTION].stats
        assert stats.actual_shape == list(reference.shape)
        assert stats.max_abs == pytest.approx(error.max(), rel=1e-4, abs=1e-7), artifact.key
        assert stats.mean_abs == pytest.approx(error.mean(), rel=1e-4, abs=1e-8), artifact.key
        mse = np.mean(error**2, axis=(1, 2, 3))
        psnr = np.mean(np.minimum(10 * np.log10(1 / np.maximum(mse, 1e-300)), 200.0))
        assert stats.psnr_db == pytest.approx(psnr, rel=1e-3), artifact.key
        checked += 1
    assert checked == sum(1 for t in targets() if t.format in RUNTIME_FORMATS)


def test_weights_changed_after_export_fail_verification(bundle_copy, trained_model, digits):
    bundle = Bundle(bundle_copy)
    changed = Target(Format.ONNX, Mode.FLOAT32)
    relative = bundle.find(changed, Graph.DECODER).path
    model = onnx.load(str(bundle_copy / relative))
    weights = max(model.graph.initializer, key=lambda t: np.prod(t.dims))
    array = onnx.numpy_helper.to_array(weights) * 1.05
    weights.CopyFrom(onnx.numpy_helper.from_array(array.astype(np.float32), weights.name))
    onnx.save(model, str(bundle_copy / relative))
    rewrite_checksum(bundle_copy, relative)  # a broken export, not a tampered download
    report = verify(bundle_copy, trained_model, digits.test)
    assert not report.passed
    failed = {o.artifact for o in report.outputs if not o.passed}
    assert failed == {changed.artifact_key(Graph.DECODER)}  # its fixed-shape twin and the TFLite file still pass
    assert {p.pipeline for p in report.pipelines if not p.passed} == {changed.key}


def test_checksum_mismatch_names_the_file(bundle_copy, trained_model, digits):
    relative = Bundle(bundle_copy).find(Target(Format.TFLITE, Mode.FLOAT16, DEFAULT_STATIC_BATCH), Graph.ENCODER).path
    path = bundle_copy / relative
    path.write_bytes(path.read_bytes()[:-1] + b"\x00")
    with pytest.raises(IntegrityError, match=f"{path.name}: sha256 does not match"):
        verify(bundle_copy, trained_model, digits.test)


def test_missing_artifact_names_the_file(bundle_copy, trained_model, digits):
    relative = Bundle(bundle_copy).find(Target(Format.ONNX, Mode.INT8), Graph.ENCODER).path
    (bundle_copy / relative).unlink()
    with pytest.raises(MissingFileError, match=relative.split("/")[-1]):
        verify(bundle_copy, trained_model, digits.test)


def test_corrupt_file_is_a_clear_error_not_a_crash(bundle_copy, trained_model, digits):
    relative = Bundle(bundle_copy).find(Target(Format.TFLITE, Mode.INT8), Graph.DECODER).path
    (bundle_copy / relative).write_bytes(b"definitely not a flatbuffer" * 10)
    rewrite_checksum(bundle_copy, relative)
    with pytest.raises(BadInputError, match=f"{relative.split('/')[-1]}: LiteRT cannot load"):
        verify(bundle_copy, trained_model, digits.test)


def test_model_of_another_shape_is_refused(bundle_dir, digits):
    from vae_edge.model import VAE

    other = VAE.from_variant("micro", input_shape=(28, 28, 1), latent_dim=3)
    with pytest.raises(BadInputError, match="latent_dim"):
        verify(bundle_dir, other, digits.test)


def test_cli_exit_statuses(bundle_copy):
    from vae_edge.cli import main

    runner = CliRunner()
    passed = runner.invoke(main, ["verify", str(bundle_copy)])
    assert passed.exit_code == 0, passed.output
    assert "PASS" in passed.output
    failed = runner.invoke(main, ["verify", str(bundle_copy), "--tolerance", f"{Mode.FLOAT32}.max_abs=1e-12"])
    assert failed.exit_code == 1 and "FAIL" in failed.output
    bad = runner.invoke(main, ["verify", str(bundle_copy), "--tolerance", f"{Mode.FLOAT32}.speed=1"])
    assert bad.exit_code == 2 and "unknown tolerance" in bad.output
    missing = runner.invoke(main, ["verify", str(bundle_copy / "nope")])
    assert missing.exit_code == 2 and "no such bundle folder" in missing.output


def test_error_statistics_of_latents_and_images():
    latent = compare(np.array([[1.0, 0.0], [0.0, 1.0]]), np.array([[1.0, 0.0], [1.0, 1.0]]), "latent")
    assert (latent.max_abs, latent.mean_abs) == (1.0, 0.25)
    assert latent.p99_abs == pytest.approx(0.97)  # |errors| 0, 0, 0, 1: linear interpolation at 0.99 * 3
    assert latent.cosine == pytest.approx((1 + 1 / np.sqrt(2)) / 2) and latent.psnr_db is None
    reference = np.full((2, 2, 2, 1), 0.5)
    image = compare(reference, reference + np.array([0.1, 0.0]).reshape(2, 1, 1, 1), "image")
    assert image.psnr_db == pytest.approx((20.0 + 200.0) / 2)  # 10 log10(1 / 0.01), and identical images capped at 200
    mismatch = compare(np.zeros((2, 3)), np.zeros((3, 3)), "latent")
    assert not mismatch.shape_ok and (mismatch.reference_shape, mismatch.actual_shape) == ([2, 3], [3, 3])
    assert judge(mismatch, resolve(None)[Mode.FLOAT32]) == (False, "shape [3, 3] != [2, 3]")


def test_tolerances_default_to_the_registry_and_take_overrides():
    defaults = resolve(None)
    assert defaults == {str(mode): info.tolerance for mode, info in MODES.items()}
    assert resolve({f"{Mode.INT8}.min_psnr_db": 40})[Mode.INT8]["min_psnr_db"] == 40.0
    assert resolve({Mode.FLOAT16: {"max_abs": 0.5}})[Mode.FLOAT16]["max_abs"] == 0.5
    assert resolve(None) == defaults  # an override does not leak into the registry's defaults
    with pytest.raises(BadInputError, match="unknown tolerance float32.min_psnr_db"):
        resolve({f"{Mode.FLOAT32}.min_psnr_db": 1})
    for key, value in ((f"{Mode.INT8}.min_psnr_db", float("nan")), (f"{Mode.INT8}.min_cosine", 2.0),
                       (f"{Mode.FLOAT32}.max_abs", -1.0), (f"{Mode.INT8}.max_kl_change_nats", float("inf"))):
        with pytest.raises(BadInputError, match=f"tolerance {key} must be a finite number from"):
            resolve({key: value})


def test_log_variances_are_judged_by_what_they_do_to_the_posterior_not_by_cosine():
    """An untrained encoder's log-variances sit near 0, where one int8 step (0.078) ruins the cosine and
    changes each image's KL term by hundredths of a nat."""
    reference = np.random.default_rng(0).uniform(-0.1, 0.1, (64, 8))
    stepped = np.round(reference / 0.078) * 0.078
    log_var = compare(reference, stepped, kind_of(Z_LOG_VAR))
    assert log_var.cosine is None and 0 < log_var.kl_change_nats < resolve(None)[Mode.INT8]["max_kl_change_nats"]
    assert compare(reference, stepped, kind_of(Z_MEAN)).cosine < resolve(None)[Mode.INT8]["min_cosine"]
    assert judge(log_var, resolve(None)[Mode.INT8]) == (True, "KL change <= 0.1 nats")


@pytest.mark.parametrize("mode", MODES)
def test_each_mode_is_judged_on_its_own_criterion_at_its_boundary(mode):
    tolerance = resolve(None)[mode]
    if "max_abs" in tolerance:  # float modes: element by element
        limit = tolerance["max_abs"]
        at, over = (ErrorStats(True, [1], [1], max_abs=value, cosine=1.0) for value in (limit, limit * 1.01))
    else:  # integer modes: PSNR of images, cosine of latents, and the ELBO cost
        limit = tolerance["min_psnr_db"]
        at, over = (ErrorStats(True, [1], [1], max_abs=1.0, psnr_db=value) for value in (limit, limit * 0.99))
        assert judge(ErrorStats(True, [1], [1], max_abs=1.0, cosine=tolerance["min_cosine"] - 1e-3), tolerance)[0] is False
        kl = tolerance["max_kl_change_nats"]
        assert judge(ErrorStats(True, [1], [1], max_abs=1.0, kl_change_nats=kl), tolerance)[0] is True
        assert judge(ErrorStats(True, [1], [1], max_abs=1.0, kl_change_nats=kl * 1.01), tolerance)[0] is False
        assert judge_elbo(tolerance["max_elbo_increase_pct"], tolerance)[0] is True
        assert judge_elbo(tolerance["max_elbo_increase_pct"] + 0.01, tolerance)[0] is False
    assert judge(at, tolerance)[0] is True and judge(over, tolerance)[0] is False


def test_a_report_survives_its_json(bundle_dir):
    data = json.loads((bundle_dir / "verify.json").read_text())
    report = VerifyReport.from_json(data)
    assert isinstance(report.pipelines[0].end_to_end.stats, ErrorStats)
    assert report.to_json() == data


# --- runners apart from the comparator: saved inputs and outputs, judged again -----------------------------------


def test_a_subset_of_the_inputs_keeps_row_i_of_every_array_and_of_the_elbo_noise():
    from vae_edge.elbo import sampled_elbo_terms
    from vae_edge.verify.inputs import VerifyInputs

    rng = np.random.default_rng(0)
    images = rng.uniform(0, 1, (10, 4, 4, 1)).astype(np.float32)
    latents = rng.normal(size=(6 + 10, 3)).astype(np.float32)
    whole = VerifyInputs(images, latents, seed=5, num_prior=6, labels=np.arange(10) % 3,
                         latent_labels=np.r_[np.arange(6) % 3, np.arange(10) % 3])
    part = whole.subset(4)
    assert part.num_prior == 4 and np.array_equal(part.images, images[:4])
    assert np.array_equal(part.latents, np.concatenate([latents[:4], latents[6:10]]))
    assert np.array_equal(part.latent_labels, whole.latent_labels[[0, 1, 2, 3, 6, 7, 8, 9]])
    decode = lambda z: np.full((len(z), 4, 4, 1), 0.5, np.float32) * (1 + 0.1 * np.tanh(z[:, :1, None, None]))  # noqa: E731
    mean, log_var = rng.normal(size=(10, 3)), rng.normal(size=(10, 3)) * 0.1
    full = sampled_elbo_terms(images, mean, log_var, decode, "bce", np.random.default_rng(5))
    four = sampled_elbo_terms(images[:4], mean[:4], log_var[:4], decode, "bce", np.random.default_rng(5))
    np.testing.assert_array_equal(full[0][:4], four[0])


def test_inputs_and_outputs_survive_their_files(tmp_path):
    from vae_edge.verify.inputs import VerifyInputs
    from vae_edge.verify.outputs import PipelineOutputs, RunOutputs

    inputs = VerifyInputs(np.zeros((2, 3, 3, 1), np.float32), np.ones((4, 2), np.float32), 7, 2)
    back = VerifyInputs.load(inputs.save(tmp_path / "inputs.npz"))
    assert back.seed == 7 and back.labels is None and np.array_equal(back.latents, inputs.latents)
    run = RunOutputs("cortex-a53", {"cpu_class": "arm64", "emulated": True}, 2,
                     {"tflite/decoder/int8@b1": {RECONSTRUCTION: np.full((4, 3, 3, 1), 0.25, np.float32)}},
                     {"tflite/int8@b1": PipelineOutputs(*(np.arange(4.0).reshape(2, 2) for _ in range(2)),
                                                        np.zeros((2, 3, 3, 1)), np.ones(2), np.ones(2))})
    loaded = RunOutputs.load(run.save(tmp_path / "run.npz"))
    assert (loaded.runner, loaded.cpu, loaded.images) == ("cortex-a53", run.cpu, 2)
    key = "tflite/decoder/int8@b1"
    assert np.array_equal(loaded.artifacts[key][RECONSTRUCTION], run.artifacts[key][RECONSTRUCTION])
    assert np.array_equal(loaded.pipelines["tflite/int8@b1"].kl, np.ones(2))
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(BadInputError, match="not runner outputs"):
        RunOutputs.load(tmp_path / "bad.npz")


def test_saved_outputs_are_judged_again_under_new_tolerances_without_the_model(bundle_copy):
    result = CliRunner().invoke(main, ["verify", str(bundle_copy), "--rejudge"])
    assert result.exit_code == 0, result.output
    before = (bundle_copy / "verify" / "host.npz").read_bytes()
    strict = CliRunner().invoke(main, ["verify", str(bundle_copy), "--rejudge", "--tolerance", "int8.min_psnr_db=200"])
    assert strict.exit_code == 1 and "FAIL: on host" in strict.output
    verdict = strict.output.strip().splitlines()[-1]
    assert all(t.key in verdict for t in Bundle(bundle_copy).targets() if t.mode == Mode.INT8), verdict
    report = VerifyReport.from_json(json.loads((bundle_copy / "verify.json").read_text()))
    assert {p.pipeline for p in report.pipelines if not p.passed} == {t.key for t in Bundle(bundle_copy).targets()
                                                                     if t.mode == Mode.INT8}
    assert not Bundle(bundle_copy).manifest["verification"]["passed"]
    assert (bundle_copy / "verify" / "host.npz").read_bytes() == before  # nothing ran again


def test_outputs_captured_on_another_cpu_are_judged_beside_this_ones(bundle_copy, tmp_path):
    """A runner on another machine (here: this one, named as another CPU) writes outputs; verify judges them."""
    import subprocess
    import sys

    captured = tmp_path / "phone.npz"
    done = subprocess.run([sys.executable, "-m", "vae_edge.verify.runner", str(bundle_copy),
                           str(bundle_copy / "verify" / "inputs.npz"), str(captured), "phone", "--images", "8"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    result = CliRunner().invoke(main, ["verify", str(bundle_copy), "--outputs", str(captured)])
    assert result.exit_code == 0, result.output
    report = VerifyReport.from_json(json.loads((bundle_copy / "verify.json").read_text()))
    assert report.cpus["phone"].inputs["images"] == 8 and report.cpus["phone"].passed
    assert "phone" in (bundle_copy / "verify.md").read_text()
    assert Bundle(bundle_copy).manifest["verification"]["cpus"]["phone"]["passed"]


@pytest.mark.parametrize("argv, problem", [
    (["host"], "runner name 'host'"),
    (["../../elsewhere"], "runner name '../../elsewhere'"),
    (["phone", "--images", "0"], "'0' is not a positive whole number"),
])
def test_the_runner_refuses_a_name_or_count_it_cannot_save_in_one_line(bundle_dir, tmp_path, capsys, argv, problem):
    from vae_edge.verify.runner import main as runner_main

    out = tmp_path / "out.npz"
    with pytest.raises(SystemExit) as exited:
        runner_main([str(bundle_dir), str(bundle_dir / "verify" / "inputs.npz"), str(out), *argv])
    assert exited.value.code == 2 and not out.exists()
    error = capsys.readouterr().err.strip()
    assert problem in error and "Traceback" not in error


def _captured_like_host(bundle_copy, tmp_path, change):
    from vae_edge.verify.outputs import RunOutputs

    run = RunOutputs.load(bundle_copy / "verify" / "host.npz")
    run.runner = "phone"
    change(run)
    return run.save(tmp_path / "phone.npz")


def _drop_a_row(run):
    for pipeline in run.pipelines.values():
        pipeline.z_mean = pipeline.z_mean[1:]


@pytest.mark.parametrize("change, problem", [
    (lambda run: None, None),
    (lambda run: setattr(run, "pipelines", {f"tflite/imaginary-{key}": p for key, p in run.pipelines.items()}),
     "not this bundle's files"),
    (lambda run: setattr(run, "images", 10**6), "not this bundle's files"),
    (_drop_a_row, "not one row per image"),
    (lambda run: setattr(run, "runner", "inputs"), "runner name 'inputs'"),
])
def test_captured_outputs_are_checked_against_the_bundle_and_its_inputs(bundle_copy, tmp_path, change, problem):
    captured = _captured_like_host(bundle_copy, tmp_path, change)
    before = sorted(path.name for path in (bundle_copy / "verify").iterdir())
    result = CliRunner().invoke(main, ["verify", str(bundle_copy), "--outputs", str(captured)])
    if problem is None:  # the host's own outputs under another name: accepted, and judged as passing
        assert result.exit_code == 0, result.output
        assert Bundle(bundle_copy).manifest["verification"]["cpus"]["phone"]["passed"]
        return
    assert result.exit_code == 2 and problem in result.output, result.output
    assert sorted(path.name for path in (bundle_copy / "verify").iterdir()) == before


def test_verify_refuses_a_bundle_another_process_is_writing(bundle_copy):
    from vae_edge.fsutil import exclusive_lock

    with exclusive_lock(bundle_copy):
        result = CliRunner().invoke(main, ["verify", str(bundle_copy), "--rejudge"])
    assert result.exit_code == 2 and "being written by another vae-edge process" in result.output
    assert CliRunner().invoke(main, ["verify", str(bundle_copy), "--rejudge"]).exit_code == 0  # released


def test_golden_vectors_hold_the_keras_outputs_and_a_tolerance_per_file(bundle_dir, trained_model):
    golden = json.loads((bundle_dir / "golden" / "golden.json").read_text())
    z_entry = golden["graphs"]["decoder"]["inputs"][Z]
    z = np.fromfile(bundle_dir / "golden" / z_entry["file"], dtype="<f4").reshape(z_entry["shape"])
    np.testing.assert_allclose(z, prior_latents(len(z), trained_model.latent_dim, golden["prior_seed"]), atol=1e-7)
    out = golden["graphs"]["decoder"]["outputs"][RECONSTRUCTION]
    expected = np.fromfile(bundle_dir / "golden" / out["file"], dtype="<f4").reshape(out["shape"])
    np.testing.assert_allclose(expected, trained_model.decode(z), atol=1e-5)
    bundle = Bundle(bundle_dir)
    files = golden["files"]
    assert {a.path for a in bundle.artifacts if a.format != Format.SAVEDMODEL} == set(files)
    for artifact in bundle.artifacts:
        if artifact.path in files and artifact.graph == Graph.DECODER:
            actual = open_artifact(bundle, artifact).run({Z: z})[RECONSTRUCTION]
            assert np.abs(actual - expected).max() <= files[artifact.path]["max_abs"][RECONSTRUCTION], artifact.key


def test_the_runtime_picks_a_mode_verified_for_the_cpu_it_runs_on(tmp_path):
    from vae_edge.cpu import CpuClass
    from vae_edge.runtime.edge import default_mode, verified_here

    def pipeline(key, passed):
        return {key: {"passed": passed, "negative_elbo": 1.0, "elbo_increase_pct": 0.0, "psnr_db": 30.0,
                      "anomaly_threshold": 1.0}}

    artifacts = [{"path": f"onnx/{g}.{m}.onnx", "format": "onnx", "graph": g, "mode": m, "signature": "", "inputs": [],
                  "outputs": [], "size_bytes": 1 if m == Mode.INT8 else 4, "sha256": ""}
                 for g in Graph for m in (Mode.FLOAT32, Mode.INT8)]
    manifest = {"schema_version": 1, "model": {"input_shape": [2, 2, 1], "latent_dim": 2, "reconstruction_loss": "bce"},
                "anomaly": {"threshold": 1.0}, "artifacts": artifacts,
                "quantization": {"onnx_int8": {"cpu_class": "vnni", "settings": {
                    "format": "qdq", "activations": "uint8", "weights": "int8", "reduce_range": False,
                    "per_channel": True, "calibration": "percentile", "float_head": True}}},
                "verification": {"passed": True, "cpu_class": "vnni",
                                 "pipelines": {**pipeline("onnx/float32", True), **pipeline("onnx/int8", True)},
                                 "cpus": {"cortex-a53": {"cpu_class": "arm64", "pipelines": pipeline("onnx/int8", False)}}}}
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    bundle = Bundle(tmp_path)
    int8 = Target(Format.ONNX, Mode.INT8)
    assert verified_here(bundle, int8, CpuClass.VNNI) and default_mode(bundle, Format.ONNX, CpuClass.VNNI) == Mode.INT8
    assert not verified_here(bundle, int8, CpuClass.AVX2)  # made for VNNI: saturates without it
    assert not verified_here(bundle, int8, CpuClass.ARM64)  # failed where it was checked
    assert verified_here(bundle, int8, CpuClass.ARM64_DOTPROD)  # not checked there, and nothing says it differs
    assert default_mode(bundle, Format.ONNX, CpuClass.ARM64) == Mode.FLOAT32
    manifest["verification"]["pipelines"] = pipeline("onnx/float32", False)
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BadInputError, match="no onnx mode passed verification for this CPU"):
        default_mode(Bundle(tmp_path), Format.ONNX, CpuClass.ARM64)
