"""`vae-edge info`: a bundle, a SavedModel folder or a single model file, described for people.

Every name and value shown comes from a file someone else may have written (a manifest, a graph's
tensor names, embedded metadata), so each line is printed with its control characters escaped:
a crafted file cannot recolour the terminal or fake a line of output.
"""

from pathlib import Path

import click

from vae_edge.bundle import MANIFEST, Bundle, size_of
from vae_edge.errors import BadInputError, MissingFileError, first_line
from vae_edge.export.metadata import NoMetadataError
from vae_edge.export.metadata import describe_file as describe_metadata
from vae_edge.logs import native_stderr_silenced
from vae_edge.printable import printable
from vae_edge.registry import FORMATS, Engine, Format, install_hint
from vae_edge.runtime.engines import (
    InferenceEngine,
    format_of_path,
    installed,
    open_artifact,
    open_engine,
    require,
    tensor_spec,
)

SAVED_MODEL_FILES = ("saved_model.pb", "saved_model.pbtxt")  # what makes a folder a SavedModel
TAKES = "info takes an export bundle folder, a SavedModel folder or a .tflite, .onnx or .ort file"


def _tensor(spec) -> str:
    """One tensor of a manifest or an engine: `name: dtype[shape]` and its int8 parameters."""
    try:
        shape = "x".join("N" if d == -1 else str(int(d)) for d in spec["shape"])
        quantization = spec.get("quantization")
        q = f"  scale={float(quantization['scale']):.6g} zero_point={int(quantization['zero_point'])}" if quantization else ""
        return f"{spec['name']}: {spec['dtype']}[{shape}]{q}"
    except (KeyError, TypeError, ValueError, AttributeError):
        raise BadInputError(f"malformed tensor entry {printable(spec)[:120]}") from None


def _tensor_lines(artifact) -> list[str]:
    """A manifest artifact's inputs and outputs, refused in one line if either is malformed."""
    if not (isinstance(artifact.inputs, list) and isinstance(artifact.outputs, list)):
        raise BadInputError("inputs and outputs must be lists of tensor entries")
    return [f"    input   {_tensor(t)}" for t in artifact.inputs] + [f"    output  {_tensor(t)}" for t in artifact.outputs]


def _ops(engine: InferenceEngine) -> str:
    try:
        return ", ".join(engine.ops())
    except ModuleNotFoundError as error:
        return f"(listing them needs {error.name}: {install_hint(error.name) or 'not installed'})"


def phone_coverage(path: Path) -> str:
    """What a phone does with the file: how many nodes NNAPI and CoreML (ONNX) or the GPU delegate and
    XNNPACK (TFLite) take; 100 % means the whole graph runs on that accelerator."""
    try:
        from vae_edge.export.mobile import onnx_mobile_coverage, tflite_coverage
    except ModuleNotFoundError as error:  # a runtime-only install: describe the rest
        return f"phone: accelerator coverage needs {error.name} ({install_hint(error.name) or 'not installed'})"
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


def describe_file(path: Path) -> list[str]:
    """Signature, inputs, outputs, ops, accelerator coverage and the embedded metadata of one model file."""
    engine = open_engine(path)
    lines = [f"{path}  ({path.stat().st_size / 1024:.1f} KiB)"]
    if getattr(engine, "signature", None):
        lines.append(f"  signature: {engine.signature}")
    lines += [f"  input   {_tensor(t)}" for t in engine.inputs]
    lines += [f"  output  {_tensor(t)}" for t in engine.outputs]
    lines.append(f"  ops: {_ops(engine)}")
    coverage = phone_coverage(path)
    lines += [f"  {coverage}"] if coverage else []
    try:
        lines += ["", "embedded metadata:", *describe_metadata(path).splitlines()]
    except NoMetadataError as error:  # a file from before metadata, or another tool's; malformed metadata is an error
        lines.append(f"  no embedded metadata ({error})")
    return lines


def _graph_tensor(name: str, tensor) -> str:
    """A TensorFlow tensor or TensorSpec as `_tensor` shows a manifest's."""
    if tensor.shape.rank is None:
        return f"{name}: {tensor.dtype.name}[unknown rank]"
    return _tensor(tensor_spec(name, tensor.shape.as_list(), tensor.dtype.as_numpy_dtype))


def describe_savedmodel(folder: Path) -> list[str]:
    """Every signature of a SavedModel folder with its inputs and outputs (needs TensorFlow)."""
    require(Engine.TENSORFLOW)
    import tensorflow as tf

    try:
        with native_stderr_silenced():
            signatures = tf.saved_model.load(str(folder)).signatures
    except Exception as error:  # TensorFlow raises many types for a damaged SavedModel
        raise BadInputError(f"{folder}: TensorFlow cannot load this SavedModel ({first_line(error)})") from None
    lines = [f"{folder}  SavedModel ({size_of(folder) / 1024:.1f} KiB), signatures: {', '.join(signatures) or 'none'}"]
    for name, function in signatures.items():
        lines.append(f"  signature: {name}")
        for direction, tensors in (("input ", function.structured_input_signature[1]), ("output", function.structured_outputs)):
            lines += [f"    {direction}  {_graph_tensor(key, t)}" for key, t in tensors.items()]
    return lines


def describe_bundle(bundle: Bundle) -> list[str]:
    """The model facts, then every artifact with its tensors, size and verification result."""
    model, manifest = bundle.model, bundle.manifest
    verification = manifest.get("verification")
    verified = verification.get("artifacts") if isinstance(verification, dict) else None
    verified = verified if isinstance(verified, dict) else {}
    anomaly, tools = manifest["anomaly"], manifest.get("tools")
    quantile = anomaly.get("quantile")
    parameters = model.get("parameters")
    what = (f"{model['variant']} VAE" if model.get("variant") else
            f"Keras VAE ({model.get('encoder_name', '?')} and {model.get('decoder_name', '?')})")
    lines = [
        f"bundle {bundle.folder}",
        f"  model: {what}, input {tuple(model['input_shape'])}, latent_dim {model['latent_dim']}, "
        + (f"{parameters:,} parameters, " if isinstance(parameters, int) else "")
        + f"trained in {model.get('trained_precision', '?')}",
        f"  anomaly threshold: {anomaly['threshold']:.2f} nats"
        + (f" ({quantile:.0%} of held-out images)" if isinstance(quantile, (int, float)) else ""),
        "  tools: " + (", ".join(f"{k} {v}" for k, v in tools.items()) if isinstance(tools, dict) else "?"),
        *(f"  left out: {row.get('target')} ({row.get('stage')}): {row.get('reason')}"
          for row in manifest.get("rejected") or [] if isinstance(row, dict)),
    ]
    for artifact in bundle.artifacts:
        verdict = {True: "verified PASS", False: "verified FAIL"}.get(verified.get(artifact.key), "not verified")
        size = f"{artifact.size_bytes / 1024:.1f} KiB" if isinstance(artifact.size_bytes, int) else "? KiB"
        lines += ["", f"{artifact.key}  {artifact.path}  {size}  signature {artifact.signature}  {verdict}"]
        try:
            lines += _tensor_lines(artifact)
        except BadInputError as error:
            fix = "re-export the bundle with `vae-edge export`"
            raise BadInputError(f"{bundle.folder / MANIFEST}: {artifact.key}: {error}; {fix}") from None
        if not FORMATS[Format(artifact.format)].folder:
            lines.append(f"    ops: {_ops(open_artifact(bundle, artifact))}")
            coverage = phone_coverage(bundle.path_of(artifact, check=False))
            lines += [f"    {coverage}"] if coverage else []
    return lines


@click.command()
@click.argument("path", type=click.Path(path_type=Path))
def info(path: Path) -> None:
    """Describe a bundle folder, a SavedModel folder, or a single .tflite/.onnx/.ort file: inputs,
    outputs, quantization, ops."""
    if path.is_file():
        lines = describe_file(path)
    elif any((path / name).is_file() for name in SAVED_MODEL_FILES):
        lines = describe_savedmodel(path)
    elif path.is_dir() and not (path / MANIFEST).is_file():
        raise MissingFileError(f"{path}: no {MANIFEST} and no saved_model.pb; {TAKES}")
    elif not path.exists():
        raise MissingFileError(f"{path} does not exist; {TAKES}")
    else:
        lines = describe_bundle(Bundle(path))
    click.echo("\n".join(map(printable, lines)))  # one printed line per entry, whatever a file's text holds
