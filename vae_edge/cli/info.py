"""`vae-edge info`: a bundle, or a single model file, described for people."""

from pathlib import Path

import click

from vae_edge.bundle import Bundle
from vae_edge.errors import BadInputError
from vae_edge.export.metadata import describe_file as describe_metadata
from vae_edge.registry import FORMATS, Engine, Format
from vae_edge.runtime.engines import InferenceEngine, format_of_path, installed, open_artifact, open_engine


def _tensor(spec: dict) -> str:
    shape = "x".join("N" if d == -1 else str(d) for d in spec["shape"])
    quantization = spec.get("quantization")
    q = f"  scale={quantization['scale']:.6g} zero_point={quantization['zero_point']}" if quantization else ""
    return f"{spec['name']}: {spec['dtype']}[{shape}]{q}"


def _ops(engine: InferenceEngine) -> str:
    try:
        return ", ".join(engine.ops())
    except ImportError:
        return "(install the onnx package to list them)"


def phone_coverage(path: Path) -> str:
    """What a phone does with the file: how many nodes NNAPI and CoreML (ONNX) or the GPU delegate and
    XNNPACK (TFLite) take; 100 % means the whole graph runs on that accelerator."""
    from vae_edge.export.mobile import onnx_mobile_coverage, tflite_coverage

    fmt = format_of_path(path)
    if fmt == Format.ONNX:
        coverage = {name: onnx_mobile_coverage(path)[name] for name in ("nnapi", "coreml_mlprogram", "coreml_neuralnetwork")}
    elif fmt == Format.TFLITE:
        if not installed(Engine.TENSORFLOW):
            return "phone: install vae-edge[cpu] to analyze GPU-delegate coverage"
        coverage = tflite_coverage(path)
    else:
        return ""
    parts = [f"{name} {c['supported_nodes']}/{c['nodes']} ({c['percent']:g} %)" for name, c in coverage.items()]
    return "phone: " + ", ".join(parts)


def describe_file(path: Path) -> str:
    """Signature, inputs, outputs, ops, accelerator coverage and the embedded metadata of one model file."""
    engine = open_engine(path)
    lines = [f"{path}  ({path.stat().st_size / 1024:.1f} KiB)"]
    if getattr(engine, "signature", None):
        lines.append(f"  signature: {engine.signature}")
    lines += [f"  input   {_tensor(t)}" for t in engine.inputs]
    lines += [f"  output  {_tensor(t)}" for t in engine.outputs]
    lines.append(f"  ops: {_ops(engine)}")
    lines.append(f"  {phone_coverage(path)}")
    try:
        lines += ["", "embedded metadata:", describe_metadata(path)]
    except BadInputError as error:  # a file from before metadata, or another tool's
        lines.append(f"  no embedded metadata ({error})")
    return "\n".join(lines)


def describe_bundle(bundle: Bundle) -> str:
    """The model facts, then every artifact with its tensors, size and verification result."""
    model = bundle.model
    verification = bundle.manifest.get("verification", {}).get("artifacts", {})
    lines = [
        f"bundle {bundle.folder}",
        f"  model: {model.get('variant')} VAE, input {tuple(model['input_shape'])}, latent_dim {model['latent_dim']}, "
        f"{model['parameters']:,} parameters, trained in {model['trained_precision']}",
        f"  anomaly threshold: {bundle.manifest['anomaly']['threshold']:.2f} nats "
        f"({bundle.manifest['anomaly']['quantile']:.0%} of held-out images)",
        "  tools: " + ", ".join(f"{k} {v}" for k, v in bundle.manifest["tools"].items()),
    ]
    for artifact in bundle.artifacts:
        verdict = {True: "verified PASS", False: "verified FAIL"}.get(verification.get(artifact.key), "not verified")
        lines.append(
            f"\n{artifact.key}  {artifact.path}  {artifact.size_bytes / 1024:.1f} KiB  signature {artifact.signature}  {verdict}"
        )
        lines += [f"    input   {_tensor(t)}" for t in artifact.inputs]
        lines += [f"    output  {_tensor(t)}" for t in artifact.outputs]
        if not FORMATS[Format(artifact.format)].folder:
            lines.append(f"    ops: {_ops(open_artifact(bundle, artifact))}")
            coverage = phone_coverage(bundle.path_of(artifact, check=False))
            lines += [f"    {coverage}"] if coverage else []
    return "\n".join(lines)


@click.command()
@click.argument("path", type=click.Path(path_type=Path))
def info(path: Path) -> None:
    """Describe a bundle, or a single .tflite/.onnx file: inputs, outputs, quantization, ops."""
    click.echo(describe_file(path) if path.is_file() else describe_bundle(Bundle(path)))
