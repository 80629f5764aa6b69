"""KL annealing: a Keras callback that sets the VAE's KL weight before every batch."""

import keras

from vae_edge.registry import Annealing


def kl_weight_at(step: int, target: float, schedule: str, warmup_steps: int, cycle_ratio: float = 0.5) -> float:
    """The KL weight at training step `step`.

    linear: ramps 0 -> target over `warmup_steps`, then stays (Bowman et al., 2016).
    cyclical: repeats that ramp every `warmup_steps` steps, rising during the first
    `cycle_ratio` of each cycle and holding at target for the rest (Fu et al., 2019).
    """
    if schedule == Annealing.NONE or warmup_steps <= 0:
        return target
    if schedule == Annealing.LINEAR:
        return target * min(1.0, step / warmup_steps)
    if schedule == Annealing.CYCLICAL:
        phase = (step % warmup_steps) / warmup_steps
        return target * min(1.0, phase / cycle_ratio)
    raise ValueError(f"unknown KL annealing {schedule!r}; choose one of: {', '.join(Annealing)}")


class KLAnnealing(keras.callbacks.Callback):
    """Updates `model.kl_weight`; the value shows in the logs as the `kl_weight` metric."""

    def __init__(self, schedule: str, warmup_steps: int):
        super().__init__()
        self.schedule = schedule
        self.warmup_steps = warmup_steps
        self.step = 0

    def on_train_batch_begin(self, batch, logs=None):
        target = self.model.kl_loss_weight
        self.model.kl_weight.assign(kl_weight_at(self.step, target, self.schedule, self.warmup_steps))
        self.step += 1

    def on_test_begin(self, logs=None):
        # Validate (and so pick the best checkpoint) on the full objective, not the annealed one.
        self.model.kl_weight.assign(self.model.kl_loss_weight)

    def on_train_end(self, logs=None):
        self.model.kl_weight.assign(self.model.kl_loss_weight)
