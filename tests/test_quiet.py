"""A quiet terminal: commands run without a TTY (as in CI or a log file) print no native start-up or
converter chatter on stderr, and `--verbose` brings it back."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

VAE_EDGE = str(Path(sys.executable).with_name("vae-edge"))
CHATTER = ("cpu_feature_guard", "oneDNN", "absl::InitializeLog", "I0000", "W0000", "fully_quantize", "XNNPACK delegate",
           "Collecting tensor data", "histogram", "Created config")


def run(args: list[str]) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "VAE_EDGE_VERBOSE")}
    return subprocess.run([VAE_EDGE, *args], stdin=subprocess.DEVNULL, capture_output=True, text=True, env=env, timeout=900)


@pytest.fixture(scope="module")
def quiet_export(trained_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("quiet") / "bundle"
    return run(["export", str(trained_run / "model.keras"), "--format", "tflite", "--format", "onnx", "--format", "ort",
                "--quantize", "int8",
                "--static-batch", "0", "--no-verify", "--out", str(out)]), out


def test_export_without_a_tty_has_no_native_or_quantizer_chatter(quiet_export):
    done, out = quiet_export
    assert done.returncode == 0, done.stderr[-2000:]
    assert (out / "manifest.json").is_file()
    for stream in (done.stderr, done.stdout):  # onnxruntime's calibration prints to stdout
        assert not [line for line in stream.splitlines() if any(word in line for word in CHATTER)], stream[-2000:]


def test_sample_is_quiet_and_verbose_brings_the_logs_back(quiet_export, tmp_path):
    _, bundle = quiet_export
    quiet = run(["sample", str(bundle), "-n", "2", "-o", str(tmp_path / "q.png")])
    loud = run(["--verbose", "sample", str(bundle), "-n", "2", "-o", str(tmp_path / "l.png")])
    assert quiet.returncode == loud.returncode == 0, quiet.stderr + loud.stderr
    assert "XNNPACK delegate" not in quiet.stderr and "XNNPACK delegate" in loud.stderr
