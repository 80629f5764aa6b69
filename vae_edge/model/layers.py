"""Custom layers of the VAE."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="vae_edge")
class Sampling(keras.layers.Layer):
    """Reparameterization trick: z = z_mean + exp(0.5 * z_log_var) * eps, eps ~ N(0, I).

    The noise comes from a `SeedGenerator`, so each step draws fresh noise while a fixed
    `seed` makes a whole run reproducible; it is drawn in the layer's compute dtype so the
    layer works under any dtype policy.
    """

    def __init__(self, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, inputs):
        z_mean, z_log_var = inputs
        eps = keras.random.normal(
            ops.shape(z_mean), dtype=self.compute_dtype, seed=self.seed_generator
        )
        return z_mean + ops.exp(0.5 * z_log_var) * eps

    def compute_output_shape(self, input_shape):
        return input_shape[0]

    def get_config(self) -> dict:
        return {**super().get_config(), "seed": self.seed}


@keras.saving.register_keras_serializable(package="vae_edge")
class SoftRange(keras.layers.Layer):
    """Squeezes its input smoothly into (low, high): `centre + half * tanh((x - centre) / half)`.

    The encoder's log-variance goes through it. Unbounded, a batch of unusual images (flat
    photo patches, say) can push it to 20-60 for one step: exp() of that made `large`'s KL
    term 1e9 in its first epoch on photos, and overflowed float16 into NaN. Inside the range
    the map is nearly linear, so the network learns the same posterior with a slightly
    different pre-activation; tanh converts to TANH, which every delegate runs.
    """

    def __init__(self, low: float, high: float, **kwargs):
        super().__init__(**kwargs)
        if not low < high:
            raise ValueError(f"SoftRange needs low < high, got ({low}, {high})")
        self.low, self.high = float(low), float(high)

    def call(self, x):
        centre, half = (self.high + self.low) / 2, (self.high - self.low) / 2
        return centre + half * ops.tanh((x - centre) / half)

    def get_config(self) -> dict:
        return {**super().get_config(), "low": self.low, "high": self.high}


def nearest_rows(in_size: int, out_size: int) -> list[tuple[int, int]]:
    """Which rows of a 2x repeat give TensorFlow's half-pixel nearest resize from `in_size` to `out_size`.

    TensorFlow reads input row `floor((out + 0.5) * in_size / out_size)`. For in_size < out_size <=
    2 * in_size every input row appears once or twice, in order, so the result is the 2x repeat
    with some duplicates left out; returned as `[start, stop)` runs of rows to keep.
    """
    if not in_size < out_size <= 2 * in_size:
        raise ValueError(f"nearest upsampling takes {in_size} rows to between {in_size + 1} and {2 * in_size}, not {out_size}")
    keep, previous = [], None
    for row in range(out_size):
        source = (2 * row + 1) * in_size // (2 * out_size)
        keep.append(2 * source + (source == previous))
        previous = source
    runs = []
    for index in keep:
        if runs and runs[-1][1] == index:
            runs[-1] = (runs[-1][0], index + 1)
        else:
            runs.append((index, index + 1))
    return runs


@keras.saving.register_keras_serializable(package="vae_edge")
class NearestUpsampling(keras.layers.Layer):
    """Nearest-neighbour upsampling to an explicit (height, width) of at most twice the input's.

    The same numbers as `Resizing(interpolation="nearest")` on TensorFlow, written as a 2x
    repeat (channel copies + `depth_to_space` on TensorFlow) and slices, because mobile
    delegates run those: XNNPACK has no nearest resize, and NNAPI and CoreML take only some
    resize modes. Explicit sizes let odd shapes (28 -> 14 -> 7 -> 4) mirror back exactly, and
    the gradient needs no `ResizeNearestNeighborGrad`, which XLA lacks.
    """

    def __init__(self, height: int, width: int, **kwargs):
        super().__init__(**kwargs)
        self.height, self.width = int(height), int(width)

    def call(self, inputs):
        rows = nearest_rows(inputs.shape[1], self.height)
        columns = nearest_rows(inputs.shape[2], self.width)
        x = _repeat_2x(inputs)
        x = _keep(x, rows, axis=1)
        return _keep(x, columns, axis=2)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.height, self.width, input_shape[3])

    def get_config(self) -> dict:
        return {**super().get_config(), "height": self.height, "width": self.width}


def _repeat_2x(x):
    """Each pixel as a 2x2 block: TensorFlow's own op (which converters map to DEPTH_TO_SPACE), a repeat elsewhere."""
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        return tf.nn.depth_to_space(tf.concat([x] * 4, axis=-1), 2)
    return ops.repeat(ops.repeat(x, 2, axis=1), 2, axis=2)


def _keep(x, runs: list[tuple[int, int]], axis: int):
    if runs == [(0, x.shape[axis])]:
        return x
    pieces = [x[:, start:stop] if axis == 1 else x[:, :, start:stop] for start, stop in runs]
    return pieces[0] if len(pieces) == 1 else ops.concatenate(pieces, axis=axis)
