"""`vae-edge verify`: every artifact against Keras, its typed report, its statistics and tolerances."""

import json

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from PIL import Image

from vae_edge.bundle import Bundle, sha256_of
from vae_edge.errors import BadInputError, IntegrityError, MissingFileError
from vae_edge.prior import prior_latents
from vae_edge.registry import DEFAULT_STATIC_BATCH, MODES, RUNTIME_FORMATS, Format, Graph, Mode, Target, targets
from vae_edge.runtime.engines import open_artifact
from vae_edge.signatures import RECONSTRUCTION, Z
from vae_edge.verify import VerifyReport
from vae_edge.verify.results import ErrorStats
from vae_edge.verify.stats import compare
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
        assert judge_elbo(tolerance["max_elbo_increase_pct"], tolerance)[0] is True
        assert judge_elbo(tolerance["max_elbo_increase_pct"] + 0.01, tolerance)[0] is False
    assert judge(at, tolerance)[0] is True and judge(over, tolerance)[0] is False


def test_a_report_survives_its_json(bundle_dir):
    data = json.loads((bundle_dir / "verify.json").read_text())
    report = VerifyReport.from_json(data)
    assert isinstance(report.pipelines[0].end_to_end.stats, ErrorStats)
    assert report.to_json() == data


def test_a_pipeline_call_repeated_with_the_same_arrays_runs_the_engine_once():
    from vae_edge.verify.runner import repeat_last

    calls = []
    twice = repeat_last(lambda x, labels=None: calls.append(x) or x * 2)
    images = np.ones((3, 2))
    first = twice(images)
    assert twice(images) is first and len(calls) == 1
    assert np.array_equal(twice(images.copy()), first) and len(calls) == 2  # equal values, another array: run again
    twice(images, None)
    assert len(calls) == 3  # other arguments: run again
