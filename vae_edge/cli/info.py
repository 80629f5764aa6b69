"""`vae-edge info`: a bundle, or a single model file, described for people."""

from pathlib import Path

import click

from vae_edge.bundle import Bundle
from vae_edge.registry import FORMATS, Format
from vae_edge.runtime.engines import InferenceEngine, open_artifact, open_engine


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


def describe_file(path: Path) -> str:
    """Signature, inputs, outputs and ops of one model file."""
    engine = open_engine(path)
    lines = [f"{path}  ({path.stat().st_size / 1024:.1f} KiB)"]
    if getattr(engine, "signature", None):
        lines.append(f"  signature: {engine.signature}")
    lines += [f"  input   {_tensor(t)}" for t in engine.inputs]
    lines += [f"  output  {_tensor(t)}" for t in engine.outputs]
    lines.append(f"  ops: {_ops(engine)}")
    return "\n".join(lines)


def describe_bundle(bundle: Bundle) -> str:
    """The model facts, then every artifact with its tensors, size and verification result."""
    model = bundle.model
    verification = bundle.manifest.get("verification", {}).get("artifacts", {})
    lines = [
        f"bundle {bundle.folder}",
        f"  model: {model.get('variant')} VAE, input {tuple(model['input_shape'])}, latent_dim {model['latent_dim']}, "
        f"{model['parameters']:,} parameters, trained in {model['trained_precision']}",
        f"  anomaly threshold: {bundle.manifest['anomaly']['threshold']:.2f} nats ({bundle.manifest['anomaly']['quantile']:.0%} of held-out images)",
        "  tools: " + ", ".join(f"{k} {v}" for k, v in bundle.manifest["tools"].items()),
    ]
    for artifact in bundle.artifacts:
        verdict = {True: "verified PASS", False: "verified FAIL"}.get(verification.get(artifact.key), "not verified")
        lines.append(f"\n{artifact.key}  {artifact.path}  {artifact.size_bytes / 1024:.1f} KiB  signature {artifact.signature}  {verdict}")
        lines += [f"    input   {_tensor(t)}" for t in artifact.inputs]
        lines += [f"    output  {_tensor(t)}" for t in artifact.outputs]
        if not FORMATS[Format(artifact.format)].folder:
            lines.append(f"    ops: {_ops(open_artifact(bundle, artifact))}")
    return "\n".join(lines)


@click.command()
@click.argument("path", type=click.Path(path_type=Path))
def info(path: Path) -> None:
    """Describe a bundle, or a single .tflite/.onnx file: inputs, outputs, quantization, ops."""
    click.echo(describe_file(path) if path.is_file() else describe_bundle(Bundle(path)))
