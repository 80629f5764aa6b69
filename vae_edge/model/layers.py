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
