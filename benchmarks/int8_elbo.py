"""What the integer modes cost in ELBO, overall and per class, before and after the float head.

    vae-edge train --variant small --out RUNS/demo                                   # and the other MODELS
    vae-edge export RUNS/demo/model.keras --format tflite --format onnx --static-batch 0 --out RUNS/demo-bundle
    (optionally the same from an earlier commit, --out RUNS/demo-bundle-before)
    python benchmarks/int8_elbo.py RUNS --out benchmarks/results/int8_elbo [--models demo conditional-8ep tiny-1ep]

For each model RUNS/<name>/model.keras (`MODELS` says how each was trained), the TFLite encoder and
decoder are converted here from one SavedModel (`encode`, `decode` and `decode_logits`: the
decoder without its sigmoid), calibrated as export does (256 training images, batch 1):

- `tflite/int8 before`, `tflite/int8-io before`: the converter's defaults, every op quantized, the
  decoder's sigmoid and the encoder's SoftRange included (what export wrote before the float head);
- `tflite/int8 after`: `to_tflite` (the float head);
- `tflite/int8-io after`: `to_tflite` of `encode` and `decode_logits`, the sigmoid applied here (as the
  runtime does for a `reconstruction_logits` output).

Every integer pipeline of RUNS/<name>-bundle (`export`) and of RUNS/<name>-bundle-LABEL (`export:LABEL`,
e.g. a bundle exported before the change), or of their `.rejected` twins (a failed verification leaves
one), is scored too, as exported (`onnx/int8` is the reference: its head is float), and the figures of
their own verify.json are listed. Each pipeline's test -ELBO (one posterior draw per image, seed 0,
the same draws for every pipeline) is compared with the Keras model's on held-out images: the
model's test split, and for a run trained on a --max-samples subset also the data set's images
outside it (up to `MAX_HELDOUT`); classes are the data set's labels, for unconditional models
too. Writes <out>.json and <out>.md.

With `--layers MODEL`, writes MODEL's per-layer SQNR tables (`vae_edge.export.diagnosis`) of TFLite
int8 and int8-io and of the bundle's ONNX int8 files to <out>-layers.json and <out>-layers.md.
"""

import argparse
import hashlib
import json
import os
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

from vae_edge.cli.common import read_run_config, run_splits
from vae_edge.cpu import cpu_class, cpu_identity
from vae_edge.data import load_labelled
from vae_edge.elbo import conditioned, evaluate_pipeline, reparameterize
from vae_edge.export.diagnosis import onnx_layer_errors, tflite_layer_errors
from vae_edge.export.tflite import new_converter, quiet, to_tflite
from vae_edge.fsutil import write_json, write_text
from vae_edge.labels import label_feed
from vae_edge.model.loading import float32_vae, load_vae
from vae_edge.provenance import git_commit
from vae_edge.registry import Mode
from vae_edge.runtime.engines import open_engine
from vae_edge.signatures import IMAGE, RECONSTRUCTION, Z_LOG_VAR, Z_MEAN, Z

MODELS = {  # name: its `vae-edge train` flags (the demo model, a conditional one, a barely trained one)
    "demo": "--variant small",
    "conditional-8ep": "--variant small --conditional --epochs 8",
    "tiny-1ep": "--variant small --epochs 1 --max-samples 1000",
}
LOGITS, DECODE_LOGITS = "reconstruction_logits", "decode_logits"
CALIBRATION_IMAGES = 256
MAX_HELDOUT = 1000
INTEGER_MODES = (Mode.DYNAMIC, Mode.INT8, Mode.INT8_IO)


def sigmoid(x: np.ndarray) -> np.ndarray:
    return (0.5 * (1.0 + np.tanh(0.5 * x.astype(np.float64)))).astype(np.float32)


def fingerprints(images: np.ndarray) -> list[str]:
    return [hashlib.sha1(image.tobytes()).hexdigest() for image in images]


def heldout(model_path: Path, splits) -> tuple[np.ndarray, np.ndarray]:
    """The test split, and for a --max-samples run the data set's images it never saw (up to MAX_HELDOUT in all)."""
    images, labels = splits.test, splits.test_labels
    run = read_run_config(model_path)
    if run.get("max_samples"):
        everything = load_labelled(run.get("dataset", "mnist-5k"))
        seen = set(fingerprints(np.concatenate([splits.train, splits.val, splits.test])))
        unseen = [i for i, key in enumerate(fingerprints(everything.images)) if key not in seen]
        images = np.concatenate([images, everything.images[unseen]])
        labels = np.concatenate([labels, everything.labels[unseen]])
    return images[:MAX_HELDOUT], labels[:MAX_HELDOUT]


def write_signatures(vae, path: Path) -> Path:
    """A SavedModel with `encode`, `decode` and `decode_logits` (dynamic batch), named as export names them."""
    import keras
    import tensorflow as tf

    label = [tf.TensorSpec((None, vae.num_classes), tf.float32, name="label")] if vae.conditional else []
    image = tf.TensorSpec((None, *vae.image_shape), tf.float32, name=IMAGE)
    z = tf.TensorSpec((None, vae.latent_dim), tf.float32, name=Z)
    logits = keras.Model(vae.decoder.inputs, vae.decoder.get_layer("to_pixels").output)
    archive = keras.export.ExportArchive()
    for name, network, inputs, outputs in [("encode", vae.encoder, [image, *label], [Z_MEAN, Z_LOG_VAR]),
                                           ("decode", vae.decoder, [z, *label], [RECONSTRUCTION]),
                                           (DECODE_LOGITS, logits, [z, *label], [LOGITS])]:
        archive.track(network)
        archive.add_endpoint(name, endpoint(network, inputs, outputs, tf))
    archive.write_out(str(path), verbose=False)
    return path


def endpoint(network, inputs, outputs, tf):
    @tf.function(input_signature=inputs)
    def call(*tensors):
        result = network(tensors[0] if len(tensors) == 1 else list(tensors), training=False)
        return dict(zip(outputs, result if isinstance(result, (list, tuple)) else [result]))

    return call


def calibration(vae, splits) -> dict[str, list[dict[str, np.ndarray]]]:
    """Batch-1 calibration rows per signature, as export makes them (the decoder: posterior draws, seed 0)."""
    x = splits.train[:CALIBRATION_IMAGES]
    y = splits.train_labels[:CALIBRATION_IMAGES] if vae.conditional else None
    z_mean, z_log_var = vae.encode(x, y)
    label = label_feed(y, vae.num_classes)
    feeds = {"encode": {IMAGE: x, **label},
             "decode": {Z: reparameterize(z_mean, z_log_var, np.random.default_rng(0)), **label}}
    feeds[DECODE_LOGITS] = feeds["decode"]
    return {name: [{key: value[i:i + 1] for key, value in feed.items()} for i in range(len(x))]
            for name, feed in feeds.items()}


def made_here(vae, splits, folder: Path) -> dict[str, dict[str, Path]]:
    """The TFLite candidates: {pipeline: {"encode": file, "decode"/"decode_logits": file}}."""
    savedmodel = write_signatures(vae, folder / "savedmodel")
    rows = calibration(vae, splits)
    plan = {
        "tflite/int8 before": [("encode", Mode.INT8, False), ("decode", Mode.INT8, False)],
        "tflite/int8-io before": [("encode", Mode.INT8_IO, False), ("decode", Mode.INT8_IO, False)],
        "tflite/int8 after": [("encode", Mode.INT8, True), ("decode", Mode.INT8, True)],
        "tflite/int8-io after": [("encode", Mode.INT8_IO, True), (DECODE_LOGITS, Mode.INT8_IO, True)],
    }
    pipelines = {}
    for pipeline, members in plan.items():
        pipelines[pipeline] = {}
        for signature, mode, after in members:
            path = folder / f"{pipeline.replace('/', '-').replace(' ', '-')}.{signature}.tflite"
            feeds = rows[signature]
            if after:
                content = to_tflite(savedmodel, signature, mode, lambda f=feeds: f)
            else:
                with quiet():
                    content = new_converter(savedmodel, signature, mode, lambda f=feeds: f).convert()
            path.write_bytes(content)
            pipelines[pipeline][signature] = path
    return pipelines


def bundles(runs: Path, name: str) -> dict[str, Path]:
    """The model's bundles by label: RUNS/<name>-bundle is `export`, RUNS/<name>-bundle-LABEL `export:LABEL`
    (a `.rejected` folder, which a failed verification leaves, counts as the bundle)."""
    found = {}
    for folder in sorted(runs.glob(f"{name}-bundle*")):
        stem = folder.name.removesuffix(".rejected").removeprefix(f"{name}-bundle")
        if (folder / "manifest.json").is_file():
            found["export" + (f":{stem.lstrip('-')}" if stem else "")] = folder
    return found


def exported(label: str, folder: Path) -> dict[str, dict[str, Path]]:
    """The bundle's integer pipelines (dynamic batch): {"onnx/int8 export": {"encode": file, "decode": file}}."""
    pipelines: dict[str, dict[str, Path]] = {}
    for a in json.loads((folder / "manifest.json").read_text())["artifacts"]:
        if a["mode"] in INTEGER_MODES and a.get("batch") is None:
            pipelines.setdefault(f"{a['format']}/{a['mode']} {label}", {})[a["signature"]] = folder / a["path"]
    return pipelines


def verified(label: str, folder: Path) -> dict[str, dict]:
    """What `vae-edge export` itself measured (verify.json: 256 test images): ELBO cost, worst class, verdict."""
    report = folder / "verify.json"
    if not report.is_file():
        return {}
    rows = {}
    for p in json.loads(report.read_text())["pipelines"]:
        if p["mode"] in INTEGER_MODES and p.get("batch") is None:
            per_class = p.get("elbo_increase_pct_per_class") or {}
            rows[f"{p['pipeline']} {label}"] = {"elbo_increase_pct": p["elbo_increase_pct"], "passed": p["passed"],
                                                "worst_class_pct": max(per_class.values()) if per_class else None}
    return rows


def pipeline_functions(vae, files: dict[str, Path]):
    """numpy encode/decode over a pipeline's files; a decoder that returns logits gets the sigmoid here."""
    (encoder_signature,) = [s for s in files if s == "encode"]
    (decoder_signature,) = [s for s in files if s != "encode"]
    encoder = open_engine(files[encoder_signature], encoder_signature)
    decoder = open_engine(files[decoder_signature], decoder_signature)

    def encode(x, labels=None):
        out = encoder.run({IMAGE: x, **label_feed(labels, vae.num_classes)})
        return out[Z_MEAN], out[Z_LOG_VAR]

    def decode(z, labels=None):
        out = decoder.run({Z: z, **label_feed(labels, vae.num_classes)})
        return out[RECONSTRUCTION] if RECONSTRUCTION in out else sigmoid(out[LOGITS])

    return encode, decode


def costs(vae, images, labels, class_names, encode, decode) -> dict:
    """-ELBO against Keras', in %, overall and per class (the same seed, so the same posterior draws)."""
    model_labels = labels if vae.conditional else None
    scores = {}
    for name, (enc, dec) in {"keras": (vae.encode, vae.decode), "pipeline": (encode, decode)}.items():
        scores[name] = evaluate_pipeline(*conditioned(enc, dec, model_labels), images,
                                         reconstruction_loss=vae.reconstruction_loss, seed=0, classes=labels,
                                         class_names=class_names)
    keras, pipeline = scores["keras"], scores["pipeline"]
    per_class = {c: 100 * (pipeline["per_class"][c]["negative_elbo"] / keras["per_class"][c]["negative_elbo"] - 1)
                 for c in keras["per_class"]}
    return {
        "negative_elbo": pipeline["negative_elbo"],
        "keras_negative_elbo": keras["negative_elbo"],
        "elbo_increase_pct": 100 * (pipeline["negative_elbo"] / keras["negative_elbo"] - 1),
        "worst_class": max(per_class, key=per_class.get),
        "worst_class_pct": max(per_class.values()),
        "per_class_pct": per_class,
        "psnr_db": pipeline["psnr_db"],
    }


def measure(runs: Path, name: str, scratch: Path) -> dict:
    model_path = runs / name / "model.keras"
    vae = float32_vae(load_vae(model_path))
    splits = run_splits(model_path)
    images, labels = heldout(model_path, splits)
    class_names = splits.class_names or tuple(str(k) for k in range(int(labels.max()) + 1))
    pipelines = made_here(vae, splits, scratch / name)
    for label, folder in bundles(runs, name).items():
        pipelines.update(exported(label, folder))
    results = {}
    for pipeline, files in pipelines.items():
        results[pipeline] = costs(vae, images, labels, class_names, *pipeline_functions(vae, files))
        print(f"{name:16s} {pipeline:24s} {results[pipeline]['elbo_increase_pct']:+8.3f} %   worst class "
              f"{results[pipeline]['worst_class']} {results[pipeline]['worst_class_pct']:+8.3f} %", flush=True)
    verify = {key: row for label, folder in bundles(runs, name).items() for key, row in verified(label, folder).items()}
    return {"model": str(model_path), "trained_with": MODELS.get(name), "heldout_images": int(len(images)),
            "keras_negative_elbo": next(iter(results.values()))["keras_negative_elbo"], "pipelines": results,
            "verify_json": verify}


def layer_tables(runs: Path, name: str, scratch: Path) -> dict[str, list[dict]]:
    """The per-layer SQNR tables (`vae_edge.export.diagnosis`) of one model's integer files: TFLite int8 and
    int8-io as `to_tflite` makes them, and the bundle's ONNX int8 files against its float32 ones."""
    model_path = runs / name / "model.keras"
    vae = float32_vae(load_vae(model_path))
    splits = run_splits(model_path)
    savedmodel = write_signatures(vae, scratch / f"{name}-layers")
    rows = calibration(vae, splits)
    tables = {}
    for mode, signatures in ((Mode.INT8, ("encode", "decode")), (Mode.INT8_IO, ("encode", DECODE_LOGITS))):
        for signature in signatures:
            errors = tflite_layer_errors(savedmodel, signature, mode, lambda s=signature: rows[s])
            tables[f"tflite/{mode} {signature}"] = [row.to_json() for row in errors]
    folder = bundles(runs, name).get("export")
    if folder is not None:
        for graph, signature in (("encoder", "encode"), ("decoder", "decode")):
            float_path, int8_path = folder / f"onnx/{graph}.float32.onnx", folder / f"onnx/{graph}.int8.onnx"
            if float_path.is_file() and int8_path.is_file():
                errors = onnx_layer_errors(float_path, int8_path, rows[signature])
                tables[f"onnx/int8 {signature}"] = [row.to_json() for row in errors]
    return tables


def render_layers(name: str, tables: dict[str, list[dict]]) -> str:
    def number(value, form):
        return "-" if value is None else format(value, form)

    lines = [f"# Per-layer quantization error of {name}'s integer files", "",
             "Local SQNR: the op's integer output against the op run in float on the same quantized inputs "
             "(TFLite: float weights too; ONNX: the tensor before QuantizeLinear against after DequantizeLinear). "
             "Accumulated: the quantized model's tensor against the float model's. 200 dB: exact. "
             "Rows with no local figure are graph outputs computed in float (the float head).", ""]
    for table, rows in tables.items():
        lines += [f"## {table}", "", "| op | tensor | local SQNR | accumulated SQNR | scale | zero point |",
                  "|---|---|---|---|---|---|"]
        lines += [f"| {r['op']} | {r['tensor']} | {number(r['local_sqnr_db'], '.1f')} | "
                  f"{number(r['accumulated_sqnr_db'], '.1f')} | {number(r['scale'], '.4g')} | {number(r['zero_point'], 'd')} |"
                  for r in rows]
        lines.append("")
    return "\n".join(lines)


def render(results: dict) -> str:
    lines = ["# ELBO cost of the integer modes, overall and per class", "",
             f"CPU: {results['cpu']} ({results['cpu_class']}: {', '.join(results['vector_extensions'])}); "
             f"`{results['command']}` at {results['code']}", "", *([results["note"], ""] if results["note"] else []),
             "Pipelines: see benchmarks/int8_elbo.py. `before`: the converter's defaults (every op quantized); "
             "`after`: `to_tflite` (int8: float head; int8-io: integer logits out, sigmoid in the runtime); "
             "`export`: the bundle's files as `vae-edge export` wrote them.", ""]
    for name, model in results["models"].items():
        classes = list(next(iter(model["pipelines"].values()))["per_class_pct"])
        lines += [f"## {name} (`{model['trained_with']}`): Keras -ELBO {model['keras_negative_elbo']:.2f} nats "
                  f"on {model['heldout_images']} held-out images", "",
                  "| pipeline | ELBO cost | worst class | PSNR | " + " | ".join(f"class {c}" for c in classes) + " |",
                  "|---|---|---|---|" + "---|" * len(classes)]
        for pipeline, row in model["pipelines"].items():
            cells = " | ".join(f"{row['per_class_pct'][c]:+.2f}%" for c in classes)
            lines.append(f"| {pipeline} | {row['elbo_increase_pct']:+.3f}% | {row['worst_class']}: "
                         f"{row['worst_class_pct']:+.2f}% | {row['psnr_db']:.2f} dB | {cells} |")
        if model["verify_json"]:
            lines += ["", "What `vae-edge export` measured itself (its verify.json, 256 test images, one draw each):", "",
                      "| pipeline | ELBO cost | worst class | verdict |", "|---|---|---|---|"]
            for pipeline, row in model["verify_json"].items():
                worst = "-" if row["worst_class_pct"] is None else f"{row['worst_class_pct']:+.2f}%"
                lines.append(f"| {pipeline} | {row['elbo_increase_pct']:+.3f}% | {worst} | "
                             f"{'PASS' if row['passed'] else 'FAIL'} |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", type=Path, help="folder holding <model>/model.keras and <model>-bundle*/")
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/int8_elbo"))
    parser.add_argument("--note", default="", help="a line for the report: where the bundles come from")
    parser.add_argument("--layers", metavar="MODEL", help="write MODEL's per-layer tables to <out>-layers.{json,md} instead")
    args = parser.parse_args()
    if args.layers:
        with tempfile.TemporaryDirectory(prefix="int8-layers-") as scratch:
            tables = layer_tables(args.runs, args.layers, Path(scratch))
        layers = args.out.with_name(args.out.name + "-layers")
        write_json(layers.with_suffix(".json"), {"model": args.layers, **cpu_identity(), "tables": tables})
        write_text(layers.with_suffix(".md"), render_layers(args.layers, tables))
        return
    results = {**cpu_identity(), "cpu_class": str(cpu_class()), "code": git_commit(), "note": args.note,
               "command": "python benchmarks/int8_elbo.py " + " ".join([str(args.runs), "--models", *args.models]),
               "models": {}}
    with tempfile.TemporaryDirectory(prefix="int8-elbo-") as scratch:
        for name in args.models:
            results["models"][name] = measure(args.runs, name, Path(scratch))
    write_json(args.out.with_suffix(".json"), results)
    write_text(args.out.with_suffix(".md"), render(results))


if __name__ == "__main__":
    main()
