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

import json
from pathlib import Path

from vae_edge import __version__
from vae_edge.bundle import SCHEMA_VERSION
from vae_edge.errors import BadInputError, MissingFileError, first_line
from vae_edge.fsutil import write_bytes
from vae_edge.prior import REFERENCE_SEEDS, reference_vectors
from vae_edge.registry import FORMATS, Format, Graph, Mode, format_of_suffix
from vae_edge.signatures import IMAGE, LABEL, RECONSTRUCTION, SIGNATURES, Z_LOG_VAR, Z_MEAN, Z

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


def read_metadata(path) -> dict:
    """The embedded fields of a .tflite, .onnx or .ort file, from the file alone."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"{path} does not exist; pass a .tflite, .onnx or .ort model file")
    if path.suffix == FORMATS[Format.ORT].suffix:
        import onnxruntime

        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        text = session.get_modelmeta().custom_metadata_map.get(KEY)
    elif _format_of(path) == Format.TFLITE:
        text = _tflite_metadata(_tflite_bytes(path))
    else:
        import onnx

        text = next((p.value for p in onnx.load(str(path), load_external_data=False).metadata_props if p.key == KEY), None)
    if text is None:
        raise BadInputError(f"{path} carries no {KEY} metadata; export it again with this vae-edge ({__version__})")
    return json.loads(text)


def describe_file(path) -> str:
    """The embedded fields as lines for `vae-edge info FILE` (a model file copied out of its bundle)."""
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
    seed = str(REFERENCE_SEEDS[0])
    lines.append(f"prior: {prior['algorithm']}; spec: {prior['spec']}")
    lines.append(f"  seed {seed} -> {prior['reference_vectors'][seed]}")
    return "\n".join(lines)


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
        if entry.Name().decode() == KEY:
            return model.Buffers(entry.Buffer()).DataAsNumpy().tobytes().decode()
    return None
