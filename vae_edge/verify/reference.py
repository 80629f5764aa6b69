"""The reference runner: the Keras graphs a bundle was exported from, on the verification inputs."""

import numpy as np

from vae_edge.model.source import VaeGraphs
from vae_edge.registry import Graph
from vae_edge.signatures import RECONSTRUCTION, Z_LOG_VAR, Z_MEAN
from vae_edge.verify.inputs import VerifyInputs
from vae_edge.verify.outputs import KERAS, RunOutputs
from vae_edge.verify.runner import pipeline_outputs, where


def run_keras(graphs: VaeGraphs, inputs: VerifyInputs, posterior: tuple[np.ndarray, np.ndarray]) -> RunOutputs:
    """Per graph, its outputs on the inputs' feeds (what each artifact of that graph is compared with), and
    the Keras pipeline end to end (what each exported pipeline is compared with). `posterior` is the Keras
    encoder's (z_mean, z_log_var) of the images, whose z_mean the inputs' last latents are (`make_inputs`):
    the encoder is not run again, and the pipeline's reconstruction is the decoder's output on those rows."""
    decoded = graphs.decode(inputs.latents, inputs.latent_labels)
    run = RunOutputs(KERAS, where(), len(inputs.images))
    run.artifacts = {Graph.ENCODER.value: dict(zip((Z_MEAN, Z_LOG_VAR), posterior)),
                     Graph.DECODER.value: {RECONSTRUCTION: decoded}}
    run.pipelines = {KERAS: pipeline_outputs(graphs.encode, graphs.decode, inputs, graphs.reconstruction_loss,
                                             posterior, decoded[inputs.num_prior:])}
    return run
