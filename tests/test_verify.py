import json

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from PIL import Image

from vae_edge.bundle import sha256_of
from vae_edge.cli import main
from vae_edge.errors import BadInputError, IntegrityError, MissingFileError
from vae_edge.model import VAE
from vae_edge.verify import verify_bundle
from vae_edge.verify.stats import compare
from vae_edge.verify.tolerances import resolve


def rewrite_checksum(bundle, relative):
    manifest = json.loads((bundle / "manifest.json").read_text())
    for entry in manifest["artifacts"]:
        if entry["path"] == relative:
            entry["sha256"] = sha256_of(bundle / relative)
    (bundle / "manifest.json").write_text(json.dumps(manifest))


def test_export_verified_every_artifact_and_wrote_the_report(bundle_dir):
    report = json.loads((bundle_dir / "verify.json").read_text())
    assert report["passed"]
    assert {r["artifact"] for r in report["outputs"]} >= {"tflite/decoder/int8-io", "onnx/encoder/int8", "savedmodel/encoder/float32"}
    assert len(report["pipelines"]) == 8
    for row in report["outputs"]:
        assert row["max_abs"] == row["min_atol"] and row["p99_abs"] <= row["max_abs"]
    manifest = json.loads((bundle_dir / "manifest.json").read_text())
    assert manifest["verification"]["passed"] and manifest["verification"]["pipelines"]["tflite/int8"]["passed"]
    assert "| tflite/decoder/float16 | reconstruction |" in (bundle_dir / "verify.md").read_text()
    with Image.open(bundle_dir / "verify.png") as picture:
        assert picture.width > 200


def test_weights_changed_after_export_fail_verification(bundle_copy, trained_model, digits):
    relative = "onnx/decoder.float32.onnx"
    model = onnx.load(str(bundle_copy / relative))
    weights = max(model.graph.initializer, key=lambda t: np.prod(t.dims))
    array = onnx.numpy_helper.to_array(weights) * 1.05
    weights.CopyFrom(onnx.numpy_helper.from_array(array.astype(np.float32), weights.name))
    onnx.save(model, str(bundle_copy / relative))
    rewrite_checksum(bundle_copy, relative)  # a broken export, not a tampered download
    report = verify_bundle(bundle_copy, trained_model, digits.test, log=lambda m: None)
    assert not report["passed"]
    failed = {r["artifact"] for r in report["outputs"] if not r["passed"]}
    assert "onnx/decoder/float32" in failed and "tflite/decoder/float32" not in failed


def test_checksum_mismatch_names_the_file(bundle_copy, trained_model, digits):
    path = bundle_copy / "tflite/encoder.float16.tflite"
    path.write_bytes(path.read_bytes()[:-1] + b"\x00")
    with pytest.raises(IntegrityError, match="encoder.float16.tflite: sha256 does not match"):
        verify_bundle(bundle_copy, trained_model, digits.test, log=lambda m: None)


def test_missing_artifact_names_the_file(bundle_copy, trained_model, digits):
    (bundle_copy / "onnx/encoder.int8.onnx").unlink()
    with pytest.raises(MissingFileError, match="encoder.int8.onnx"):
        verify_bundle(bundle_copy, trained_model, digits.test, log=lambda m: None)


def test_corrupt_file_is_a_clear_error_not_a_crash(bundle_copy, trained_model, digits):
    relative = "tflite/decoder.int8.tflite"
    (bundle_copy / relative).write_bytes(b"definitely not a flatbuffer" * 10)
    rewrite_checksum(bundle_copy, relative)
    with pytest.raises(BadInputError, match="decoder.int8.tflite: LiteRT cannot load"):
        verify_bundle(bundle_copy, trained_model, digits.test, log=lambda m: None)


def test_model_of_another_shape_is_refused(bundle_dir, digits):
    other = VAE.from_variant("micro", input_shape=(28, 28, 1), latent_dim=3)
    with pytest.raises(BadInputError, match="latent_dim"):
        verify_bundle(bundle_dir, other, digits.test, log=lambda m: None)


def test_cli_exit_statuses(bundle_copy):
    runner = CliRunner()
    passed = runner.invoke(main, ["verify", str(bundle_copy)])
    assert passed.exit_code == 0, passed.output
    assert "PASS" in passed.output
    failed = runner.invoke(main, ["verify", str(bundle_copy), "--tolerance", "float32.max_abs=1e-12"])
    assert failed.exit_code == 1 and "FAIL" in failed.output
    bad = runner.invoke(main, ["verify", str(bundle_copy), "--tolerance", "float32.speed=1"])
    assert bad.exit_code == 2 and "unknown tolerance" in bad.output
    missing = runner.invoke(main, ["verify", str(bundle_copy / "nope")])
    assert missing.exit_code == 2 and "no such bundle folder" in missing.output


def test_statistics_and_tolerance_overrides():
    stats = compare(np.zeros((2, 4)), np.array([[0, 0, 0, 0.5], [0, 0, 0, 0]]), "latent")
    assert stats["max_abs"] == 0.5 and stats["median_abs"] == 0.0 and stats["mean_abs"] == pytest.approx(0.0625)
    assert not compare(np.zeros((2, 3)), np.zeros((3, 3)), "image")["shape_ok"]
    assert resolve({"int8.min_psnr_db": 40})["int8"]["min_psnr_db"] == 40.0
    assert resolve({"float16": {"max_abs": 0.5}})["float16"]["max_abs"] == 0.5
