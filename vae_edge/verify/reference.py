"""The reference runner: the Keras graphs a bundle was exported from, on the verification inputs."""

from vae_edge.model.source import VaeGraphs
from vae_edge.registry import Graph
from vae_edge.signatures import RECONSTRUCTION, Z_LOG_VAR, Z_MEAN
from vae_edge.verify.inputs import VerifyInputs
from vae_edge.verify.outputs import KERAS, RunOutputs
from vae_edge.verify.runner import pipeline_outputs, where


def run_keras(graphs: VaeGraphs, inputs: VerifyInputs) -> RunOutputs:
    """Per graph, its outputs on the inputs' feeds (what each artifact of that graph is compared with), and
    the Keras pipeline end to end (what each exported pipeline is compared with)."""
    z_mean, z_log_var = graphs.encode(inputs.images, inputs.labels)
    run = RunOutputs(KERAS, where(), len(inputs.images))
    run.artifacts = {Graph.ENCODER.value: {Z_MEAN: z_mean, Z_LOG_VAR: z_log_var},
                     Graph.DECODER.value: {RECONSTRUCTION: graphs.decode(inputs.latents, inputs.latent_labels)}}
    run.pipelines = {KERAS: pipeline_outputs(graphs.encode, graphs.decode, inputs, graphs.reconstruction_loss)}
    return run
