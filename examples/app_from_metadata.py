"""An app that has nothing but one decoder file: read its embedded metadata, draw z, decode, save a grid.

    python examples/app_from_metadata.py decoder.int8-io.b1.tflite -n 16 --seed 0 -o grid.png
    python examples/app_from_metadata.py decoder.float32.onnx -o grid.png

No vae_edge import and no manifest: the facts come from the file (the `vae_edge` entry of a
.tflite's flatbuffer metadata, or of an .onnx's metadata_props), the prior is ported inline
from its spec, and the model runs on the raw LiteRT interpreter or an onnxruntime session.
Needs numpy, Pillow, flatbuffers and ai-edge-litert (for .tflite) or onnx and onnxruntime (.onnx).
"""

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np
from PIL import Image

KEY = "vae_edge"


def read_fields(path: Path) -> dict:
    """The embedded JSON, through the TFLite flatbuffer schema or the ONNX protobuf."""
    if path.suffix == ".tflite":
        from ai_edge_litert import schema_py_generated as schema

        model = schema.Model.GetRootAs(path.read_bytes(), 0)
        for index in range(model.MetadataLength()):
            entry = model.Metadata(index)
            if entry.Name().decode() == KEY:
                return json.loads(model.Buffers(entry.Buffer()).DataAsNumpy().tobytes())
    else:
        import onnx

        for prop in onnx.load(str(path), load_external_data=False).metadata_props:
            if prop.key == KEY:
                return json.loads(prop.value)
    sys.exit(f"{path} has no {KEY} metadata; export it with vae-edge, or use the bundle's manifest")


def prior(count: int, width: int, seed: int) -> np.ndarray:
    """z ~ N(0, I), (count, width) float32: the portable prior (lowbias32 hash + Box-Muller), ported from its spec."""
    def mix32(x: int) -> int:
        x ^= x >> 16
        x = (x * 0x7FEB352D) & 0xFFFFFFFF
        x ^= x >> 15
        x = (x * 0x846CA68B) & 0xFFFFFFFF
        return x ^ (x >> 16)

    def uniform(k: int) -> float:
        bits = mix32(mix32(seed) ^ mix32((k + 0x9E3779B9) & 0xFFFFFFFF))
        return ((bits >> 8) + 0.5) / 2.0**24

    normals = []
    for pair in range((count * width + 1) // 2):
        radius = math.sqrt(-2.0 * math.log(uniform(2 * pair)))
        angle = 2.0 * math.pi * uniform(2 * pair + 1)
        normals += [radius * math.cos(angle), radius * math.sin(angle)]
    return np.array(normals[: count * width], np.float32).reshape(count, width)


def check_prior(fields: dict) -> None:
    """The port against the reference vectors the file carries."""
    for seed, expected in fields["prior"]["reference_vectors"].items():
        got = prior(1, len(expected), int(seed))[0]
        if np.abs(got - np.array(expected, np.float32)).max() > 1e-6:
            sys.exit(f"prior port disagrees with the reference vector of seed {seed}")


def quantize(x: np.ndarray, tensor: dict) -> np.ndarray:
    q = tensor.get("quantization")
    if tensor["dtype"] != "int8" or not q:
        return x.astype(np.float32)
    return np.clip(np.round(x / q["scale"] + q["zero_point"]), -128, 127).astype(np.int8)


def dequantize(x: np.ndarray, tensor: dict) -> np.ndarray:
    q = tensor.get("quantization")
    if tensor["dtype"] != "int8" or not q:
        return x.astype(np.float32)
    return (x.astype(np.float32) - q["zero_point"]) * q["scale"]


def decode(path: Path, fields: dict, z: np.ndarray, label: int | None = None) -> np.ndarray:
    """Run the decoder one batch at a time (fixed-batch files take exactly their batch); a conditional
    decoder also takes the class as a one-hot `label` row per image."""
    z_spec = next(t for t in fields["inputs"] if t["name"] == "z")
    label_spec = next((t for t in fields["inputs"] if t["name"] == "label"), None)
    (out_spec,) = fields["outputs"]
    batch = z_spec["shape"][0] if z_spec["shape"][0] > 0 else len(z)
    one_hot = None if label_spec is None else np.eye(label_spec["shape"][-1], dtype=np.float32)[[label] * batch]
    if path.suffix == ".tflite":
        from ai_edge_litert.interpreter import Interpreter

        runner = Interpreter(model_path=str(path)).get_signature_runner(fields["signature"])

        def run(rows):
            return runner(**feeds(rows))[out_spec["name"]]
    else:
        import onnxruntime

        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])

        def run(rows):
            return session.run([out_spec["name"]], feeds(rows))[0]

    def feeds(rows):
        extra = {} if label_spec is None else {"label": quantize(one_hot[: len(rows)], label_spec)}
        return {z_spec["name"]: quantize(rows, z_spec), **extra}

    chunks = []
    for start in range(0, len(z), batch):
        rows = z[start : start + batch]
        padded = np.concatenate([rows, np.zeros((batch - len(rows), rows.shape[1]), np.float32)])  # a fixed batch
        chunks.append(dequantize(run(padded), out_spec)[: len(rows)])
    images = np.concatenate(chunks)
    if out_spec["name"] == "reconstruction_logits":  # an int8-io decoder returns logits: the sigmoid gives pixels
        images = 1.0 / (1.0 + np.exp(-images))
    return images


def save_grid(images: np.ndarray, path: Path) -> None:
    count, height, width, channels = images.shape
    columns = math.ceil(math.sqrt(count))
    rows = math.ceil(count / columns)
    grid = np.ones((rows * height, columns * width, channels), np.float32)
    for index, image in enumerate(images):
        row, column = divmod(index, columns)
        grid[row * height : (row + 1) * height, column * width : (column + 1) * width] = image
    pixels = (np.clip(grid, 0, 1) * 255).round().astype(np.uint8)
    Image.fromarray(pixels[..., 0] if channels == 1 else pixels).save(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path, help="a decoder .tflite or .onnx written by vae-edge")
    parser.add_argument("-n", "--samples", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0, help="an integer in [0, 2^32)")
    parser.add_argument("--label", help="the class (index or name) of a conditional decoder")
    parser.add_argument("-o", "--output", type=Path, default=Path("samples.png"))
    args = parser.parse_args()
    if not args.model.is_file():
        sys.exit(f"{args.model} does not exist; pass a decoder .tflite or .onnx file")
    if not 0 <= args.seed < 2**32:
        sys.exit(f"--seed must be in [0, 2^32), got {args.seed}")
    fields = read_fields(args.model)
    if fields["graph"] != "decoder":
        sys.exit(f"{args.model} is the {fields['graph']}; pass the decoder file")
    check_prior(fields)
    z = prior(args.samples, fields["latent_size"], args.seed)
    save_grid(decode(args.model, fields, z, class_index(fields.get("class_names"), args.label)), args.output)
    print(f"{args.output}: {args.samples} samples from {args.model.name} ({fields['mode']}), seed {args.seed}")


def class_index(class_names: list[str] | None, label: str | None) -> int | None:
    """The class a conditional decoder is asked for, by name or index; the file's class names are the truth."""
    if not class_names:
        if label is not None:
            sys.exit("this decoder is unconditional; drop --label")
        return None
    if label in class_names:
        return class_names.index(label)
    if label is None or not label.isdigit() or int(label) >= len(class_names):
        sys.exit(f"this decoder is conditional: pass --label, one of {', '.join(class_names)} (or an index)")
    return int(label)


if __name__ == "__main__":
    main()
