"""Run a bundle's files on the verification inputs and keep what they produce: the runner half of
verification, TensorFlow-free (numpy and the engines), so it runs on an emulated CPU too:

    python -m vae_edge.verify.runner BUNDLE INPUTS.npz OUT.npz NAME [--emulating CPU_CLASS]

`vae_edge.verify.comparator` judges the outputs; `vae_edge.verify.verifier` puts both together.
"""

import argparse
from collections.abc import Callable

from vae_edge.bundle import Bundle
from vae_edge.cpu import cpu_class, cpu_identity
from vae_edge.elbo import conditioned, evaluate_pipeline
from vae_edge.labels import label_feed
from vae_edge.registry import Graph
from vae_edge.runtime.engines import InferenceEngine, open_artifact
from vae_edge.signatures import IMAGE, RECONSTRUCTION, Z_LOG_VAR, Z_MEAN, Z
from vae_edge.verify.inputs import VerifyInputs
from vae_edge.verify.outputs import PipelineOutputs, RunOutputs

HOST = "host"  # this machine's runner


def where(emulating: str | None = None) -> dict:
    """The CPU a runner runs on, as its outputs record it: this machine's, or the class an emulator stands for
    (qemu's x86 user mode shows the host's own /proc/cpuinfo)."""
    return {"cpu_class": emulating or str(cpu_class()), **cpu_identity(), "emulated": emulating is not None}


def pipeline_scores(encode: Callable, decode: Callable, inputs: VerifyInputs, reconstruction_loss: str,
                    class_names) -> PipelineOutputs:
    """One pipeline (numpy `encode(x, labels)`/`decode(z, labels)`) on the images: its posterior, its
    reconstruction at the posterior mean, and its ELBO scores (per class with labels)."""
    encode, decode = repeat_last(encode), repeat_last(decode)
    scores = evaluate_pipeline(*conditioned(encode, decode, inputs.labels), inputs.images,
                               reconstruction_loss=reconstruction_loss, seed=inputs.seed, classes=inputs.labels,
                               class_names=class_names if inputs.labels is not None else ())
    z_mean, z_log_var = encode(inputs.images, inputs.labels)
    return PipelineOutputs(z_mean, z_log_var, decode(z_mean, inputs.labels), scores)


def repeat_last(function):
    """`function`, answering a call with the very same argument objects as the previous call from
    memory: a pipeline's ELBO and its end-to-end check both encode the images and decode their
    posterior mean, and fixed-shape files run those a row at a time."""
    last: dict = {}

    def call(*args):
        if not (last and len(args) == len(last["args"]) and all(a is b for a, b in zip(args, last["args"]))):
            last.update(args=args, result=function(*args))
        return last["result"]

    return call


def engine_functions(encoder: InferenceEngine, decoder: InferenceEngine, num_classes: int = 0):
    """numpy `encode(x[, labels])`/`decode(z[, labels])` over two engines; labels are class indices, fed as
    the graphs' one-hot `label` when the model is conditional."""

    def encode(x, labels=None):
        out = encoder.run({IMAGE: x, **label_feed(labels, num_classes)})
        return out[Z_MEAN], out[Z_LOG_VAR]

    def decode(z, labels=None):
        return decoder.run({Z: z, **label_feed(labels, num_classes)})[RECONSTRUCTION]

    return encode, decode


def run_bundle(bundle: Bundle, inputs: VerifyInputs, name: str = HOST, emulating: str | None = None) -> RunOutputs:
    """Every artifact of the bundle on the inputs, and every pipeline end to end (files checked first)."""
    bundle.check_all()
    class_names = tuple(bundle.model.get("class_names") or ())
    loss = bundle.model["reconstruction_loss"]
    run = RunOutputs(name, where(emulating))
    engines = {}
    for artifact in bundle.artifacts:
        engine = engines[artifact.key] = open_artifact(bundle, artifact, check=False)
        run.artifacts[artifact.key] = engine.run(inputs.feeds(Graph(artifact.graph), len(class_names)))
    for target in bundle.targets():
        members = bundle.pipeline(target)
        functions = engine_functions(engines[members[Graph.ENCODER].key], engines[members[Graph.DECODER].key],
                                     len(class_names))
        run.pipelines[target.key] = pipeline_scores(*functions, inputs, loss, class_names)
    return run


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle")
    parser.add_argument("inputs")
    parser.add_argument("out")
    parser.add_argument("name")
    parser.add_argument("--emulating", help="the CPU class the emulator stands for")
    args = parser.parse_args(argv)
    run_bundle(Bundle(args.bundle), VerifyInputs.load(args.inputs), args.name, args.emulating).save(args.out)


if __name__ == "__main__":
    main()
