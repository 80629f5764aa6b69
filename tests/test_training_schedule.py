"""The default training recipe: warm-up then cosine decay, gradient clipping, device and epoch
choices, log style, and the NaN guard that never leaves a broken model behind."""

import json
import math

import keras
import numpy as np
import pytest
from click.testing import CliRunner

from vae_edge.cli import main
from vae_edge.errors import BadInputError, TrainingDiverged
from vae_edge.train import ACCELERATOR_BUDGET, CPU_BUDGET, TrainConfig
from vae_edge.train import loop as training
from vae_edge.train.loop import build_model, learning_rate_schedule

TINY = dict(variant="micro", latent_dim=4, batch_size=32, max_samples=160, seed=0)


def test_learning_rate_warms_up_linearly_then_decays_along_a_cosine():
    schedule = learning_rate_schedule(TrainConfig(learning_rate=1e-3, warmup_fraction=0.1), total_steps=100)
    rate = {step: float(schedule(step)) for step in (0, 5, 10, 55, 100)}
    assert rate[0] == 0.0
    assert rate[5] == pytest.approx(5e-4, rel=1e-5)  # half-way up the warm-up
    assert rate[10] == pytest.approx(1e-3, rel=1e-5)  # the peak
    assert rate[55] == pytest.approx(5e-4, rel=1e-5)  # half-way along the cosine
    assert rate[100] == pytest.approx(0.0, abs=1e-9)


def test_constant_schedule_is_the_plain_learning_rate():
    assert learning_rate_schedule(TrainConfig(learning_rate=3e-4, lr_schedule="constant"), total_steps=100) == 3e-4


def test_optimizer_clips_the_global_gradient_norm_unless_turned_off():
    clipped = build_model(TrainConfig(variant="micro", clip_norm=50.0), (16, 16, 1))
    assert clipped.optimizer.global_clipnorm == 50.0
    assert build_model(TrainConfig(variant="micro", clip_norm=None), (16, 16, 1)).optimizer.global_clipnorm is None


def test_epochs_and_peak_learning_rate_default_to_the_machine(monkeypatch):
    monkeypatch.setattr(training, "accelerators", lambda: [])
    chosen = training.with_machine_budget(TrainConfig(epochs=3))
    assert (chosen.epochs, chosen.learning_rate) == (3, CPU_BUDGET.learning_rate)
    chosen = training.with_machine_budget(TrainConfig())
    assert (chosen.epochs, chosen.learning_rate) == (CPU_BUDGET.epochs, CPU_BUDGET.learning_rate)
    monkeypatch.setattr(training, "accelerators", lambda: ["gpu:0"])
    chosen = training.with_machine_budget(TrainConfig(learning_rate=1e-4))
    assert (chosen.epochs, chosen.learning_rate) == (ACCELERATOR_BUDGET.epochs, 1e-4)
    assert ACCELERATOR_BUDGET.epochs > CPU_BUDGET.epochs


def test_a_model_built_without_a_learning_rate_warms_up_to_the_machine_peak(monkeypatch):
    monkeypatch.setattr(training, "accelerators", lambda: [])
    schedule = build_model(TrainConfig(variant="micro"), (16, 16, 1), total_steps=100).optimizer._learning_rate
    assert float(schedule(5)) == pytest.approx(CPU_BUDGET.learning_rate)  # the end of the 5 % warm-up


def test_logs_are_one_line_per_epoch_when_stdout_is_not_a_terminal(monkeypatch):
    monkeypatch.setattr("sys.stdout.isatty", lambda: False)
    assert training.resolve_verbose("auto") == 2
    monkeypatch.setattr("sys.stdout.isatty", lambda: True)
    assert training.resolve_verbose("auto") == 1
    assert training.resolve_verbose(0) == 0


def test_one_device_needs_no_distribution_and_more_than_the_machine_has_is_refused():
    assert training.data_parallel("all", 32) == (None, len(keras.distribution.list_devices()))
    assert training.data_parallel(1, 32) == (None, 1)
    with pytest.raises(BadInputError, match="--devices 64: this machine has"):
        training.data_parallel(64, 32)


def test_bad_devices_value_is_a_one_line_usage_error(tmp_path):
    result = CliRunner().invoke(main, ["train", "--devices", "two", "--out", str(tmp_path / "run")])
    assert result.exit_code == 2 and "neither 'all' nor a positive number" in result.output
    assert not (tmp_path / "run").exists()


class PoisonWeights(keras.callbacks.Callback):
    """Turns every weight into NaN when epoch `epoch` (1-based) begins: a divergence on demand."""

    def __init__(self, epoch: int):
        super().__init__()
        self.poison_epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch + 1 == self.poison_epoch:
            for variable in self.model.trainable_variables:
                variable.assign(np.full(variable.shape, np.nan, "float32"))


@pytest.mark.slow
def test_divergence_keeps_the_last_good_model_aside_and_writes_no_run(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(TrainingDiverged, match=r"diverged in epoch 3 .*was not written.*run\.diverged"):
        training.train(TrainConfig(epochs=4, **TINY), out, verbose=0, log=lambda _: None, callbacks=[PoisonWeights(3)])
    assert not out.exists()
    kept = tmp_path / "run.diverged"
    history = json.loads((kept / "history.json").read_text())
    assert history["diverged_in_epoch"] == 3 and len(history["history"]["loss"]) == 3
    assert math.isnan(history["history"]["loss"][2]) and all(math.isfinite(v) for v in history["history"]["val_loss"][:2])
    assert "epoch 3" in (kept / "NOTE.txt").read_text()
    model = keras.models.load_model(kept / "model.keras")
    assert all(np.all(np.isfinite(keras.ops.convert_to_numpy(w))) for w in model.weights)
    assert np.all(np.isfinite(model.sample(2, seed=0)))


@pytest.mark.slow
def test_a_learning_rate_that_explodes_stops_with_one_line_and_exit_1(tmp_path):
    out = tmp_path / "run"
    result = CliRunner().invoke(main, [
        "train", "--variant", "micro", "--latent-dim", "4", "--max-samples", "160", "--epochs", "2",
        "--learning-rate", "1e30", "--lr-schedule", "constant", "--out", str(out),
    ])
    assert result.exit_code == 1, result.output
    error = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(error) == 1 and "diverged in epoch 1" in error[0] and "--learning-rate" in error[0]
    assert "Traceback" not in result.output
    assert not out.exists() and not (tmp_path / "run.diverged").exists()  # no epoch ended well: nothing to keep
