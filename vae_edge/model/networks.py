"""ResNet encoder and mirrored ResNet decoder, built as separate functional Keras models.

Keeping them separate models is what lets export write each as its own graph. Decoder
upsampling is `NearestUpsampling` to explicit sizes, not `UpSampling2D` (which leaves the
height unknown with a dynamic batch, so TFLite needs Flex ops) nor `Resizing` (whose resize
op XNNPACK does not delegate): explicit sizes let odd shapes (28 -> 14 -> 7 -> 4) mirror back
exactly.

The decoder mirrors the encoder (`DecoderLayout.MIRROR`): its residual blocks run at the
encoder's scales and widths in reverse, and full resolution holds only the output
convolution, as the encoder's holds only its stem. Blocks at full resolution too
(`FULL_RESOLUTION`, the layout of files saved before it) cost 2x to 2.9x the training time on a
2-core CPU for 1-2 nats of test -ELBO (CHANGELOG.md, 2026-11-26 (b)).

A conditional network (`num_classes` > 0) takes a one-hot `label` as a second input. The
decoder concatenates it with z before the projection, so it steers every stage that draws;
the encoder concatenates it with the pooled features before the latent heads, so z need not
spend capacity on the class. The decoder also adds a learnt per-class bias to the feature
map at every scale: with the label only at the projection, samples of `small` drifted to
other digits where z itself carried the class. Each injection costs one small matrix
product, not a label map per pixel, and converts to CONCATENATION or a broadcast ADD, which
every delegate runs.
"""

import math

import keras
from keras import layers

from vae_edge.data import IMAGE_CHANNELS
from vae_edge.errors import BadInputError
from vae_edge.model.layers import NearestUpsampling, SoftRange
from vae_edge.registry import DecoderLayout
from vae_edge.signatures import IMAGE, LABEL, RECONSTRUCTION, Z_LOG_VAR, Z_MEAN, Z

# Faster than Keras' 0.99 so the inference statistics settle within a short CPU training run.
BN_MOMENTUM = 0.9
# The range of the log-variance: posterior std from e^-7 (far finer than 8-bit pixels need) to
# e^3 = 20 (beyond the prior's 1, which no useful posterior exceeds), so exp() stays finite in float16.
LOG_VAR_RANGE = (-14.0, 6.0)


def spatial_sizes(height: int, width: int, stages: int) -> list[tuple[int, int]]:
    """Feature-map sizes from the input down through each stride-2 stage ('same' padding)."""
    sizes = [(height, width)]
    for _ in range(stages):
        h, w = sizes[-1]
        sizes.append((math.ceil(h / 2), math.ceil(w / 2)))
    return sizes


def check_input_shape(input_shape, stages: int) -> tuple[int, int, int]:
    """Validate an (H, W, C) image shape for a network of `stages` downsampling stages."""
    shape = tuple(input_shape)
    if len(shape) != 3 or not all(isinstance(d, int) and d > 0 for d in shape):
        raise BadInputError(
            f"input_shape must be (height, width, channels) of positive ints, got {input_shape!r}"
        )
    height, width, channels = shape
    if channels not in IMAGE_CHANNELS:
        raise BadInputError(f"input_shape has {channels} channels; images have 1 (grayscale) or 3 (RGB), channels last")
    smallest = 2**stages
    if min(height, width) < smallest:
        raise BadInputError(
            f"input {height}x{width} is too small for {stages} downsampling stages: "
            f"it needs at least {smallest}x{smallest}; resize the images or pick a variant with fewer stages"
        )
    return shape


def _conv_bn_relu(x, filters: int, name: str, dtype, strides: int = 1):
    x = layers.Conv2D(filters, 3, strides=strides, padding="same", use_bias=False, name=f"{name}_conv", dtype=dtype)(x)
    x = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_bn", dtype=dtype)(x)
    return layers.ReLU(name=f"{name}_relu", dtype=dtype)(x)


def _residual_block(x, filters: int, name: str, dtype):
    """Two 3x3 conv-BN layers with an identity shortcut (He et al., 2016)."""
    y = _conv_bn_relu(x, filters, f"{name}_a", dtype)
    y = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_b_conv", dtype=dtype)(y)
    y = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_b_bn", dtype=dtype)(y)
    y = layers.Add(name=f"{name}_add", dtype=dtype)([x, y])
    return layers.ReLU(name=f"{name}_out", dtype=dtype)(y)


def _residual_blocks(x, filters: int, prefix: str, count: int, dtype):
    """`count` residual blocks, named `{prefix}_res0`, `{prefix}_res1`, ..."""
    for block in range(count):
        x = _residual_block(x, filters, f"{prefix}_res{block}", dtype)
    return x


def build_encoder(input_shape, filters: list[int], latent_dim: int, blocks_per_stage: int, dtype,
                  num_classes: int = 0) -> keras.Model:
    """image (N, H, W, C) in [0, 1] [, label (N, K) one-hot] -> [z_mean, z_log_var], both (N, latent_dim) float32."""
    image = keras.Input(shape=input_shape, name=IMAGE)
    x = _conv_bn_relu(image, filters[0], "stem", dtype)
    for stage, width in enumerate(filters):
        x = _conv_bn_relu(x, width, f"down{stage}", dtype, strides=2)
        x = _residual_blocks(x, width, f"enc{stage}", blocks_per_stage, dtype)
    x = layers.GlobalAveragePooling2D(name="pool", dtype=dtype)(x)
    inputs = [image]
    if num_classes:
        inputs.append(keras.Input(shape=(num_classes,), name=LABEL))
        x = layers.Concatenate(name="with_label", dtype=dtype)([x, inputs[1]])
    # The heads run in float32 so the latent statistics keep full precision under mixed policies.
    z_mean = layers.Dense(latent_dim, name=Z_MEAN, dtype="float32")(x)
    z_log_var = layers.Dense(latent_dim, name=f"{Z_LOG_VAR}_dense", dtype="float32")(x)
    z_log_var = SoftRange(*LOG_VAR_RANGE, name=Z_LOG_VAR, dtype="float32")(z_log_var)
    return keras.Model(inputs if num_classes else image, [z_mean, z_log_var], name="encoder")


def build_decoder(input_shape, filters: list[int], latent_dim: int, blocks_per_stage: int, dtype,
                  num_classes: int = 0, layout: str = DecoderLayout.MIRROR) -> keras.Model:
    """z (N, latent_dim) [, label (N, K) one-hot] -> reconstruction (N, H, W, C) in [0, 1], float32."""
    height, width, channels = input_shape
    sizes = spatial_sizes(height, width, len(filters))
    z = keras.Input(shape=(latent_dim,), name=Z)
    x, inputs = z, [z]
    if num_classes:
        inputs.append(keras.Input(shape=(num_classes,), name=LABEL))
        x = layers.Concatenate(name="with_label", dtype=dtype)(inputs)
    bottom_h, bottom_w = sizes[-1]
    x = layers.Dense(bottom_h * bottom_w * filters[-1], name="project", dtype=dtype)(x)
    x = layers.ReLU(name="project_relu", dtype=dtype)(x)
    x = layers.Reshape((bottom_h, bottom_w, filters[-1]), name="unflatten", dtype=dtype)(x)
    width = filters[-1]
    mirror = layout == DecoderLayout.MIRROR
    if mirror:  # the blocks of the encoder's last stage, at the bottom scale
        x = _residual_blocks(x, width, f"dec{len(filters) - 1}", blocks_per_stage, dtype)
    for stage in reversed(range(len(filters))):
        x = NearestUpsampling(*sizes[stage], name=f"up{stage}", dtype=dtype)(x)
        if num_classes:  # a learnt per-class bias at every scale keeps samples on the asked class
            bias = layers.Dense(width, use_bias=False, name=f"up{stage}_label", dtype=dtype)(inputs[1])
            bias = layers.Reshape((1, 1, width), name=f"up{stage}_label_map", dtype=dtype)(bias)
            x = layers.Add(name=f"up{stage}_with_label", dtype=dtype)([x, bias])
        if mirror and stage == 0:
            break  # full resolution: only the output conv, the stem's mirror
        width = filters[max(stage - 1, 0)]
        x = _conv_bn_relu(x, width, f"up{stage}", dtype)
        x = _residual_blocks(x, width, f"dec{stage - 1 if mirror else stage}", blocks_per_stage, dtype)
    x = layers.Conv2D(channels, 3, padding="same", name="to_pixels", dtype="float32")(x)
    reconstruction = layers.Activation("sigmoid", name=RECONSTRUCTION, dtype="float32")(x)
    return keras.Model(inputs if num_classes else z, reconstruction, name="decoder")
