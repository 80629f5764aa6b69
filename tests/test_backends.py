"""Keras backends: choosing one, refusing a missing or conflicting one, training on JAX and
PyTorch in their own processes, their `.keras` files loading under TensorFlow and exporting from
their shells, data-parallel JAX over devices and over processes (multi-host on one machine).

The test process itself runs Keras on TensorFlow, so every JAX or PyTorch run is a subprocess.
Without jax or torch installed their tests skip, except under CI=true, where .ci/run installs
both and a missing one fails.
"""

import atexit
import functools
import importlib.util
import json
import os
import re
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from environment import unavailable

from vae_edge.cli import main
from vae_edge.errors import BadInputError
from vae_edge.train import backend

VAE_EDGE = str(Path(sys.executable).with_name("vae-edge"))
# The same tiny training run on every backend (and process count) that the tests compare.
TINY = ["--variant", "micro", "--latent-dim", "4", "--epochs", "2", "--seed", "0"]


def require(module: str) -> None:
    """Skip when `module` is not installed; fail instead under CI=true, whose .ci/run installs it.

    Looks the module up without importing it: torch and jax stay out of this TensorFlow process.
    """
    if importlib.util.find_spec(module) is None:
        unavailable(f"{module} is not installed", ".ci/run installs jax with `make install` and torch with "
                    "`make install-torch`")


def fake_backend_packages(monkeypatch, installed: set[str]) -> None:
    """Make the backend packages (only those: Keras' own import still looks itself up) seem installed or not."""
    real = importlib.util.find_spec
    modules = set(backend.MODULES.values())
    monkeypatch.setattr(backend.importlib.util, "find_spec",
                        lambda name, *args: (object() if name in installed else None) if name in modules else real(name, *args))


@pytest.fixture
def every_package_installed(monkeypatch):
    fake_backend_packages(monkeypatch, {"tensorflow", "jax", "torch"})


def test_missing_backend_package_names_the_extra(monkeypatch):
    fake_backend_packages(monkeypatch, set())
    with pytest.raises(BadInputError, match=r"the jax backend needs the jax package: pip install 'vae-edge\[jax\]'$"):
        backend.select_backend("jax")


def test_missing_torch_names_the_extra_and_the_cpu_build(monkeypatch):
    fake_backend_packages(monkeypatch, set())
    expected = ("the torch backend needs the torch package: pip install 'vae-edge[torch]' (with CUDA), "
                "or for the CPU build: pip install torch --index-url https://download.pytorch.org/whl/cpu")
    with pytest.raises(BadInputError) as error:
        backend.select_backend("torch")
    assert str(error.value) == expected


def test_every_missing_module_error_gives_the_same_install_hint_as_the_backend_check():
    """The CLI's catch-all for a missing module used to send torch users to the CUDA wheel."""
    from vae_edge.registry import install_hint

    assert install_hint("torch").endswith("--index-url https://download.pytorch.org/whl/cpu")
    assert install_hint("onnxruntime") == "pip install 'vae-edge[onnx]'"
    assert install_hint("numpy") is None  # a core dependency: no extra to name, the error stays as it is


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


def test_run_without_tensorflow_stages_still_refuses_a_bad_keras_backend_in_one_line(tmp_path):
    """`run --skip export --skip bench` does not select TensorFlow, so the variable is checked on its own."""
    done = subprocess.run([VAE_EDGE, "run", "--skip", "export", "--skip", "bench", "--out", str(tmp_path / "run")],
                          env={**os.environ, backend.ENV: "numpyy"}, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    message = "Error: KERAS_BACKEND='numpyy' is not a backend; use one of: tensorflow, jax, torch"
    assert done.stderr.strip().splitlines() == [message]
    assert not (tmp_path / "run").exists()


def test_export_commands_switch_a_jax_shell_to_tensorflow(monkeypatch):
    monkeypatch.setenv(backend.ENV, "jax")
    monkeypatch.setattr(backend, "loaded_backend", lambda: None)  # as in a fresh `vae-edge export`
    backend.require_tensorflow_backend("export")
    assert os.environ[backend.ENV] == "tensorflow"


def test_export_in_a_process_whose_keras_runs_jax_is_refused_in_one_line(monkeypatch):
    monkeypatch.setattr(backend, "loaded_backend", lambda: "jax")
    with pytest.raises(BadInputError, match="export needs Keras on the TensorFlow backend, but this process loaded it with jax"):
        backend.require_tensorflow_backend("export")


@pytest.fixture
def fresh_auto_choice():
    backend.training_backend.cache_clear()  # it caches the answer for the process's lifetime
    yield
    backend.training_backend.cache_clear()


@pytest.mark.parametrize("accelerated, chosen", [
    (set(), backend.Backend.TENSORFLOW),  # a CPU-only machine: TensorFlow, in the same process as export
    ({backend.Backend.TORCH}, backend.Backend.TORCH),
    ({backend.Backend.TENSORFLOW, backend.Backend.TORCH}, backend.Backend.TORCH),
    ({backend.Backend.TENSORFLOW, backend.Backend.JAX, backend.Backend.TORCH}, backend.Backend.JAX),
])
def test_auto_trains_on_the_first_backend_that_sees_an_accelerator(accelerated, chosen, monkeypatch, fresh_auto_choice):
    monkeypatch.setattr(backend, "sees_accelerator", lambda name: name in accelerated)
    assert backend.training_backend(backend.AUTO) == chosen
    assert backend.training_backend("torch") == backend.Backend.TORCH  # a named backend is taken as it is


def test_asking_for_an_accelerator_skips_missing_packages_and_the_cpu_only_tensorflow(monkeypatch):
    def no_child(*args, **kwargs):
        raise AssertionError("no probe process should start")

    monkeypatch.setattr(backend.subprocess, "run", no_child)
    fake_backend_packages(monkeypatch, {"tensorflow"})
    assert not backend.sees_accelerator(backend.Backend.JAX) and not backend.sees_accelerator(backend.Backend.TORCH)
    fake_backend_packages(monkeypatch, {"tensorflow", "jax", "torch"})
    versions = {"tensorflow-cpu": "2.21.0", "torch": "2.13.0+cpu"}  # CPU-only builds, and JAX without a GPU plugin
    monkeypatch.setattr(backend, "_version", versions.get)
    monkeypatch.setattr(backend.importlib.metadata, "distributions", lambda: [])
    assert not any(backend.sees_accelerator(name) for name in backend.Backend)


def test_builds_that_can_reach_a_gpu_are_asked(monkeypatch):
    class Dist:
        def __init__(self, name):
            self.metadata = {"Name": name}

    monkeypatch.setattr(backend.importlib.metadata, "distributions", lambda: [Dist("jax"), Dist("jax-cuda12-plugin")])
    monkeypatch.setattr(backend, "_version", {"torch": "2.11.0", "tensorflow": "2.21.0"}.get)
    assert all(backend.could_see_accelerator(name) for name in backend.Backend)


def test_the_accelerator_probe_agrees_with_jax_itself(monkeypatch):
    require("jax")
    import jax  # JAX in this process leaves Keras (on TensorFlow here) alone

    monkeypatch.setattr(backend, "could_see_accelerator", lambda name: True)  # ask JAX even without a GPU plugin
    assert backend.sees_accelerator(backend.Backend.JAX) == (jax.default_backend() != "cpu")


def test_a_call_on_another_backend_runs_in_a_child_on_that_backend_and_brings_errors_back():
    require("jax")
    from keras.src.backend.config import backend as keras_backend_of

    from vae_edge.model.presets import get_preset

    assert backend.call_in_backend(backend.Backend.JAX, keras_backend_of) == "jax"
    with pytest.raises(BadInputError, match="unknown variant 'huge'"):
        backend.call_in_backend(backend.Backend.JAX, get_preset, "huge")


def test_the_child_backend_process_exits_by_itself_without_tracebacks(capfd):
    """A child stopped by a signal after its result printed KeyboardInterrupt tracebacks from its
    exit handlers (matplotlib's and JAX's) under every `run --backend torch`."""
    require("jax")
    started = time.monotonic()
    backend.call_in_backend(backend.Backend.JAX, functools.partial(atexit.register, time.sleep, 2))
    assert time.monotonic() - started > 2  # the call waited for the child's exit handler to finish
    stderr = capfd.readouterr().err
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr


def test_train_with_a_missing_backend_is_one_line_and_exit_2(monkeypatch, tmp_path):
    fake_backend_packages(monkeypatch, {"tensorflow", "jax"})
    result = CliRunner().invoke(main, ["train", "--backend", "torch", "--out", str(tmp_path / "run")])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: the torch backend needs the torch package: pip install")
    assert not (tmp_path / "run").exists()


def _run(command: list[str], env: dict | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    done = subprocess.run(command, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})},
                          capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return done


@pytest.fixture(scope="module", params=["jax", "torch"])
def backend_run(request, tmp_path_factory):
    """`vae-edge train --backend NAME` in its own process, then the trained model's weights and
    outputs as that backend computes them, dumped by a second process on the same backend."""
    name = request.param
    require(name)
    folder = tmp_path_factory.mktemp(name)
    run = folder / "run"
    env = {k: v for k, v in os.environ.items() if k != backend.ENV}  # --backend alone must choose it
    done = subprocess.run([VAE_EDGE, "train", "--backend", name, *TINY, "--max-samples", "200", "--out", str(run)],
                          env={**env, "TF_CPP_MIN_LOG_LEVEL": "3"}, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    dump = textwrap.dedent(f"""
        import keras, numpy as np
        import vae_edge.model
        from vae_edge.data import load_dataset
        model = keras.models.load_model({str(run / "model.keras")!r})
        images = load_dataset("mnist-5k", max_samples=200, seed=0).test[:8]
        z_mean, z_log_var = model.encode(images)
        outputs = dict(z_mean=z_mean, z_log_var=z_log_var, decoded=model.decode(z_mean), samples=model.sample(4, seed=1),
                       **{{f"w{{i}}": w for i, w in enumerate(model.weights)}})
        np.savez({str(folder / "out.npz")!r}, **{{k: keras.ops.convert_to_numpy(v) for k, v in outputs.items()}})
        print(keras.backend.backend())
    """)
    assert _run([sys.executable, "-c", dump], {backend.ENV: name}).stdout.strip().endswith(name)
    return name, run, dict(np.load(folder / "out.npz")), done.stdout


@pytest.mark.slow
def test_training_on_another_backend_writes_a_complete_run_and_logs_one_line_per_epoch(backend_run):
    name, run, _, stdout = backend_run
    history = json.loads((run / "history.json").read_text())
    assert history["backend"] == name and history["processes"] == 1
    assert history["devices"] == 1 and history["per_device_batch"] == 32 and history["device_names"] == ["cpu:0"]
    assert len(history["history"]["loss"]) == 2 and history["history"]["loss"][1] < history["history"]["loss"][0]
    assert json.loads((run / "train_config.json").read_text())["backend"] == name
    assert f"training micro on {name}, 1 device(s) (cpu:0)" in stdout  # the log names the device it trains on
    # one line per epoch in a pipe, no carriage-return progress bars
    assert "\r" not in stdout and sum(line.startswith("Epoch ") for line in stdout.splitlines()) == 2


@pytest.mark.slow
def test_a_model_trained_on_another_backend_loads_under_tensorflow_with_the_same_weights_and_outputs(backend_run):
    import keras

    from vae_edge.data import load_dataset

    _, run, theirs, _ = backend_run
    assert keras.backend.backend() == "tensorflow"
    model = keras.models.load_model(run / "model.keras")
    for i, weight in enumerate(model.weights):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(weight), theirs[f"w{i}"])
    images = load_dataset("mnist-5k", max_samples=200, seed=0).test[:8]
    z_mean, z_log_var = model.encode(images)
    # same weights, different convolution kernels: equal up to float32 rounding
    np.testing.assert_allclose(z_mean, theirs["z_mean"], atol=1e-5)
    np.testing.assert_allclose(z_log_var, theirs["z_log_var"], atol=1e-5)
    np.testing.assert_allclose(model.decode(theirs["z_mean"]), theirs["decoded"], atol=1e-5)
    np.testing.assert_allclose(model.sample(4, seed=1), theirs["samples"], atol=1e-5)


DATA_PARALLEL = """
import json
from vae_edge.train import TrainConfig, train
curves = {}
for devices in (1, 2):
    result = train(TrainConfig(variant="micro", latent_dim=4, epochs=2, batch_size=32, max_samples=160, seed=0,
                               devices=devices), f"{out}/d{devices}", verbose=0, log=lambda _: None)
    history = json.load(open(f"{out}/d{devices}/history.json"))
    curves[devices] = {"loss": result.history["loss"], "devices": history["devices"],
                       "per_device_batch": history["per_device_batch"]}
print(json.dumps(curves))
"""

# The seeded initial weights that training starts from, on one device, on several, or over processes
# (KERAS_DISTRIBUTION_*): their validation loss and the gradient of the first global batch (a plain SGD step of
# 1 moves each weight by it), saved by process 0 as OUT/<devices>.npz. `python -c SAME_WEIGHTS OUT DEVICES...`
SAME_WEIGHTS = """
import sys
import keras
import numpy as np
from vae_edge.data import load_dataset
from vae_edge.train import TrainConfig
from vae_edge.train.devices import data_parallel, on_devices
from vae_edge.train.hosts import hosts_from, join_hosts, process_index_and_count
from vae_edge.train.loop import build_model

out, *device_counts = sys.argv[1:]
hosts = hosts_from()
if hosts:
    join_hosts(hosts)
process, processes = process_index_and_count()
config = TrainConfig(variant="micro", latent_dim=4, epochs=2, batch_size=32, max_samples=160, seed=0, learning_rate=1e-3)
splits = load_dataset(config.dataset, image_size=config.image_size, channels=config.channels, max_samples=160, seed=0)
for devices in device_counts:
    distribution, count = data_parallel(devices, 32)
    keras.utils.set_random_seed(config.seed)
    with on_devices(distribution, processes):
        model = build_model(config, splits.image_shape)
        val_loss = model.evaluate(splits.val, batch_size=32, verbose=0, return_dict=True)["loss"]
        before = [keras.ops.convert_to_numpy(w) for w in model.trainable_weights]
        model.compile(optimizer=keras.optimizers.SGD(1.0))
        model.fit(splits.train[:32], batch_size=32, epochs=1, verbose=0)  # one step
        gradient = [b - keras.ops.convert_to_numpy(w) for b, w in zip(before, model.trainable_weights)]
    if process == 0:
        np.savez(f"{out}/{count}.npz", *gradient, val_loss=val_loss)
"""


def _assert_same_step(one: Path, many: Path) -> None:
    """The same weights give the same validation loss and the same gradient of every variable, up to the
    order of float sums (measured on a CPU: the loss within 1.2e-7, each gradient within 1.5e-6)."""
    one, many = np.load(one), np.load(many)
    np.testing.assert_allclose(many["val_loss"], one["val_loss"], rtol=1e-5)
    gradients = [name for name in one.files if name != "val_loss"]
    assert len(gradients) > 40 and np.linalg.norm(one[gradients[0]]) > 0  # micro has 45 trainable variables
    for name in gradients:
        assert np.linalg.norm(many[name] - one[name]) <= 1e-4 * np.linalg.norm(one[name]), name


# Why the runs' validation losses are not compared: with the same weights and batch, one and two devices
# agree to float rounding (_assert_same_step), but training amplifies that rounding. The weights of the
# two runs differ by 5e-6 (relative norm) after the first step, 7e-4 after the second and 1e-2 after
# two epochs, and a one-ulp nudge of the one-device run's initial weights drifts alike (5e-6, 1e-4,
# 5e-3), so their validation losses differ by 0.13 % after two epochs (288.94 vs 288.56 nats). The
# training loss, a mean over every step, stays within 2e-4.


@pytest.mark.slow
def test_two_devices_follow_the_one_device_loss_curve(tmp_path):
    require("jax")
    env = {backend.ENV: "jax", "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    done = _run([sys.executable, "-c", f"out = {str(tmp_path)!r}\n" + DATA_PARALLEL], env)
    curves = json.loads(done.stdout.strip().splitlines()[-1])
    one, two = curves["1"], curves["2"]
    assert (one["devices"], one["per_device_batch"]) == (1, 32)
    assert (two["devices"], two["per_device_batch"]) == (2, 16)
    np.testing.assert_allclose(two["loss"], one["loss"], rtol=1e-3)
    _run([sys.executable, "-c", SAME_WEIGHTS, str(tmp_path), "1", "2"], env)
    _assert_same_step(tmp_path / "1.npz", tmp_path / "2.npz")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_two_processes_follow_the_one_process_loss_curve_and_only_process_0_writes(tmp_path):
    """Multi-host data parallel on one machine: two JAX processes on the CPU, one device each, joined
    through a coordinator on loopback and all-reducing over gloo. Process 0 takes the options,
    process 1 Keras' KERAS_DISTRIBUTION_* variables; a plain one-process run trains beside them."""
    require("jax")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KERAS_DISTRIBUTION_", "XLA_FLAGS", backend.ENV))}
    env.update(TF_CPP_MIN_LOG_LEVEL="3", JAX_PLATFORMS="cpu")
    common = [VAE_EDGE, "train", "--backend", "jax", *TINY, "--max-samples", "160"]  # 128 train images: 4 whole batches
    coordinator = f"127.0.0.1:{_free_port()}"
    commands = [
        ([*common, "--devices", "all", "--coordinator", coordinator, "--num-processes", "2", "--process-id", "0",
          "--out", str(tmp_path / "p0")], {}),
        ([*common, "--devices", "all", "--out", str(tmp_path / "p1")],
         {"KERAS_DISTRIBUTION_JOB_ADDRESSES": coordinator, "KERAS_DISTRIBUTION_NUM_PROCESSES": "2",
          "KERAS_DISTRIBUTION_PROCESS_ID": "1"}),
        ([*common, "--out", str(tmp_path / "one")], {}),
    ]
    outputs = _run_together(commands, env)
    # every host's devices, named by JAX's global ids (cpu:0 and cpu:2048 for two CPU processes)
    assert re.search(r"training micro on jax, 2 device\(s\) \(cpu:0, cpu:\d+\) over 2 processes \(this is process 1\)",
                     outputs[1][0])
    assert outputs[1][0].rstrip().endswith("process 0 writes the run folder")
    assert not (tmp_path / "p1").exists()  # only process 0 writes
    two = json.loads((tmp_path / "p0" / "history.json").read_text())
    one = json.loads((tmp_path / "one" / "history.json").read_text())
    assert (two["processes"], two["devices"], two["per_device_batch"]) == (2, 2, 16)
    assert (one["processes"], one["devices"], one["per_device_batch"]) == (1, 1, 32)
    np.testing.assert_allclose(two["history"]["loss"], one["history"]["loss"], rtol=1e-3)  # val_loss: see above
    assert {p.name for p in (tmp_path / "p0").iterdir()} >= {"model.keras", "history.json", "samples.png"}
    # validation and the first step from the initial weights, over two processes and in one
    same = [sys.executable, "-c", SAME_WEIGHTS, str(tmp_path)]
    hosts = {"KERAS_DISTRIBUTION_JOB_ADDRESSES": f"127.0.0.1:{_free_port()}", "KERAS_DISTRIBUTION_NUM_PROCESSES": "2"}
    _run_together([([*same, "all"], {**hosts, "KERAS_DISTRIBUTION_PROCESS_ID": str(process)}) for process in (0, 1)]
                  + [([*same, "1"], {})], {**env, backend.ENV: "jax"})
    _assert_same_step(tmp_path / "1.npz", tmp_path / "2.npz")


def _run_together(commands: list[tuple[list[str], dict]], env: dict) -> list[tuple[str, str]]:
    """Run the commands at once (each with `env` and its own extra variables); their stdout and stderr."""
    running = [subprocess.Popen(command, env={**env, **extra}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for command, extra in commands]
    try:
        outputs = [process.communicate(timeout=600) for process in running]
    finally:
        for process in running:
            if process.poll() is None:
                process.kill()
    for process, (stdout, stderr) in zip(running, outputs):
        assert process.returncode == 0, stdout[-2000:] + stderr[-3000:]
    return outputs


def test_multi_host_settings_come_from_the_options_else_keras_variables():
    from vae_edge.train.hosts import Hosts, hosts_from

    environ = {"KERAS_DISTRIBUTION_JOB_ADDRESSES": "host1:1234,host2:1234", "KERAS_DISTRIBUTION_NUM_PROCESSES": "2",
               "KERAS_DISTRIBUTION_PROCESS_ID": "1"}
    assert hosts_from(environ=environ) == Hosts("host1:1234", 2, 1)  # the first job address is the coordinator
    assert hosts_from("head:9000", 4, 3, environ=environ) == Hosts("head:9000", 4, 3)
    assert hosts_from(environ={}) is None
    assert hosts_from("head:9000", 1, 0, environ={}) is None  # one process: nothing to join


@pytest.mark.parametrize("options, message", [
    (["--coordinator", "head:9000"], "a multi-host run needs --coordinator, --num-processes and --process-id together "
     "(or KERAS_DISTRIBUTION_JOB_ADDRESSES, KERAS_DISTRIBUTION_NUM_PROCESSES, KERAS_DISTRIBUTION_PROCESS_ID); "
     "missing --num-processes, --process-id"),
    (["--coordinator", "head", "--num-processes", "2", "--process-id", "0"],
     "--coordinator 'head' is not HOST:PORT (process 0's address and a free port)"),
    (["--coordinator", "head:9000", "--num-processes", "2", "--process-id", "2"],
     "--process-id 2 is not in 0..1 (--num-processes 2)"),
    (["--backend", "tensorflow", "--coordinator", "head:9000", "--num-processes", "2", "--process-id", "1"],
     "a multi-host run (--coordinator, --num-processes 2) needs --backend jax"),
])
def test_bad_multi_host_settings_are_one_line_and_exit_2(options, message, monkeypatch, tmp_path):
    for name in ("KERAS_DISTRIBUTION_JOB_ADDRESSES", "KERAS_DISTRIBUTION_NUM_PROCESSES", "KERAS_DISTRIBUTION_PROCESS_ID"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(backend.ENV, "tensorflow")
    result = CliRunner().invoke(main, ["train", *options, "--out", str(tmp_path / "run")])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [f"Error: {message}"]
    assert not (tmp_path / "run").exists()


def test_a_process_whose_coordinator_never_answers_stops_with_one_line():
    """JAX would abort the process with a native stack trace; the wait before it says what to do."""
    from vae_edge.train.hosts import wait_for_coordinator

    address = f"127.0.0.1:{_free_port()}"  # nothing listens there
    with pytest.raises(BadInputError, match=rf"^nothing answered at --coordinator {address} within 0.5 s \(Connection refused\); "
                                            "start process 0 with the same --coordinator, or check its address and port$"):
        wait_for_coordinator(address, 0.5)


def test_a_multi_process_run_must_use_every_process_devices(monkeypatch):
    from vae_edge.train import devices

    monkeypatch.setattr(devices, "process_index_and_count", lambda: (0, 2))
    monkeypatch.setattr(devices, "list_devices", lambda: ["cpu:0", "cpu:1"])
    with pytest.raises(BadInputError, match=r"--devices 1: a 2-process run trains on the devices of every process; "
                                            r"use --devices all \(2 devices\)"):
        devices.data_parallel(1, 32)


def test_every_split_is_cut_to_whole_shares_of_the_devices():
    from vae_edge.data import Splits
    from vae_edge.train.devices import trim_for_devices

    images = np.zeros((131, 2, 2, 1), np.float32)
    splits = Splits("digits", images, images[:21], images[:20], train_labels=np.arange(131))
    logged = []
    trimmed = trim_for_devices(splits, 2, logged.append)
    assert (len(trimmed.train), len(trimmed.val), len(trimmed.test), len(trimmed.train_labels)) == (130, 20, 20, 130)
    assert logged == ["dropping the last 1/1/0 train/val/test images so every batch splits over 2 devices"]
    assert trim_for_devices(trimmed, 2, logged.append) is trimmed and len(logged) == 1


@pytest.mark.slow
def test_a_model_trained_on_another_backend_exports_and_verifies_from_its_shell(backend_run, tmp_path):
    """The cross-backend path as a user runs it: KERAS_BACKEND=jax (or torch) in the shell, one export command."""
    name, run, _, _ = backend_run
    bundle = tmp_path / "bundle"
    done = subprocess.run([VAE_EDGE, "export", str(run / "model.keras"), "--format", "tflite", "--format", "onnx",
                           "--quantize", "float32", "--quantize", "int8", "--out", str(bundle)],
                          env={**os.environ, backend.ENV: name}, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["verification"]["passed"] and manifest["model"]["trained_precision"] == "float32"
    assert {(a["format"], a["mode"]) for a in manifest["artifacts"]} >= {("tflite", "int8"), ("onnx", "float32")}


def test_nearest_upsampling_gives_the_same_pixels_on_jax(tmp_path):
    """The decoder's upsampling is a repeat on JAX and DEPTH_TO_SPACE on TensorFlow: the same pixels."""
    require("jax")
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


@pytest.mark.slow
def test_run_trains_and_evaluates_on_the_chosen_backend_and_exports_with_tensorflow(tmp_path):
    """`vae-edge run --backend jax`: training and evaluation in a JAX child process, export in this
    TensorFlow one; the child's scores are the ones TensorFlow computes for the same model."""
    require("jax")
    from vae_edge.data import load_dataset
    from vae_edge.model.loading import load_vae
    from vae_edge.train.evaluation import evaluate_splits

    out = tmp_path / "run"
    result = CliRunner().invoke(main, [
        "run", "--backend", "jax", "--variant", "micro", "--latent-dim", "4", "--max-samples", "160", "--epochs", "1",
        "--format", "tflite", "--quantize", "float32", "--static-batch", "0", "--importance-samples", "2",
        "--skip", "bench", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert json.loads((out / "train/train_config.json").read_text())["backend"] == "jax"
    assert json.loads((out / "bundle/manifest.json").read_text())["verification"]["passed"]
    theirs = json.loads((out / "evaluation.json").read_text())
    ours = evaluate_splits(load_vae(out / "train/model.keras"), load_dataset("mnist-5k", max_samples=160, seed=0),
                           importance_samples=2, seed=0)
    for key in ("negative_elbo", "iw_nll", "psnr_db"):
        assert theirs[key] == pytest.approx(ours[key], rel=1e-4), key


def _stat(pid: int) -> list[str] | None:
    """/proc/PID/stat's fields after the command name (state, parent pid, ...); None once it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def _running(pid: int) -> bool:
    fields = _stat(pid)
    return fields is not None and fields[0] != "Z"


def _children(pid: int) -> set[int]:
    """The running child processes of `pid`, read from /proc."""
    return {int(p.name) for p in Path("/proc").glob("[0-9]*") if (f := _stat(int(p.name))) and f[1] == str(pid) and f[0] != "Z"}


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads child processes from /proc")
def test_stopping_the_parent_stops_the_child_backend_process(tmp_path):
    """SIGTERM to a `vae-edge run` waiting on its training child ends both, not only the parent."""
    import signal

    script, ready = tmp_path / "parent.py", tmp_path / "child-is-in-its-task"
    script.write_text(textwrap.dedent(f"""
        import signal, time
        from pathlib import Path

        def task():  # runs in the child; its file says the child is inside its task
            Path({str(ready)!r}).touch()
            time.sleep(300)

        if __name__ == "__main__":
            from vae_edge.train import backend
            from vae_edge.cli.app import _stop_on_sigterm
            signal.signal(signal.SIGTERM, _stop_on_sigterm)  # as the CLI does
            backend.call_in_backend(backend.Backend.JAX, task)
    """))
    parent = subprocess.Popen([sys.executable, str(script)], env={**os.environ, backend.ENV: "tensorflow"})
    try:
        deadline = time.monotonic() + 120
        while not ready.exists() and time.monotonic() < deadline and parent.poll() is None:
            time.sleep(0.1)  # polls for the child's own signal that it is in its task
        workers = _children(parent.pid)
        assert ready.exists() and workers, "the child never reached its task"
        parent.send_signal(signal.SIGTERM)
        parent.wait(timeout=30)
        deadline = time.monotonic() + 15
        while [pid for pid in workers if _running(pid)] and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not [pid for pid in workers if _running(pid)], "the child backend process outlived its parent"
    finally:
        parent.kill()
