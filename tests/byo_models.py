"""VAEs that vae-edge did not train, written the way users write them: the architectures of the
bring-your-own tests (the keras.io VAE is `examples/keras_io_vae.py`). Export imports this file for
its layer classes (`--custom-objects tests/byo_models.py`), as a user's module would be.
"""

import keras
from keras import layers, ops


def dense_vae(latent_dim: int = 8) -> tuple[keras.Model, keras.Model]:
    """An MLP VAE: Flatten and Dense with LeakyReLU and Dropout; the decoder returns logits (no sigmoid),
    reshaped to the image; the encoder names its outputs `mu` and `logvar`."""
    image = keras.Input((28, 28, 1))
    x = layers.Flatten()(image)
    x = layers.Dense(128)(x)
    x = layers.LeakyReLU(0.1)(x)
    x = layers.Dropout(0.1)(x)
    mu = layers.Dense(latent_dim, name="mu")(x)
    logvar = layers.Dense(latent_dim, name="logvar")(x)
    encoder = keras.Model(image, [mu, logvar], name="mlp_encoder")
    z = keras.Input((latent_dim,))
    x = layers.Dense(128)(z)
    x = layers.LeakyReLU(0.1)(x)
    x = layers.Dropout(0.1)(x)
    x = layers.Dense(28 * 28)(x)
    decoder = keras.Model(z, layers.Reshape((28, 28, 1))(x), name="mlp_decoder")
    return encoder, decoder


def batchnorm_bilinear_vae(latent_dim: int = 8) -> tuple[keras.Model, keras.Model]:
    """Convolutions with BatchNormalization, upsampled bilinearly then by nearest neighbour; outputs named
    in no way the contract recognizes (`encoder_outputs` says which is which)."""
    image = keras.Input((28, 28, 1))
    x = image
    for width in (16, 32):
        x = layers.Conv2D(width, 3, strides=2, padding="same", use_bias=False)(x)
        x = layers.BatchNormalization()(x)
        x = layers.ReLU()(x)
    x = layers.GlobalAveragePooling2D()(x)
    encoder = keras.Model(image, [layers.Dense(latent_dim, name="loc")(x), layers.Dense(latent_dim, name="spread")(x)],
                          name="bn_encoder")
    z = keras.Input((latent_dim,))
    x = layers.Dense(7 * 7 * 32, activation="relu")(z)
    x = layers.Reshape((7, 7, 32))(x)
    x = layers.UpSampling2D(2, interpolation="bilinear")(x)
    x = layers.Conv2D(16, 3, padding="same", use_bias=False)(x)
    x = layers.BatchNormalization()(x)
    x = layers.ReLU()(x)
    x = layers.UpSampling2D(2, interpolation="nearest")(x)
    decoder = keras.Model(z, layers.Conv2D(1, 3, padding="same", activation="sigmoid")(x), name="bn_decoder")
    return encoder, decoder


@keras.saving.register_keras_serializable(package="byo")
class ErfGate(layers.Layer):
    """x * (1 + erf(x)) / 2, GELU written by hand: ONNX has Erf, LiteRT has no built-in op for it."""

    def call(self, x):
        return x * (1.0 + ops.erf(x)) / 2.0


def erf_decoder(latent_dim: int = 2) -> keras.Model:
    z = keras.Input((latent_dim,))
    x = ErfGate(name="erf_gate")(layers.Dense(64)(z))
    x = layers.Dense(28 * 28, activation="sigmoid")(x)
    return keras.Model(z, layers.Reshape((28, 28, 1))(x), name="erf_decoder")


@keras.saving.register_keras_serializable(package="byo")
class TwoPartVAE(keras.Model):
    """A subclassed VAE exposing `encoder` and `decoder`, saved as one .keras file; trains on the ELBO of
    `likelihood` ("bernoulli", or "gaussian": squared error), from probabilities or from logits."""

    def __init__(self, encoder, decoder, likelihood: str = "bernoulli", logits: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.encoder, self.decoder, self.likelihood, self.logits = encoder, decoder, likelihood, logits
        self.loss_tracker = keras.metrics.Mean(name="loss")

    @property
    def metrics(self):
        return [self.loss_tracker]

    def negative_elbo(self, x):
        z_mean, z_log_var = self.encoder(x, training=True)[:2]
        eps = keras.random.normal(ops.shape(z_mean))
        out = self.decoder(z_mean + ops.exp(0.5 * z_log_var) * eps, training=True)
        if self.likelihood == "gaussian":
            nll = ops.sum(ops.square(x - out), axis=(1, 2, 3))
        elif self.logits:
            nll = ops.sum(ops.maximum(out, 0) - out * x + ops.log1p(ops.exp(-ops.abs(out))), axis=(1, 2, 3))
        else:
            p = ops.clip(out, 1e-7, 1 - 1e-7)
            nll = -ops.sum(x * ops.log(p) + (1 - x) * ops.log(1 - p), axis=(1, 2, 3))
        kl = -0.5 * ops.sum(1 + z_log_var - ops.square(z_mean) - ops.exp(z_log_var), axis=1)
        return ops.mean(nll + kl)

    def train_step(self, data):
        import tensorflow as tf

        with tf.GradientTape() as tape:
            loss = self.negative_elbo(data)
        grads = tape.gradient(loss, self.trainable_weights)
        self.optimizer.apply_gradients(zip(grads, self.trainable_weights))
        self.loss_tracker.update_state(loss)
        return {"loss": self.loss_tracker.result()}

    def get_config(self):
        return {**super().get_config(), "encoder": keras.saving.serialize_keras_object(self.encoder),
                "decoder": keras.saving.serialize_keras_object(self.decoder), "likelihood": self.likelihood,
                "logits": self.logits}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        encoder = keras.saving.deserialize_keras_object(config.pop("encoder"))
        decoder = keras.saving.deserialize_keras_object(config.pop("decoder"))
        return cls(encoder, decoder, **config)


def fit_briefly(encoder, decoder, images, likelihood: str = "bernoulli", logits: bool = False, epochs: int = 1) -> TwoPartVAE:
    """A short training run, so that the posterior has left the prior."""
    vae = TwoPartVAE(encoder, decoder, likelihood, logits)
    vae.compile(optimizer=keras.optimizers.Adam(2e-3))
    vae.fit(images, epochs=epochs, batch_size=32, verbose=0)
    return vae
