"""Training callbacks that keep a run honest: stop at the first non-finite loss."""

import math

import keras


class DivergenceGuard(keras.callbacks.Callback):
    """Stops `fit` at the first batch whose loss is NaN or infinite and remembers the epoch.

    Keras' `TerminateOnNaN` stops too but forgets where; the run needs the epoch for its error.
    The broken weights are never checkpointed: their validation loss is NaN, which never counts
    as an improvement for `ModelCheckpoint(save_best_only=True)`.
    """

    def __init__(self):
        super().__init__()
        self.current = 0
        self.epoch: int | None = None  # 1-based epoch where the loss stopped being finite
        self.value: float | None = None

    def on_epoch_begin(self, epoch, logs=None):
        self.current = epoch + 1

    def on_train_batch_end(self, batch, logs=None):
        loss = float((logs or {}).get("loss", 0.0))
        if not math.isfinite(loss) and self.epoch is None:
            self.epoch, self.value = self.current, loss
            self.model.stop_training = True
