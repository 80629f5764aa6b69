"""Each exported graph described by its signature: named inputs and outputs with shapes and dtypes.

Writers, engines, calibration, verification, bench and the runtime feed and read graphs by
these names, so a graph with a second input (a class label, say) needs a change here only.
Names are the same in every format: SavedModel signature keys and TFLite signature runners,
ONNX graph inputs and outputs.
"""

from dataclasses import dataclass

from vae_edge.registry import Graph

# Tensor names.
IMAGE, Z, LABEL = "image", "z", "label"  # label: one-hot (N, K) float32, in conditional graphs only
Z_MEAN, Z_LOG_VAR, RECONSTRUCTION = "z_mean", "z_log_var", "reconstruction"
# The decoder's pre-sigmoid output, which integer-I/O files return so that 256 levels hold the small
# probabilities a Bernoulli likelihood needs; the runtime applies the sigmoid.
RECONSTRUCTION_LOGITS = "reconstruction_logits"
# Signature names (SavedModel and TFLite).
ENCODE, DECODE = "encode", "decode"

BATCH = None  # the symbolic batch dimension in a shape


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple[int | None, ...]  # BATCH (None) first
    dtype: str = "float32"

    def with_batch(self, batch: int | None) -> "TensorSpec":
        return TensorSpec(self.name, (batch, *self.shape[1:]), self.dtype)


@dataclass(frozen=True)
class GraphSpec:
    graph: Graph
    signature: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    @property
    def input_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.inputs)

    @property
    def output_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.outputs)


def graph_specs(image_shape, latent_dim: int, num_classes: int = 0) -> dict[Graph, GraphSpec]:
    """The encoder and decoder of a VAE for images of `image_shape` (H, W, C) and `latent_dim`;
    with `num_classes` > 0 both also take the one-hot `label`, after their first input."""
    image = (BATCH, *(int(d) for d in image_shape))
    latent = (BATCH, int(latent_dim))
    label = (TensorSpec(LABEL, (BATCH, int(num_classes))),) if num_classes else ()
    return {
        Graph.ENCODER: GraphSpec(Graph.ENCODER, ENCODE, (TensorSpec(IMAGE, image), *label),
                                 (TensorSpec(Z_MEAN, latent), TensorSpec(Z_LOG_VAR, latent))),
        Graph.DECODER: GraphSpec(Graph.DECODER, DECODE, (TensorSpec(Z, latent), *label),
                                 (TensorSpec(RECONSTRUCTION, image),)),
    }


def logits_spec(decoder: GraphSpec) -> GraphSpec:
    """The decoder without its final sigmoid: the same signature and inputs, `reconstruction_logits` out."""
    (reconstruction,) = decoder.outputs
    return GraphSpec(decoder.graph, decoder.signature, decoder.inputs,
                     (TensorSpec(RECONSTRUCTION_LOGITS, reconstruction.shape, reconstruction.dtype),))


SIGNATURES = {Graph.ENCODER: ENCODE, Graph.DECODER: DECODE}
