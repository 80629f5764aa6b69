"""The Variational Autoencoder (Kingma & Welling, 2013) as a Keras 3 model."""

import inspect

import keras
import numpy as np
from keras import ops

from vae_edge.data import images_for_model
from vae_edge.elbo import BCE_EPSILON
from vae_edge.errors import BadInputError
from vae_edge.labels import Label, labels_for, one_hot
from vae_edge.model.layers import Sampling
from vae_edge.model.networks import build_decoder, build_encoder, check_input_shape
from vae_edge.model.presets import get_preset
from vae_edge.prior import prior_latents
from vae_edge.registry import DecoderLayout, Precision, ReconstructionLoss
from vae_edge.signatures import IMAGE, LABEL

KERAS_ARGUMENTS = {"name", "dtype", "trainable"}  # what keras.Model itself takes from a VAE's keywords


@keras.saving.register_keras_serializable(package="vae_edge")
class VAE(keras.Model):
    """ResNet VAE whose encoder and decoder are separate functional models.

    `call` returns a dict with `reconstruction`, `z_mean`, `z_log_var` and `z`. The loss is
    the negative ELBO in nats per image: reconstruction NLL summed over pixels plus
    `kl_loss_weight` (β) times the KL summed over latent dimensions, averaged over the batch.
    The KL weight lives in a variable so annealing callbacks can change it during `fit`;
    `free_bits` (nats per latent dimension) floors the optimised KL of each dimension during
    training only, so evaluation reports the true objective.
    Losses are computed in float32 whatever the dtype policy (`dtype=`) of the layers.

    With `num_classes` K > 0 the VAE is conditional (Sohn et al., 2015): encoder and decoder
    also take the class as a one-hot `label`, `call` takes `{"image": x, "label": one_hot}`,
    and `encode`, `decode` and `sample` take class indices or names (`class_names`).
    """

    def __init__(
        self,
        input_shape=(28, 28, 1),
        *,
        filters=(32, 64),
        latent_dim: int = 64,
        blocks_per_stage: int = 1,
        reconstruction_loss: str = "bce",
        kl_loss_weight: float = 1.0,
        free_bits: float = 0.0,
        seed: int | None = None,
        variant: str | None = None,
        num_classes: int = 0,
        class_names=None,
        decoder_layout: str = DecoderLayout.MIRROR,
        **kwargs,
    ):
        kwargs.setdefault("name", "vae")
        dtype = kwargs.get("dtype")
        if isinstance(dtype, str) and dtype not in set(Precision):
            raise BadInputError(f"unsupported dtype {dtype!r}; choose one of: {', '.join(Precision)}")
        super().__init__(**kwargs)
        filters = [int(f) for f in filters]
        self.image_shape = check_input_shape(input_shape, len(filters))
        if reconstruction_loss not in set(ReconstructionLoss):
            raise BadInputError(
                f"unknown reconstruction_loss {reconstruction_loss!r}; choose one of: {', '.join(ReconstructionLoss)}"
            )
        if self.dtype_policy.name not in set(Precision):
            raise BadInputError(f"unsupported precision {self.dtype_policy.name!r}; choose one of: {', '.join(Precision)}")
        if latent_dim < 1 or blocks_per_stage < 0 or kl_loss_weight < 0 or free_bits < 0:
            raise BadInputError("latent_dim must be >= 1; blocks_per_stage, kl_loss_weight and free_bits >= 0")
        if num_classes == 1 or num_classes < 0:
            raise BadInputError(f"num_classes must be 0 (unconditional) or at least 2, got {num_classes}")
        if decoder_layout not in set(DecoderLayout):
            raise BadInputError(f"unknown decoder_layout {decoder_layout!r}; choose one of: {', '.join(DecoderLayout)}")
        class_names = [str(n) for n in class_names] if class_names else [str(k) for k in range(num_classes)]
        if len(class_names) != num_classes or len(set(class_names)) != num_classes:
            raise BadInputError(f"class_names must be {num_classes} distinct names, one per class, got {class_names}")
        self.filters = filters
        self.latent_dim = int(latent_dim)
        self.blocks_per_stage = int(blocks_per_stage)
        self.reconstruction_loss = str(reconstruction_loss)
        self.kl_loss_weight = float(kl_loss_weight)
        self.free_bits = float(free_bits)
        self.seed = seed
        self.variant = variant
        self.num_classes = int(num_classes)
        self.class_names = class_names
        self.decoder_layout = DecoderLayout(decoder_layout)

        arch = (self.image_shape, filters, self.latent_dim, self.blocks_per_stage, self.dtype_policy, self.num_classes)
        self.encoder = build_encoder(*arch)
        self.decoder = build_decoder(*arch, layout=self.decoder_layout)
        self.sampling = Sampling(seed=seed, name="sampling", dtype="float32")
        self.kl_weight = self.add_weight(
            shape=(), initializer=keras.initializers.Constant(self.kl_loss_weight),
            trainable=False, name="kl_weight",
        )
        self.reconstruction_loss_tracker = keras.metrics.Mean(name="reconstruction_loss")
        self.kl_loss_tracker = keras.metrics.Mean(name="kl_loss")
        self.kl_weight_tracker = keras.metrics.Mean(name="kl_weight")
        self.built = True

    @classmethod
    def from_variant(cls, name: str, input_shape=(28, 28, 1), latent_dim: int | None = None, **overrides) -> "VAE":
        """Build a preset (`micro`, `small`, `medium`, `large`, `xlarge`), overriding any argument."""
        config = get_preset(name)
        if latent_dim is not None:
            config["latent_dim"] = latent_dim
        known = set(inspect.signature(cls.__init__).parameters) - {"self", "kwargs", "variant", "input_shape"} | KERAS_ARGUMENTS
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise BadInputError(f"unknown VAE arguments {unknown}; choose from {', '.join(sorted(known))}")
        config.update(overrides)
        return cls(input_shape=input_shape, variant=name, **config)

    @property
    def conditional(self) -> bool:
        return self.num_classes > 0

    def call(self, inputs, training=False):
        if self.conditional:
            label = inputs[LABEL]
            z_mean, z_log_var = self.encoder([inputs[IMAGE], label], training=training)
        else:
            z_mean, z_log_var = self.encoder(inputs, training=training)
        z = self.sampling([z_mean, z_log_var])
        reconstruction = self.decoder([z, label] if self.conditional else z, training=training)
        return {"reconstruction": reconstruction, "z_mean": z_mean, "z_log_var": z_log_var, "z": z}

    def model_inputs(self, images: np.ndarray, labels: np.ndarray | None = None):
        """What `fit` and `call` take: the images, or for a conditional VAE the images with one-hot labels."""
        return {IMAGE: images, LABEL: one_hot(labels, self.num_classes)} if self.conditional else images

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        x = ops.cast(x[IMAGE] if self.conditional else x, "float32")
        reconstruction = ops.cast(y_pred["reconstruction"], "float32")
        z_mean = ops.cast(y_pred["z_mean"], "float32")
        z_log_var = ops.cast(y_pred["z_log_var"], "float32")
        pixel_axes = tuple(range(1, len(x.shape)))
        if self.reconstruction_loss == ReconstructionLoss.BCE:
            r = ops.clip(reconstruction, BCE_EPSILON, 1.0 - BCE_EPSILON)
            nll = -ops.sum(x * ops.log(r) + (1.0 - x) * ops.log1p(-r), axis=pixel_axes)
        else:
            nll = ops.sum(ops.square(x - reconstruction), axis=pixel_axes)
        kl_per_dim = -0.5 * (1.0 + z_log_var - ops.square(z_mean) - ops.exp(z_log_var))
        reconstruction_loss = ops.mean(nll)
        kl_loss = ops.mean(ops.sum(kl_per_dim, axis=-1))
        if self.free_bits > 0 and training:
            # Free bits (Kingma et al., 2016): no pressure on a dimension below the floor.
            kl_optimised = ops.sum(ops.maximum(ops.mean(kl_per_dim, axis=0), self.free_bits))
        else:
            kl_optimised = kl_loss
        kl_weight = ops.cast(self.kl_weight, "float32")
        self.reconstruction_loss_tracker.update_state(reconstruction_loss)
        self.kl_loss_tracker.update_state(kl_loss)
        self.kl_weight_tracker.update_state(kl_weight)
        return reconstruction_loss + kl_weight * kl_optimised

    def _with_labels(self, first: np.ndarray, labels, label=None):
        """The graph input for `first` (images or z): alone, or with one-hot labels for a conditional VAE."""
        indices = labels_for(len(first), self.class_names if self.conditional else (), label, labels)
        return first if indices is None else [first, one_hot(indices, self.num_classes)]

    def encode(self, x, labels=None, batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
        """Images (float in [0, 1] or uint8 pixels) [and their classes] -> (z_mean, z_log_var) as numpy arrays."""
        x = images_for_model(x, self.image_shape, "images")
        z_mean, z_log_var = self.encoder.predict(self._with_labels(x, labels), batch_size=batch_size, verbose=0)
        return z_mean, z_log_var

    def decode(self, z, labels=None, batch_size: int = 256, *, label: Label | None = None) -> np.ndarray:
        """Latent vectors (N, latent_dim) [and a class per row, or one `label` for all] -> images in [0, 1]."""
        z = np.asarray(z, dtype="float32")
        if z.ndim != 2 or z.shape[1] != self.latent_dim or not np.all(np.isfinite(z)):
            raise BadInputError(f"expected finite latent vectors of shape (N, {self.latent_dim}), got shape {z.shape}")
        return self.decoder.predict(self._with_labels(z, labels, label), batch_size=batch_size, verbose=0)

    def sample(self, num_samples: int, seed: int | None = None, temperature: float = 1.0, *,
               label: Label | None = None, labels=None) -> np.ndarray:
        """Decode z drawn from the prior N(0, temperature² I) [as class `label`, or one of `labels` per
        sample]; the same seed gives the same z everywhere."""
        if isinstance(num_samples, bool) or not isinstance(num_samples, (int, np.integer)) or num_samples < 1:
            raise BadInputError(f"num_samples must be a positive integer, got {num_samples!r}")
        try:
            z = prior_latents(num_samples, self.latent_dim, seed, temperature)
        except ValueError as error:  # a seed outside [0, 2^32)
            raise BadInputError(str(error)) from None
        return self.decode(z, labels, label=label)

    def predict(self, x, *args, **kwargs):
        """Keras' predict, with images checked first: a wrong shape is a one-line error naming the model's."""
        if not self.conditional and isinstance(x, (np.ndarray, list)):
            x = images_for_model(x, self.image_shape, "images")
        return super().predict(x, *args, **kwargs)

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "input_shape": list(self.image_shape),
            "filters": list(self.filters),
            "latent_dim": self.latent_dim,
            "blocks_per_stage": self.blocks_per_stage,
            "reconstruction_loss": self.reconstruction_loss,
            "kl_loss_weight": self.kl_loss_weight,
            "free_bits": self.free_bits,
            "seed": self.seed,
            "variant": self.variant,
            "num_classes": self.num_classes,
            "class_names": list(self.class_names),
            "decoder_layout": self.decoder_layout.value,
        }

    @classmethod
    def from_config(cls, config: dict) -> "VAE":
        # A config without the key was saved before the mirrored decoder, in the old layout.
        return cls(**{"decoder_layout": DecoderLayout.FULL_RESOLUTION.value, **config})
