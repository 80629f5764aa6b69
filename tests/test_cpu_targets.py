"""Verified on the CPUs the files will run on: a small bundle verified on this machine, as an ARM64 core and
as an x86 without AVX-512 (qemu user-mode emulation, tests/test_emulation.py sets it up), judged by the same
comparator, with the results per CPU in verify.md, verify.json and the manifest."""

import json

import numpy as np
import pytest

from vae_edge.bundle import Bundle
from vae_edge.cpu import CpuClass
from vae_edge.registry import Format, Mode, Target
from vae_edge.verify import VerifyReport
from vae_edge.verify.inputs import VerifyInputs
from vae_edge.verify.outputs import RunOutputs

TARGETS = ("cortex-a53", "haswell")


@pytest.fixture(scope="module")
def verified_elsewhere(trained_run, digits, tmp_path_factory, environments):
    """float32 and int8 of TFLite and ONNX, the ONNX int8 quantized for VNNI (full-range weights), verified here
    and on both targets; returns the bundle and the export's error (None when everything passed everywhere)."""
    from vae_edge.errors import VerificationFailed
    from vae_edge.export import ExportOptions, export_bundle
    from vae_edge.model.source import load_graphs

    for name in TARGETS:  # set up first: where emulation cannot run, a skip (a failure under CI)
        environments(name)
    out = tmp_path_factory.mktemp("cpus") / "bundle"
    options = ExportOptions(formats=(Format.TFLITE, Format.ONNX), modes=(Mode.FLOAT32, Mode.INT8), static_batch=None,
                            calibration_samples=32, onnx_int8_target=CpuClass.VNNI, cpus=TARGETS)
    try:
        export_bundle(load_graphs(trained_run / "model.keras"), out, calibration_images=digits.train,
                      heldout_images=digits.test, options=options, log=lambda message: None)
        error = None
    except VerificationFailed as failed:
        error = failed
    return out, error


@pytest.mark.slow
def test_each_target_is_judged_and_recorded_per_cpu(verified_elsewhere):
    folder, _ = verified_elsewhere
    report = VerifyReport.from_json(json.loads((folder / "verify.json").read_text()))
    assert set(report.cpus) == set(TARGETS)
    assert {name: other.cpu["cpu_class"] for name, other in report.cpus.items()} == {"cortex-a53": "arm64",
                                                                                     "haswell": "avx2"}
    assert all(other.cpu["emulated"] and other.inputs["images"] == 16 for other in report.cpus.values())
    recorded = Bundle(folder).manifest["verification"]["cpus"]
    assert set(recorded) == set(TARGETS) and recorded["cortex-a53"]["cpu_class"] == "arm64"
    markdown = (folder / "verify.md").read_text()
    assert "Per CPU" in markdown and "cortex-a53 (arm64, emulated)" in markdown and "haswell (avx2, emulated)" in markdown


@pytest.mark.slow
def test_float32_and_litert_int8_give_this_machines_numbers_on_every_cpu(verified_elsewhere):
    folder, _ = verified_elsewhere
    host = RunOutputs.load(folder / "verify" / "host.npz")
    inputs = VerifyInputs.load(folder / "verify" / "inputs.npz")
    for name in TARGETS:
        other = RunOutputs.load(folder / "verify" / f"{name}.npz")
        rows = {"encoder": np.arange(other.images), "decoder": inputs.latent_rows(other.images)}
        for key, outputs in other.artifacts.items():
            for output, values in outputs.items():
                difference = np.abs(values - host.artifacts[key][output][rows[key.split("/")[1]]]).max()
                if Mode.FLOAT32 in key:
                    assert difference < 1e-5, (name, key, output, difference)
                elif key.startswith(Format.TFLITE):  # LiteRT's integer kernels are exact everywhere
                    assert difference < 1e-5, (name, key, output, difference)
        verdicts = {p.pipeline: p.passed for p in VerifyReport.from_json(
            json.loads((folder / "verify.json").read_text())).cpus[name].pipelines}
        assert verdicts[Target(Format.TFLITE, Mode.FLOAT32).key] and verdicts[Target(Format.TFLITE, Mode.INT8).key]


@pytest.mark.slow
def test_the_vnni_onnx_file_on_the_avx2_profile_is_reported_as_it_is(verified_elsewhere):
    """Full-range int8 weights are for VNNI: on Haswell, VPMADDUBSW saturates, and the report shows it."""
    folder, error = verified_elsewhere
    haswell = RunOutputs.load(folder / "verify" / "haswell.npz")
    arm = RunOutputs.load(folder / "verify" / "cortex-a53.npz")
    key = Target(Format.ONNX, Mode.INT8).key
    # Full-range weights saturate VPMADDUBSW (AVX2) and not ARM's kernels: the same file, two results (and this
    # machine gives one of them, whichever class it is).
    assert np.abs(haswell.pipelines[key].reconstruction - arm.pipelines[key].reconstruction).max() > 1e-3
    report = VerifyReport.from_json(json.loads((folder / "verify.json").read_text()))
    on_haswell = next(p for p in report.cpus["haswell"].pipelines if p.pipeline == key)
    assert f"{on_haswell.elbo_increase_pct:+.3f}%" in (folder / "verify.md").read_text()  # reported as it is
    if not on_haswell.passed:  # the export then says so, and the runtime will not pick it on AVX2
        assert error is not None and "haswell" in str(error)


@pytest.mark.slow
def test_the_runtime_runs_what_was_verified_for_its_cpu(verified_elsewhere):
    from vae_edge.runtime.edge import verified_here

    bundle = Bundle(verified_elsewhere[0])
    int8 = Target(Format.ONNX, Mode.INT8)
    verification = bundle.manifest["verification"]
    on_avx2 = next(record for record in (verification, *verification["cpus"].values())  # the host first, if AVX2
                   if record["cpu_class"] == CpuClass.AVX2)
    assert verified_here(bundle, int8, CpuClass.AVX2) == on_avx2["pipelines"][int8.key]["passed"]  # checked there
    assert verified_here(bundle, Target(Format.TFLITE, Mode.INT8), CpuClass.ARM64)


def test_an_unknown_cpu_target_is_one_line_naming_the_known_ones(tmp_path):
    from click.testing import CliRunner

    from vae_edge.cli import main

    done = CliRunner().invoke(main, ["verify", str(tmp_path), "--cpu", "pentium"])
    assert done.exit_code == 2 and "'pentium' is not one of" in done.output and "cortex-a53" in done.output
    assert len(done.output.strip().splitlines()) == 1
