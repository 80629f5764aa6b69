"""What a model file says about itself, embedded in the file, for an app that has only that file.

A `.tflite` or `.onnx` copied out of a bundle loses its `manifest.json`; with these fields an
app still knows what the graph is, what its inputs mean and in which range (int8 scale and
zero point included), the image shape, the latent size and how to draw z from the prior.

- TFLite: an entry named `vae_edge` in the flatbuffer's `Model.metadata` list, pointing at a
  buffer that holds UTF-8 JSON (the schema's `Metadata{name, buffer}`; LiteRT ignores entries
  it does not know, and the signature defs are kept). Written with the flatbuffers schema that
  ai-edge-litert ships (`ai_edge_litert.schema_py_generated`); tflite-support has no current wheels.
- ONNX: the same JSON under the key `vae_edge` of `ModelProto.metadata_props`, which
  onnxruntime shows as `session.get_modelmeta().custom_metadata_map` (ORT format files keep it).

`examples/app_from_metadata.py` reads these fields with the raw flatbuffer and onnx APIs.
"""

import importlib.util
import json
from pathlib import Path

from vae_edge import __version__
from vae_edge.bundle import SCHEMA_VERSION
from vae_edge.errors import BadInputError, MissingFileError, first_line
from vae_edge.fsutil import write_bytes
from vae_edge.printable import printable
from vae_edge.prior import REFERENCE_SEEDS, reference_vectors
from vae_edge.registry import FORMATS, Format, Graph, Mode, format_of_suffix
from vae_edge.signatures import IMAGE, LABEL, RECONSTRUCTION, RECONSTRUCTION_LOGITS, SIGNATURES, Z_LOG_VAR, Z_MEAN, Z

KEY = "vae_edge"  # TFLite metadata name and ONNX metadata_props key
TFLITE_IDENTIFIER = b"TFL3"
PRIOR = {
    "distribution": "z ~ N(0, I), independent standard normals, one row of latent_size per image",
    "algorithm": "lowbias32 counter hash + Box-Muller (vae-edge portable prior)",
    "spec": "vae_edge/prior.py in the vae-edge package: ALGORITHM there is the algorithm, in full (also in each bundle README)",
    "seed_range": [0, 2**32 - 1],
}
MEANINGS = {
    IMAGE: "image pixels, channels last (NHWC), 0 = black, 1 = white",
    Z: "latent code; draw it from the prior, or use an encoder's z_mean",
    Z_MEAN: "mean of the approximate posterior q(z | image)",
    Z_LOG_VAR: "log-variance of the approximate posterior q(z | image); std = exp(z_log_var / 2)",
    RECONSTRUCTION: "decoded image, channels last (NHWC), pixel intensities in [0, 1]",
    RECONSTRUCTION_LOGITS: "decoded image before its sigmoid, channels last (NHWC): pixel = 1 / (1 + exp(-logit))",
    LABEL: "class of the image, one-hot: 1 at the class index (see class_names), 0 elsewhere",
}
RANGES = {IMAGE: [0.0, 1.0], RECONSTRUCTION: [0.0, 1.0], LABEL: [0.0, 1.0]}  # tensors without a range are unbounded


def metadata_fields(model_facts: dict, graph: str, mode: str, inputs: list[dict], outputs: list[dict]) -> dict:
    """The embedded fields of one graph file, from what the exporter knows.

    `model_facts` is the manifest's `model` section (needs `input_shape` and `latent_dim`);
    `inputs` and `outputs` are the artifact's tensors as in the manifest (`name`, `shape`,
    `dtype`, `quantization` {scale, zero_point} or None).
    """
    graph, mode = Graph(graph), Mode(mode)
    try:
        image_shape, latent_size = [int(d) for d in model_facts["input_shape"]], int(model_facts["latent_dim"])
    except (KeyError, TypeError, ValueError) as error:
        raise BadInputError(f"model facts need input_shape [H, W, C] and latent_dim; {first_line(error)}") from None
    return {
        "vae_edge_version": __version__,
        "bundle_schema_version": SCHEMA_VERSION,
        "graph": str(graph),
        "mode": str(mode),
        "signature": SIGNATURES[graph],
        "variant": model_facts.get("variant"),
        "image_shape": image_shape,
        "latent_size": latent_size,
        "class_names": model_facts.get("class_names"),
        "inputs": [_describe(tensor, latent_size) for tensor in inputs],
        "outputs": [_describe(tensor, latent_size) for tensor in outputs],
        "prior": {**PRIOR, "reference_vectors": {str(seed): values for seed, values in reference_vectors().items()}},
    }


def _describe(tensor: dict, latent_size: int) -> dict:
    """A tensor's manifest entry plus what it means and the range of its values."""
    name, quantization = tensor["name"], tensor.get("quantization")
    meaning = MEANINGS.get(name, "")
    if name == Z:
        meaning = f"{meaning}; z ~ N(0, I) of width {latent_size}"
    described = {**tensor, "meaning": meaning, "range": RANGES.get(name)}
    if quantization:
        described["quantized_as"] = (
            f"{tensor['dtype']} with scale {float(quantization['scale']):.9g} and zero_point {int(quantization['zero_point'])}: "
            "real = (q - zero_point) * scale, q = clip(round(real / scale + zero_point), -128, 127)"
        )
    return described


def embed_tflite(path_or_bytes, fields: dict) -> bytes:
    """The .tflite flatbuffer with `fields` as JSON in its `vae_edge` metadata entry (replaced if present)."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    data = _tflite_bytes(path_or_bytes)
    model = schema.ModelT.InitFromPackedBuf(data, 0)
    payload = schema.BufferT()
    payload.data = json.dumps(fields, sort_keys=True).encode()
    model.metadata = model.metadata or []
    existing = next((entry for entry in model.metadata if entry.name.decode() == KEY), None)
    if existing is None:
        model.buffers.append(payload)
        entry = schema.MetadataT()
        entry.name, entry.buffer = KEY, len(model.buffers) - 1
        model.metadata.append(entry)
    else:
        model.buffers[existing.buffer] = payload
    builder = flatbuffers.Builder(len(data) + len(payload.data) + 1024)
    builder.Finish(model.Pack(builder), file_identifier=TFLITE_IDENTIFIER)
    return bytes(builder.Output())


def embed_onnx(model, fields: dict):
    """`model` (an onnx.ModelProto, changed in place and returned) with `fields` under metadata_props `vae_edge`."""
    kept = [prop for prop in model.metadata_props if prop.key != KEY]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    prop = model.metadata_props.add()
    prop.key, prop.value = KEY, json.dumps(fields, sort_keys=True)
    return model


def embed_file(path, fields: dict) -> Path:
    """Embed `fields` into the .tflite or .onnx file at `path`, replacing it atomically."""
    path = Path(path)
    fmt = _format_of(path)
    if fmt == Format.TFLITE:
        data = embed_tflite(path, fields)
    else:
        import onnx

        data = embed_onnx(onnx.load(str(path)), fields).SerializeToString()
    return write_bytes(path, data)


class NoMetadataError(BadInputError):
    """The file carries no `vae_edge` entry at all: another tool's file, or one from before metadata."""


def _is_int(value, least: int | None = None) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and (least is None or value >= least)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _tensor_problem(tensor) -> str | None:
    if not isinstance(tensor, dict):
        return "is not an object"
    if not all(isinstance(tensor.get(key), str) for key in ("name", "dtype", "meaning")):
        return "needs text name, dtype and meaning"
    if not isinstance(tensor.get("shape"), list) or not all(_is_int(d, -1) for d in tensor["shape"]):
        return "needs a shape of integers (-1 for a dynamic dimension)"
    if tensor.get("range") is not None and not (
        isinstance(tensor["range"], list) and len(tensor["range"]) == 2 and all(map(_is_number, tensor["range"]))
    ):
        return "has a range that is not [low, high]"
    if tensor.get("quantized_as") is not None and not isinstance(tensor["quantized_as"], str):
        return "has a quantized_as that is not text"
    return None


def metadata_problem(fields) -> str | None:
    """What keeps `fields` from being the embedded metadata this version reads, or None: checked once,
    when read, so a malformed or hostile file is refused in one line instead of failing deep inside."""
    if not isinstance(fields, dict):
        return f"expected a JSON object, got {type(fields).__name__}"
    missing = sorted(set(REQUIRED_FIELDS) - set(fields))
    if missing:
        return f"missing fields {missing}"
    wrong = [key for key, check in REQUIRED_FIELDS.items() if not check(fields[key])]
    if wrong:
        return f"malformed fields {sorted(wrong)}"
    for direction in ("inputs", "outputs"):
        for index, tensor in enumerate(fields[direction]):
            problem = _tensor_problem(tensor)
            if problem:
                return f"{direction}[{index}] {problem}"
    prior = fields["prior"]
    if not all(isinstance(prior.get(key), str) for key in ("algorithm", "spec")):
        return "prior needs text algorithm and spec"
    vectors = prior.get("reference_vectors")
    if not isinstance(vectors, dict) or not all(
        isinstance(values, list) and all(map(_is_number, values)) for values in vectors.values()
    ):
        return "prior.reference_vectors must map seeds to lists of numbers"
    return None


# The fields `describe_file` shows and what each must be; others (a newer writer's) are let through.
REQUIRED_FIELDS = {
    "vae_edge_version": lambda v: isinstance(v, str),
    "bundle_schema_version": _is_int,
    "graph": lambda v: v in set(Graph),
    "mode": lambda v: v in set(Mode),
    "signature": lambda v: isinstance(v, str),
    "variant": lambda v: v is None or isinstance(v, str),
    "image_shape": lambda v: isinstance(v, list) and len(v) == 3 and all(_is_int(d, 1) for d in v),
    "latent_size": lambda v: _is_int(v, 1),
    "class_names": lambda v: v is None or (isinstance(v, list) and all(isinstance(name, str) for name in v)),
    "inputs": lambda v: isinstance(v, list),
    "outputs": lambda v: isinstance(v, list),
    "prior": lambda v: isinstance(v, dict),
}


def read_metadata(path) -> dict:
    """The embedded fields of a .tflite, .onnx or .ort file, from the file alone, checked
    (`metadata_problem`): `NoMetadataError` if it has none, `BadInputError` if they are malformed."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"{path} does not exist; pass a .tflite, .onnx or .ort model file")
    text = _embedded_text(path)
    if text is None:
        raise NoMetadataError(f"{path} carries no {KEY} metadata; export it again with this vae-edge ({__version__})")
    fix = f"export it again with this vae-edge ({__version__})"
    try:
        fields = json.loads(text)
    except (ValueError, RecursionError) as error:  # not JSON, or nested past the parser's depth
        raise BadInputError(f"{path}: its {KEY} metadata is not valid JSON ({first_line(error)}); {fix}") from None
    problem = metadata_problem(fields)
    if problem:
        raise BadInputError(f"{path}: its {KEY} metadata is malformed ({printable(problem)}); {fix}")
    return fields


def _embedded_text(path: Path) -> str | None:
    """The raw `vae_edge` entry of a model file, None if it has none."""
    fmt = Format.ORT if path.suffix == FORMATS[Format.ORT].suffix else _format_of(path)
    try:
        if fmt == Format.TFLITE:
            return _tflite_metadata(_tflite_bytes(path))
        if fmt == Format.ONNX and importlib.util.find_spec("onnx") is not None:
            import onnx

            return next((p.value for p in onnx.load(str(path), load_external_data=False).metadata_props if p.key == KEY), None)
        import onnxruntime  # an ORT-format file, or an ONNX file in a runtime-only install (no onnx package)

        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return session.get_modelmeta().custom_metadata_map.get(KEY)
    except BadInputError as error:
        raise BadInputError(f"{path}: {error}") from None
    except ModuleNotFoundError:
        raise  # the command line names the extra to install
    except Exception as error:  # each reader raises its own types for a damaged file
        raise BadInputError(f"{path}: cannot read its metadata ({printable(first_line(error))}); "
                            "pass a model file that vae-edge exported") from None


def describe_file(path) -> str:
    """The embedded fields as lines for `vae-edge info FILE` (a model file copied out of its bundle),
    control characters escaped: the file, not this program, wrote every value."""
    fields = read_metadata(path)
    lines = [
        f"{Path(path).name}: {fields['graph']} ({fields['mode']}), signature {fields['signature']}, "
        f"vae-edge {fields['vae_edge_version']}, bundle schema {fields['bundle_schema_version']}",
        f"image shape {fields['image_shape']} (H, W, C), latent size {fields['latent_size']}, "
        f"class names {fields['class_names']}",
    ]
    for direction in ("inputs", "outputs"):
        for tensor in fields[direction]:
            name, dtype, shape = tensor["name"], tensor["dtype"], tensor["shape"]
            lines.append(f"  {direction[:-1]:<6} {name:<16} {dtype:<8} {shape}  {tensor['meaning']}")
            if tensor.get("range"):
                lines.append(f"         range {tensor['range']}")
            if tensor.get("quantized_as"):
                lines.append(f"         {tensor['quantized_as']}")
    prior = fields["prior"]
    lines.append(f"prior: {prior['algorithm']}; spec: {prior['spec']}")
    seed = str(REFERENCE_SEEDS[0])
    if seed in prior["reference_vectors"]:
        lines.append(f"  seed {seed} -> {prior['reference_vectors'][seed]}")
    return "\n".join(map(printable, lines))


def _format_of(path: Path) -> Format:
    fmt = format_of_suffix(path.suffix)
    if fmt not in (Format.TFLITE, Format.ONNX):
        raise BadInputError(f"{path} is not a .tflite or .onnx file; metadata lives only in those")
    return fmt


def _tflite_bytes(path_or_bytes) -> bytes:
    data = bytes(path_or_bytes) if isinstance(path_or_bytes, (bytes, bytearray)) else Path(path_or_bytes).read_bytes()
    if data[4:8] != TFLITE_IDENTIFIER:
        raise BadInputError("not a TFLite flatbuffer (no TFL3 identifier); pass a .tflite file written by LiteRT")
    return data


def _tflite_metadata(data: bytes) -> str | None:
    from ai_edge_litert import schema_py_generated as schema

    model = schema.Model.GetRootAs(data, 0)
    for index in range(model.MetadataLength()):
        entry = model.Metadata(index)
        if entry.Name() == KEY.encode():
            if not 0 <= entry.Buffer() < model.BuffersLength():
                raise BadInputError(f"its {KEY} metadata entry points at buffer {entry.Buffer()}, which does not exist")
            buffer = model.Buffers(entry.Buffer())
            # A buffer is stored inline, or (in a model past 2 GiB) at an offset after the flatbuffer.
            start = buffer.Offset()
            raw = buffer.DataAsNumpy().tobytes() if buffer.DataLength() else data[start : start + buffer.Size()]
            return raw.decode()
    return None
