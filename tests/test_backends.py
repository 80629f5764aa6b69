"""Keras backends: choosing one, refusing a missing or conflicting one, training on JAX in its
own process, JAX-trained `.keras` files loading under TensorFlow, and data-parallel JAX.

The test process itself runs Keras on TensorFlow, so every JAX run is a subprocess.
"""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from vae_edge import backend
from vae_edge.cli import main
from vae_edge.errors import BadInputError

VAE_EDGE = str(Path(sys.executable).with_name("vae-edge"))


@pytest.fixture
def every_package_installed(monkeypatch):
    monkeypatch.setattr(backend.importlib.util, "find_spec", lambda name: object())


def test_missing_backend_package_names_the_extra(monkeypatch):
    monkeypatch.setattr(backend.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(BadInputError, match=r"the torch backend needs the torch package: pip install 'vae-edge\[torch\]'"):
        backend.select_backend("torch")


def test_backend_cannot_change_once_keras_is_loaded(every_package_installed, monkeypatch):
    import keras

    monkeypatch.setenv(backend.ENV, "tensorflow")
    assert keras.backend.backend() == "tensorflow"
    with pytest.raises(BadInputError, match="already loaded with the tensorflow backend.*KERAS_BACKEND=jax"):
        backend.select_backend("jax")
    assert backend.select_backend("tensorflow") == backend.Backend.TENSORFLOW


def test_unknown_keras_backend_variable_is_a_clear_error(monkeypatch):
    monkeypatch.setenv(backend.ENV, "numpyy")
    with pytest.raises(BadInputError, match="KERAS_BACKEND='numpyy' is not a backend; use one of: tensorflow, jax, torch"):
        backend.requested_backend()


def test_export_commands_switch_a_jax_shell_to_tensorflow(monkeypatch):
    monkeypatch.setenv(backend.ENV, "jax")
    monkeypatch.setattr(backend, "loaded_backend", lambda: None)  # as in a fresh `vae-edge export`
    backend.require_tensorflow_backend("export")
    assert os.environ[backend.ENV] == "tensorflow"


def test_export_in_a_process_whose_keras_runs_jax_is_refused_in_one_line(monkeypatch):
    monkeypatch.setattr(backend, "loaded_backend", lambda: "jax")
    with pytest.raises(BadInputError, match="export needs Keras on the TensorFlow backend, but this process loaded it with jax"):
        backend.require_tensorflow_backend("export")


def test_train_with_a_missing_backend_is_one_line_and_exit_2(monkeypatch, tmp_path):
    monkeypatch.setattr(backend.importlib.util, "find_spec", lambda name: None if name == "torch" else object())
    result = CliRunner().invoke(main, ["train", "--backend", "torch", "--out", str(tmp_path / "run")])
    assert result.exit_code == 2
    expected = "Error: the torch backend needs the torch package: pip install 'vae-edge[torch]'"
    assert result.output.strip().splitlines() == [expected]
    assert not (tmp_path / "run").exists()


def _run(command: list[str], env: dict | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    done = subprocess.run(command, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})},
                          capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return done


@pytest.fixture(scope="module")
def jax_run(tmp_path_factory):
    """`vae-edge train --backend jax` in its own process, then the trained model's weights and
    outputs as JAX computes them, dumped by a second JAX process."""
    pytest.importorskip("jax")
    folder = tmp_path_factory.mktemp("jax")
    run = folder / "run"
    env = {k: v for k, v in os.environ.items() if k != backend.ENV}  # --backend alone must choose JAX
    done = subprocess.run([VAE_EDGE, "train", "--backend", "jax", "--variant", "micro", "--latent-dim", "4", "--epochs", "2",
                           "--max-samples", "200", "--out", str(run)], env={**env, "TF_CPP_MIN_LOG_LEVEL": "3"},
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    dump = textwrap.dedent(f"""
        import keras, numpy as np
        import vae_edge.model
        from vae_edge.data import load_dataset
        model = keras.models.load_model({str(run / "model.keras")!r})
        images = load_dataset("mnist-5k", max_samples=200, seed=0).test[:8]
        z_mean, z_log_var = model.encode(images)
        weights = {{f"w{{i}}": keras.ops.convert_to_numpy(w) for i, w in enumerate(model.weights)}}
        np.savez({str(folder / "jax.npz")!r}, z_mean=z_mean, z_log_var=z_log_var, decoded=model.decode(z_mean),
                 samples=model.sample(4, seed=1), **weights)
        print(keras.backend.backend())
    """)
    assert _run([sys.executable, "-c", dump], {backend.ENV: "jax"}).stdout.strip().endswith("jax")
    return run, dict(np.load(folder / "jax.npz")), done.stdout


@pytest.mark.slow
def test_training_on_jax_writes_a_complete_run_and_logs_one_line_per_epoch(jax_run):
    run, _, stdout = jax_run
    history = json.loads((run / "history.json").read_text())
    assert history["backend"] == "jax" and history["devices"] == 1 and history["per_device_batch"] == 32
    assert len(history["history"]["loss"]) == 2 and history["history"]["loss"][1] < history["history"]["loss"][0]
    assert json.loads((run / "train_config.json").read_text())["backend"] == "jax"
    assert "training micro on jax, 1 device(s)" in stdout
    # one line per epoch in a pipe, no carriage-return progress bars
    assert "\r" not in stdout and sum(line.startswith("Epoch ") for line in stdout.splitlines()) == 2


@pytest.mark.slow
def test_a_jax_trained_model_loads_under_tensorflow_with_the_same_weights_and_outputs(jax_run):
    import keras

    from vae_edge.data import load_dataset

    run, jax_out, _ = jax_run
    assert keras.backend.backend() == "tensorflow"
    model = keras.models.load_model(run / "model.keras")
    for i, weight in enumerate(model.weights):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(weight), jax_out[f"w{i}"])
    images = load_dataset("mnist-5k", max_samples=200, seed=0).test[:8]
    z_mean, z_log_var = model.encode(images)
    # same weights, different convolution kernels: equal up to float32 rounding
    np.testing.assert_allclose(z_mean, jax_out["z_mean"], atol=1e-5)
    np.testing.assert_allclose(z_log_var, jax_out["z_log_var"], atol=1e-5)
    np.testing.assert_allclose(model.decode(jax_out["z_mean"]), jax_out["decoded"], atol=1e-5)
    np.testing.assert_allclose(model.sample(4, seed=1), jax_out["samples"], atol=1e-5)


DATA_PARALLEL = """
import json
from vae_edge.train import TrainConfig, train
curves = {}
for devices in (1, 2):
    result = train(TrainConfig(variant="micro", latent_dim=4, epochs=2, batch_size=32, max_samples=160, seed=0,
                               devices=devices), f"{out}/d{devices}", verbose=0, log=lambda _: None)
    history = json.load(open(f"{out}/d{devices}/history.json"))
    curves[devices] = {"loss": result.history["loss"], "val_loss": result.history["val_loss"],
                       "devices": history["devices"], "per_device_batch": history["per_device_batch"]}
print(json.dumps(curves))
"""


@pytest.mark.slow
def test_two_devices_follow_the_one_device_loss_curve(tmp_path):
    pytest.importorskip("jax")
    done = _run([sys.executable, "-c", f"out = {str(tmp_path)!r}\n" + DATA_PARALLEL],
                {backend.ENV: "jax", "XLA_FLAGS": "--xla_force_host_platform_device_count=2"})
    curves = json.loads(done.stdout.strip().splitlines()[-1])
    one, two = curves["1"], curves["2"]
    assert (one["devices"], one["per_device_batch"]) == (1, 32)
    assert (two["devices"], two["per_device_batch"]) == (2, 16)
    # the same steps on the same global batches; only the order of float sums differs
    np.testing.assert_allclose(two["loss"], one["loss"], rtol=1e-3)
    np.testing.assert_allclose(two["val_loss"], one["val_loss"], rtol=1e-3)


@pytest.mark.slow
def test_a_jax_trained_model_exports_and_verifies_from_a_jax_shell(jax_run, tmp_path):
    """The cross-backend path as a user runs it: KERAS_BACKEND=jax in the shell, one export command."""
    run, _, _ = jax_run
    bundle = tmp_path / "bundle"
    done = subprocess.run([VAE_EDGE, "export", str(run / "model.keras"), "--format", "tflite", "--format", "onnx",
                           "--quantize", "float32", "--quantize", "int8", "--out", str(bundle)],
                          env={**os.environ, backend.ENV: "jax"}, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["verification"]["passed"] and manifest["model"]["trained_precision"] == "float32"
    assert {(a["format"], a["mode"]) for a in manifest["artifacts"]} >= {("tflite", "int8"), ("onnx", "float32")}


def test_nearest_upsampling_gives_the_same_pixels_on_jax(tmp_path):
    """The decoder's upsampling is a repeat on JAX and DEPTH_TO_SPACE on TensorFlow: the same pixels."""
    pytest.importorskip("jax")
    import keras

    from tests.test_model import UPSAMPLINGS
    from vae_edge.model.layers import NearestUpsampling

    script = textwrap.dedent(f"""
        import numpy as np
        from vae_edge.model.layers import NearestUpsampling
        x = np.random.default_rng(0).random((2, 16, 9, 3), dtype=np.float32)
        np.savez({str(tmp_path / "jax.npz")!r}, **{{f"{{h}}x{{w}}": np.asarray(NearestUpsampling(h, w)(x[:, :i, :j]))
                                                 for (i, j), (h, w) in {UPSAMPLINGS!r}}})
    """)
    _run([sys.executable, "-c", script], {backend.ENV: "jax"})
    on_jax = np.load(tmp_path / "jax.npz")
    x = np.random.default_rng(0).random((2, 16, 9, 3), dtype=np.float32)
    for (i, j), (h, w) in UPSAMPLINGS:
        on_tf = keras.ops.convert_to_numpy(NearestUpsampling(h, w)(x[:, :i, :j]))
        np.testing.assert_array_equal(on_jax[f"{h}x{w}"], on_tf)
