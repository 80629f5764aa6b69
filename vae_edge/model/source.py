"""The graphs a bundle is made from, whoever trained them: a VAE of ours, or any Keras 3 VAE.

Export, verification and the benchmark's Keras baseline see a model only through `VaeGraphs`:
an encoder (image -> z_mean, z_log_var), a decoder (z -> probabilities, or Gaussian means) and,
when the decoder ends in a sigmoid, the same decoder without it (logits, which integer-I/O files
return), with the image shape, latent width, likelihood and class names. Nothing downstream
looks inside the networks, so a user's own architecture exports like ours.

`vae_graphs` builds them from a user's two Keras models after checking the contract from the
models themselves (shapes, which output is the mean and which the log-variance, whether the
decoder ends in a sigmoid); what cannot be inferred (the likelihood, logits or probabilities)
the user states. `load_graphs` reads `.keras` files (Keras safe mode on; a user's own layers come
from modules they name, never from the file) and records where they came from (`ModelSource`), so
that verification and benchmarks can load the same graphs again.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vae_edge.bundle import ModelSource, module_spec, sha256_of
from vae_edge.errors import BadInputError
from vae_edge.labels import one_hot
from vae_edge.model.loading import FLOAT32, float32_model, import_custom_objects, layers_of, load_keras, source_precision
from vae_edge.registry import (
    LIKELIHOOD_LOSSES,
    DecoderOutput,
    LatentRole,
    Likelihood,
    SourceKind,
    names,
)

IMAGE_CHANNELS = (1, 3)
# Output names that say which encoder output is which (Keras names a functional output after its layer).
ROLE_PATTERNS = {
    LatentRole.MEAN: re.compile(r"mean|(^|_)mu($|_)"),
    LatentRole.LOG_VAR: re.compile(r"log_?var|logvar|log_variance"),
    LatentRole.SAMPLE: re.compile(r"sampl|^z$|(^|_)z($|_\d)"),
}


@dataclass
class VaeGraphs:
    """A VAE as the graphs every export is made of (float32 Keras functional models)."""

    encoder: object  # image [, label] -> [z_mean, z_log_var]
    decoder: object  # z [, label] -> reconstruction: probabilities (Bernoulli) or means (Gaussian)
    decoder_logits: object | None  # z [, label] -> the decoder's output before its sigmoid; None without one
    image_shape: tuple[int, int, int]
    latent_dim: int
    reconstruction_loss: str
    source: ModelSource
    class_names: tuple[str, ...] = ()
    facts: dict = field(default_factory=dict)  # what the manifest records of the model besides shapes

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def conditional(self) -> bool:
        return self.num_classes > 0

    def _feed(self, first: np.ndarray, labels: np.ndarray | None):
        return [first, one_hot(labels, self.num_classes)] if self.conditional else first

    def encode(self, x: np.ndarray, labels: np.ndarray | None = None, batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
        """Images (and, conditional, their class indices) -> (z_mean, z_log_var) as float32 arrays."""
        z_mean, z_log_var = self.encoder.predict(self._feed(x, labels), batch_size=batch_size, verbose=0)
        return np.asarray(z_mean, np.float32), np.asarray(z_log_var, np.float32)

    def decode(self, z: np.ndarray, labels: np.ndarray | None = None, batch_size: int = 256) -> np.ndarray:
        """Latent vectors (and, conditional, class indices) -> images, float32."""
        return np.asarray(self.decoder.predict(self._feed(np.asarray(z, np.float32), labels), batch_size=batch_size,
                                               verbose=0), np.float32)


# --- our own VAE ---------------------------------------------------------------------------------


def graphs_of_vae(model, source: ModelSource | None = None) -> VaeGraphs:
    """The graphs of a `vae_edge.model.VAE` (its float32 twin when it was trained in mixed precision)."""
    from vae_edge.model.loading import float32_vae

    vae = float32_vae(model)
    facts = {
        "origin": SourceKind.VAE_EDGE.value,
        "variant": vae.variant,
        "filters": list(vae.filters),
        "blocks_per_stage": vae.blocks_per_stage,
        "decoder_layout": str(vae.decoder_layout),
        "parameters": int(vae.count_params()),
        "trained_precision": model.dtype_policy.name,
    }
    return VaeGraphs(vae.encoder, vae.decoder, _without_final_sigmoid(vae.decoder), tuple(vae.image_shape),
                     vae.latent_dim, vae.reconstruction_loss, source or ModelSource(SourceKind.IN_MEMORY),
                     tuple(vae.class_names) if vae.conditional else (), facts)


# --- any Keras VAE -------------------------------------------------------------------------------


def vae_graphs(encoder, decoder, *, likelihood: str | None = None, decoder_output: str | None = None,
               encoder_outputs: Sequence[str] | None = None, source: ModelSource | None = None,
               log: Callable[[str], None] = print) -> VaeGraphs:
    """Check a user's encoder and decoder against the contract and return their export graphs.

    The encoder maps images (N, H, W, C) in [0, 1] to z_mean and z_log_var (N, L), optionally also a
    sampled z, which export leaves out; which output is which comes from their names (`z_mean`,
    `mu`, `log_var`...), else from their order, else from `encoder_outputs` (roles in output order,
    e.g. ("mean", "log_var", "sample")). The decoder maps z (N, L) to images (N, H, W, C):
    probabilities (Bernoulli likelihood, the default when it ends in a sigmoid), logits
    (`decoder_output="logits"`: the export adds the sigmoid) or Gaussian means
    (`likelihood="gaussian"`). Anything that does not fit is a one-line `BadInputError`.
    """
    likelihood = _choice(likelihood, Likelihood, "likelihood")
    decoder_output = _choice(decoder_output, DecoderOutput, "decoder output")
    encoder, decoder = _functional(encoder, "encoder"), _functional(decoder, "decoder")
    precision = source_precision(encoder, decoder)  # as trained: the copies export reads are float32
    encoder, decoder = float32_model(encoder), float32_model(decoder)
    image_shape = _image_input(encoder)
    roles = _encoder_roles(encoder, encoder_outputs, log)
    latent_dim = _latent_width(encoder, roles)
    _check_decoder(decoder, latent_dim, image_shape)
    likelihood, decoder_output = _likelihood_and_output(decoder, likelihood, decoder_output)
    import keras

    outputs = [encoder.outputs[roles.index(LatentRole.MEAN)], encoder.outputs[roles.index(LatentRole.LOG_VAR)]]
    export_encoder = keras.Model(encoder.inputs[0], outputs, name=encoder.name)  # drops a sampled z
    if decoder_output == DecoderOutput.LOGITS:
        logits = decoder
        probabilities = keras.layers.Activation("sigmoid", name="vae_edge_sigmoid", dtype=FLOAT32)(decoder.outputs[0])
        export_decoder = keras.Model(decoder.inputs[0], probabilities, name=decoder.name)
    else:
        export_decoder = decoder
        logits = _without_final_sigmoid(decoder) if likelihood == Likelihood.BERNOULLI else None
    layer_types = sorted({type(layer).__name__ for model in (encoder, decoder) for layer in layers_of(model)})
    facts = {
        "origin": "keras",
        "encoder_name": encoder.name,
        "decoder_name": decoder.name,
        "parameters": int(encoder.count_params() + decoder.count_params()),
        "trained_precision": precision,
        "likelihood": str(likelihood),
        "decoder_output": str(decoder_output),
        "encoder_outputs": [str(role) for role in roles],
        "layer_types": layer_types,
    }
    return VaeGraphs(export_encoder, export_decoder, logits, image_shape, latent_dim, LIKELIHOOD_LOSSES[likelihood],
                     source or ModelSource(SourceKind.IN_MEMORY), (), facts)


def _choice(value, enum, what: str):
    if value is None:
        return None
    try:
        return enum(value)
    except ValueError:
        raise BadInputError(f"unknown {what} {value!r}; choose one of {', '.join(names(enum))}") from None


def _functional(model, role: str):
    """`model` if it is a Keras model with a graph of symbolic inputs and outputs (functional or Sequential)."""
    import keras

    if not isinstance(model, keras.Model):
        raise BadInputError(f"the {role} is a {type(model).__name__}, not a Keras model")
    try:
        inputs, outputs = model.inputs, model.outputs
    except (AttributeError, ValueError):
        inputs = outputs = None
    if not inputs or not outputs:
        raise BadInputError(f"the {role} ({model.name}) is a subclassed Keras model without a graph of inputs and "
                            "outputs; build it with the functional API (keras.Model(inputs, outputs)) or keras.Sequential")
    return model


def _shape(tensor) -> tuple:
    return tuple(None if d is None else int(d) for d in tensor.shape)


def _image_input(encoder) -> tuple[int, int, int]:
    if len(encoder.inputs) != 1:
        raise BadInputError(f"the encoder takes {len(encoder.inputs)} inputs; vae-edge exports encoders with one image "
                            "input (conditional models are supported for VAEs trained by vae-edge)")
    shape = _shape(encoder.inputs[0])
    if len(shape) != 4 or None in shape[1:]:
        raise BadInputError(f"the encoder takes {shape}; vae-edge exports encoders of images (None, height, width, "
                            "channels): add keras.layers.Reshape in front of a flat input")
    if shape[3] not in IMAGE_CHANNELS:
        raise BadInputError(f"the encoder takes {shape}: images need 1 (grayscale) or 3 (RGB) channels, last")
    return shape[1:]


def _encoder_roles(encoder, stated: Sequence[str] | None, log: Callable[[str], None]) -> list[LatentRole]:
    """The role of each encoder output: stated, else from the output names, else by position."""
    count = len(encoder.outputs)
    if count not in (2, 3):
        raise BadInputError(f"the encoder has {count} output(s); it must return z_mean and z_log_var, optionally "
                            "followed by a sampled z")
    if stated is not None:
        roles = [_choice(role, LatentRole, "encoder output") for role in stated]
        if len(roles) != count:
            raise BadInputError(f"--encoder-outputs names {len(roles)} roles for the encoder's {count} outputs")
    else:
        output_names = [str(name).lower() for name in encoder.output_names]
        roles = [next((role for role, pattern in ROLE_PATTERNS.items() if pattern.search(name)), None)
                 for name in output_names]
        if sorted(map(str, filter(None, roles))) != sorted(map(str, list(LatentRole)[:count])):
            roles = list(LatentRole)[:count]
            log(f"taking the encoder's outputs {', '.join(output_names)} as {', '.join(roles)} by their order "
                "(their names do not say; --encoder-outputs states them)")
    if sorted(map(str, roles)) != sorted(map(str, list(LatentRole)[:count])) or (count == 2 and LatentRole.SAMPLE in roles):
        raise BadInputError(f"the encoder's outputs must be one {LatentRole.MEAN} and one {LatentRole.LOG_VAR}"
                            f"{f' and one {LatentRole.SAMPLE}' if count == 3 else ''}, got {', '.join(map(str, roles))}")
    return roles


def _latent_width(encoder, roles: list[LatentRole]) -> int:
    shapes = {role: _shape(tensor) for role, tensor in zip(roles, encoder.outputs)}
    mean, log_var = shapes[LatentRole.MEAN], shapes[LatentRole.LOG_VAR]
    if len(mean) != 2 or mean[1] is None or mean != log_var:
        raise BadInputError(f"the encoder's z_mean is {mean} and its z_log_var {log_var}; both must be (None, latent_dim)")
    return mean[1]


def _check_decoder(decoder, latent_dim: int, image_shape: tuple[int, int, int]) -> None:
    if len(decoder.inputs) != 1 or len(decoder.outputs) != 1:
        raise BadInputError(f"the decoder takes {len(decoder.inputs)} input(s) and returns {len(decoder.outputs)}; "
                            "vae-edge exports decoders from z to one image")
    given, produced = _shape(decoder.inputs[0]), _shape(decoder.outputs[0])
    if given != (None, latent_dim):
        raise BadInputError(f"the decoder takes {given} but the encoder's z_mean is (None, {latent_dim})")
    if produced != (None, *image_shape):
        raise BadInputError(f"the decoder's output is {produced} but the encoder takes {(None, *image_shape)}")


# Layers that only move values around: a sigmoid before them is still the decoder's last activation.
SHAPE_ONLY_LAYERS = ("Reshape", "Flatten", "Permute", "Cropping2D")


def _producer(tensor):
    history = getattr(tensor, "_keras_history", None)
    return history[0] if history else None


def _final_layers(model) -> list:
    """The layers from the model's last activation to its (only) output: that layer, then any shape-only
    layers after it (a Dense with a sigmoid, then a Reshape to the image)."""
    chain, layer = [], _producer(model.outputs[0])
    while layer is not None and type(layer).__name__ in SHAPE_ONLY_LAYERS:
        chain.insert(0, layer)
        layer = _producer(layer.input)
    return [layer, *chain]


def _final_layer(model):
    """The layer whose activation is the model's last one."""
    return _final_layers(model)[0]


def _ends_in_sigmoid(model) -> bool:
    layer = _final_layer(model)
    activation = getattr(layer, "activation", None)
    return getattr(activation, "__name__", "") == "sigmoid" or type(layer).__name__ == "Sigmoid"


def _likelihood_and_output(decoder, likelihood, decoder_output) -> tuple[Likelihood, DecoderOutput]:
    """The likelihood and what the decoder outputs, from what the user said and whether it ends in a sigmoid."""
    layer = getattr(_final_layer(decoder), "name", "?")
    if _ends_in_sigmoid(decoder):
        if decoder_output == DecoderOutput.LOGITS:
            raise BadInputError(f"the decoder ends in a sigmoid ({layer}), so it outputs probabilities, not logits; "
                                "drop --decoder-output logits")
        return likelihood or Likelihood.BERNOULLI, DecoderOutput.PROBABILITIES
    if decoder_output == DecoderOutput.LOGITS:
        if likelihood == Likelihood.GAUSSIAN:
            raise BadInputError("a Gaussian decoder outputs means, not logits; drop --decoder-output logits")
        return Likelihood.BERNOULLI, DecoderOutput.LOGITS
    if decoder_output == DecoderOutput.PROBABILITIES or likelihood == Likelihood.GAUSSIAN:
        return likelihood or Likelihood.BERNOULLI, DecoderOutput.PROBABILITIES
    raise BadInputError(f"the decoder's last layer ({layer}) is not a sigmoid, so its output could be logits, "
                        "probabilities or Gaussian means: say --decoder-output logits (vae-edge adds the sigmoid), "
                        "--decoder-output probabilities, or --likelihood gaussian")


def _without_final_sigmoid(decoder):
    """The decoder up to its final sigmoid (an Activation layer, or a layer with a sigmoid activation,
    which is copied with a linear one and the same weights); None when it does not end in one."""
    if not _ends_in_sigmoid(decoder):
        return None
    import keras

    layer, *shape_only = _final_layers(decoder)
    if type(layer).__name__ == "Activation":
        logits = layer.input
    elif hasattr(layer, "activation") and hasattr(layer, "get_config"):
        twin = type(layer).from_config({**layer.get_config(), "activation": "linear", "name": f"{layer.name}_logits"})
        logits = twin(layer.input)
        twin.set_weights(layer.get_weights())
    else:
        return None
    for reshape in shape_only:  # the same stateless layers, on the logits
        logits = reshape(logits)
    return keras.Model(decoder.inputs, logits, name=f"{decoder.name}_logits")


# --- files -----------------------------------------------------------------------------------------


def load_graphs(model_path=None, *, encoder_path=None, decoder_path=None, custom_objects: Sequence[str] = (),
                likelihood: str | None = None, decoder_output: str | None = None,
                encoder_outputs: Sequence[str] | None = None, log: Callable[[str], None] = print) -> VaeGraphs:
    """The graphs of one `.keras` (a VAE trained by vae-edge, or a model exposing `encoder` and `decoder`),
    or of two (`encoder_path`, `decoder_path`), with the source recorded."""
    from vae_edge.model.vae import VAE

    if model_path is None and encoder_path is None and decoder_path is None:
        raise BadInputError("no model: give a model file, or its two halves with --encoder and --decoder")
    if model_path is not None and (encoder_path is not None or decoder_path is not None):
        raise BadInputError(f"{model_path} was taken as the model and --encoder/--decoder give one too: pass one, "
                            "not both (export writes to --out)")
    if model_path is None and (encoder_path is None or decoder_path is None):
        raise BadInputError("--encoder and --decoder go together: give both files")
    objects = import_custom_objects(custom_objects) if custom_objects else {}
    paths = [Path(p) for p in (model_path,) if p is not None] or [Path(encoder_path), Path(decoder_path)]
    loaded = [load_keras(p, objects, role) for p, role in zip(paths, ("model",) if model_path else ("encoder", "decoder"))]
    contract = {"likelihood": likelihood, "decoder_output": decoder_output,
                "encoder_outputs": tuple(encoder_outputs) if encoder_outputs else None}

    def source(kind: SourceKind) -> ModelSource:
        return ModelSource(kind, tuple(str(p.resolve()) for p in paths), tuple(sha256_of(p) for p in paths),
                           tuple(module_spec(m) for m in custom_objects), **contract)

    if model_path is not None and isinstance(loaded[0], VAE):
        if any(value is not None for value in contract.values()):
            raise BadInputError(f"{model_path} is a VAE trained by vae-edge, which records its own likelihood and "
                                "outputs; drop --likelihood, --decoder-output and --encoder-outputs")
        return graphs_of_vae(loaded[0], source(SourceKind.VAE_EDGE))
    if model_path is not None:
        model = loaded[0]
        encoder, decoder = getattr(model, "encoder", None), getattr(model, "decoder", None)
        if encoder is None or decoder is None:
            raise BadInputError(f"{model_path}: holds a {type(model).__name__} without `encoder` and `decoder` "
                                "sub-models; pass its two halves as --encoder ENC.keras --decoder DEC.keras")
        return vae_graphs(encoder, decoder, **contract, source=source(SourceKind.SUBMODELS), log=log)
    return vae_graphs(*loaded, **contract, source=source(SourceKind.ENCODER_DECODER), log=log)


def reload_graphs(source: ModelSource, custom_objects: Sequence[str] = (), log: Callable[[str], None] = print) -> VaeGraphs:
    """The graphs a bundle was exported from, loaded again from the files its manifest names. Modules the
    export imported for custom layers are imported again only when the caller names them (a manifest
    cannot make vae-edge run code)."""
    if source.kind == SourceKind.IN_MEMORY:
        raise BadInputError("this bundle was exported from Keras models in memory; pass the model files "
                            "(--model, or --encoder and --decoder), or re-judge its saved outputs with --rejudge")
    missing = source.missing_modules(custom_objects)
    if missing:
        raise BadInputError(f"this bundle's model needs its custom layers from {', '.join(missing)} (recorded in the "
                            f"manifest); pass --custom-objects {' --custom-objects '.join(missing)} to import them")
    paths = [Path(p) for p in source.paths]
    contract = {"likelihood": source.likelihood, "decoder_output": source.decoder_output,
                "encoder_outputs": source.encoder_outputs}
    if source.kind == SourceKind.ENCODER_DECODER:
        graphs = load_graphs(encoder_path=paths[0], decoder_path=paths[1], custom_objects=custom_objects, **contract,
                             log=log)
    else:
        graphs = load_graphs(paths[0], custom_objects=custom_objects, **contract, log=log)
    source.check_same_files(graphs.source)  # load_graphs hashed them
    return graphs
