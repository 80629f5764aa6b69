"""Run a bundle's files on the verification inputs and keep what they produce: the runner half of
verification, TensorFlow-free (numpy and the engines), so it runs on an emulated CPU too:

    python -m vae_edge.verify.runner BUNDLE INPUTS.npz OUT.npz NAME [--images N] [--emulated]

`vae_edge.verify.comparator` judges the outputs; `vae_edge.verify.verifier` puts both together.
"""

import argparse
from collections.abc import Callable

import numpy as np

from vae_edge.bundle import Bundle
from vae_edge.cpu import cpu_class, cpu_identity
from vae_edge.elbo import conditioned, sampled_elbo_terms
from vae_edge.errors import BadInputError, MissingFileError, VaeEdgeError, first_line
from vae_edge.labels import label_feed
from vae_edge.registry import FORMATS, Format, Graph
from vae_edge.runtime.engines import InferenceEngine, installed, open_artifact
from vae_edge.signatures import IMAGE, RECONSTRUCTION, Z_LOG_VAR, Z_MEAN, Z
from vae_edge.verify.inputs import VerifyInputs
from vae_edge.verify.outputs import HOST, PipelineOutputs, RunOutputs, check_runner_name


def where(emulated: bool = False) -> dict:
    """The CPU a runner runs on, as its outputs record it (under emulation, the one /proc/cpuinfo names)."""
    return {"cpu_class": str(cpu_class()), **cpu_identity(), "emulated": emulated}


def pipeline_outputs(encode: Callable, decode: Callable, inputs: VerifyInputs, reconstruction_loss: str,
                     posterior: tuple[np.ndarray, np.ndarray] | None = None,
                     reconstruction: np.ndarray | None = None) -> PipelineOutputs:
    """One pipeline (numpy `encode(x[, labels])`/`decode(z[, labels])`) on the images: its posterior, its
    reconstruction at the posterior mean, and the per-image ELBO terms at one z drawn with the inputs' seed.
    `posterior` (z_mean, z_log_var) and `reconstruction`, where given, are this pipeline's own outputs on the
    images already computed, and are not run again."""
    encode, decode = conditioned(encode, decode, inputs.labels)
    z_mean, z_log_var = encode(inputs.images) if posterior is None else posterior
    nll, kl = sampled_elbo_terms(inputs.images, z_mean, z_log_var, decode, reconstruction_loss,
                                 np.random.default_rng(inputs.seed))
    return PipelineOutputs(z_mean, z_log_var, decode(z_mean) if reconstruction is None else reconstruction, nll, kl)


def engine_functions(encoder: InferenceEngine, decoder: InferenceEngine, num_classes: int = 0):
    """numpy `encode(x[, labels])`/`decode(z[, labels])` over two engines; labels are class indices, fed as
    the graphs' one-hot `label` when the model is conditional."""

    def encode(x, labels=None):
        out = encoder.run({IMAGE: x, **label_feed(labels, num_classes)})
        return out[Z_MEAN], out[Z_LOG_VAR]

    def decode(z, labels=None):
        return decoder.run({Z: z, **label_feed(labels, num_classes)})[RECONSTRUCTION]

    return encode, decode


def run_bundle(bundle: Bundle, inputs: VerifyInputs, name: str = HOST, emulated: bool = False) -> RunOutputs:
    """Every artifact of the bundle that an installed engine runs, on the inputs, and every such pipeline end to
    end; where TensorFlow is missing (a TF-free install, an emulated ARM core), and on any emulated CPU (it
    stands for a device, which runs the runtime's formats), the SavedModel is left out. The files are opened
    unchecked: the caller checks them against the manifest first (`Bundle.check_all`)."""
    class_names = tuple(bundle.model.get("class_names") or ())
    loss = bundle.model["reconstruction_loss"]
    run = RunOutputs(name, where(emulated), len(inputs.images))
    engines = {}
    for artifact in bundle.artifacts:
        info = FORMATS[Format(artifact.format)]
        if not installed(info.engine) or (emulated and not info.runtime):  # an emulated CPU stands for a device
            continue
        engine = engines[artifact.key] = open_artifact(bundle, artifact, check=False)
        run.artifacts[artifact.key] = engine.run(inputs.feeds(Graph(artifact.graph), len(class_names)))
    for target in bundle.targets():
        members = bundle.pipeline(target)
        if not all(artifact.key in engines for artifact in members.values()):
            continue
        functions = engine_functions(engines[members[Graph.ENCODER].key], engines[members[Graph.DECODER].key],
                                     len(class_names))
        run.pipelines[target.key] = pipeline_outputs(*functions, inputs, loss)
    return run


def positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive whole number")
    return int(text)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle")
    parser.add_argument("inputs", help="the bundle's verify/inputs.npz")
    parser.add_argument("out", help="where to write the outputs (.npz)")
    parser.add_argument("name", help="the CPU this runs on, as the report will name it (pixel-7, cortex-a53)")
    parser.add_argument("--images", type=positive, help="run the first N images only (and as many latents of each kind)")
    parser.add_argument("--emulated", action="store_true", help="this process runs under an emulator")
    args = parser.parse_args(argv)
    try:
        name = check_runner_name(args.name)
        inputs = VerifyInputs.load(args.inputs).subset(args.images)
        bundle = Bundle(args.bundle)
        bundle.check_all()
        run_bundle(bundle, inputs, name, args.emulated).save(args.out)
    except VaeEdgeError as error:
        parser.exit(2 if isinstance(error, BadInputError | MissingFileError) else 1,
                    f"{parser.prog}: error: {first_line(error)}\n")


if __name__ == "__main__":
    main()
