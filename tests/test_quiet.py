"""A quiet terminal: commands run without a TTY (as in CI or a log file) print no native start-up or
converter chatter on stderr, and `--verbose` brings it back.

Every command here runs with `TF_ENABLE_ONEDNN_OPTS=1`: TensorFlow turns oneDNN on by default only on
some CPUs (AVX-512 VNNI, AMX), and only then logs its oneDNN line while loading, before its own log level
applies (`vae_edge.logs`), so without it these tests would pass on an AVX2 machine whatever happened.
"""

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

VAE_EDGE = str(Path(sys.executable).with_name("vae-edge"))
CHATTER = ("cpu_feature_guard", "oneDNN", "absl::InitializeLog", "fully_quantize", "XNNPACK delegate",
           "Collecting tensor data", "histogram", "Created config")
NATIVE_LOG_LINE = re.compile(r"^[IWEF]\d{4} \d\d:\d\d:\d\d")  # Abseil/glog: severity, month and day, time
ONEDNN_LINE = "oneDNN custom operations are on"


def quiet_env(**extra: str) -> dict:
    """This environment without the settings that change how much is logged, and with oneDNN on."""
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "VAE_EDGE_VERBOSE")}
    return {**env, "TF_ENABLE_ONEDNN_OPTS": "1", **extra}


def run(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([VAE_EDGE, *args], stdin=subprocess.DEVNULL, capture_output=True, text=True, env=quiet_env(),
                          timeout=900)


def chatter(stream: str) -> list[str]:
    return [line for line in stream.splitlines() if NATIVE_LOG_LINE.match(line) or any(word in line for word in CHATTER)]


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
        assert not chatter(stream), stream[-2000:]


def test_sample_is_quiet_and_verbose_brings_the_logs_back(quiet_export, tmp_path):
    _, bundle = quiet_export
    quiet = run(["sample", str(bundle), "-n", "2", "-o", str(tmp_path / "q.png")])
    loud = run(["--verbose", "sample", str(bundle), "-n", "2", "-o", str(tmp_path / "l.png")])
    assert quiet.returncode == loud.returncode == 0, quiet.stderr + loud.stderr
    assert "XNNPACK delegate" not in quiet.stderr and "XNNPACK delegate" in loud.stderr


@pytest.mark.slow
def test_training_without_a_tty_has_no_native_chatter(tmp_path):
    done = run(["train", "--variant", "micro", "--epochs", "1", "--max-samples", "200", "--out", str(tmp_path / "run")])
    assert done.returncode == 0, done.stderr[-2000:]
    assert "best validation loss" in done.stdout
    for stream in (done.stderr, done.stdout):
        assert not chatter(stream), stream[-2000:]


# A process of ours quieted as the CLI is, asking for TensorFlow in a spawned child (`call_in_backend`
# starts one when Keras must run on another backend than this process's).
IN_A_CHILD = textwrap.dedent("""
    from vae_edge.logs import quiet_libraries
    from vae_edge.train.backend import Backend, call_in_backend
    from vae_edge.train.devices import list_devices

    quiet_libraries()
    print(call_in_backend(Backend.TENSORFLOW, list_devices))
""")


@pytest.mark.parametrize("verbose", [False, True], ids=["quiet", "verbose"])
def test_a_training_child_is_as_quiet_as_its_parent_and_verbose_brings_tensorflow_logs_back(verbose):
    env = quiet_env(KERAS_BACKEND="jax", **({"VAE_EDGE_VERBOSE": "1"} if verbose else {}))  # jax: a TensorFlow child
    done = subprocess.run([sys.executable, "-c", IN_A_CHILD], stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "cpu:0" in done.stdout  # the child loaded TensorFlow and answered
    if verbose:
        assert ONEDNN_LINE in done.stderr, done.stderr[-2000:]
    else:
        assert not chatter(done.stderr), done.stderr[-2000:]
