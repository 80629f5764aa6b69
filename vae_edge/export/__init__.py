"""Export a trained VAE as a bundle: SavedModel, TFLite in every mode, ONNX, and a manifest.

    from vae_edge.export import export_bundle
    export_bundle(model, "export/small", calibration_images=x_train, heldout_images=x_test)

The bundle is built in a temporary folder and moved into place only when every artifact
is written (and, by default, verified), so a failed export keeps the previous bundle.
"""

import datetime
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import numpy as np

from vae_edge.bundle import GRAPH_OUTPUTS, MANIFEST, SCHEMA_VERSION, Artifact, sha256_of, size_of
from vae_edge.data import images_for_model
from vae_edge.elbo import ANOMALY_QUANTILE, anomaly_scores, anomaly_threshold, reparameterize
from vae_edge.errors import BadInputError, VerificationFailed
from vae_edge.export import onnx as onnx_export
from vae_edge.export import tflite as tflite_export
from vae_edge.export.graphs import float32_vae
from vae_edge.export.savedmodel import DECODE, ENCODE, write_savedmodel
from vae_edge.fsutil import atomic_directory, check_writable, write_json
from vae_edge.runtime.engines import open_engine, tensor_spec
from vae_edge.tables import package_versions

FORMAT_MODES = {"savedmodel": ("float32",), "tflite": tflite_export.TFLITE_MODES, "onnx": onnx_export.ONNX_MODES}
FORMATS = tuple(FORMAT_MODES)
GRAPHS = {"encoder": ENCODE, "decoder": DECODE}
MIN_CALIBRATION_SAMPLES = 16
TOOLS = ("vae-edge", "tensorflow", "tensorflow-cpu", "keras", "tf2onnx", "onnx", "onnxruntime", "ai-edge-litert")
BUNDLE_README = Path(__file__).with_name("bundle_readme.md")


def plan(formats, modes) -> list[tuple[str, str, str]]:
    """(format, graph, mode) of every artifact to write; unknown names are errors that list the valid ones."""
    formats = [formats] if isinstance(formats, str) else formats
    formats = list(FORMATS) if not formats or "all" in formats else list(formats)
    for name in formats:
        if name not in FORMAT_MODES:
            raise BadInputError(f"unknown format {name!r}; choose from {', '.join(FORMATS)} or all")
    known = sorted({m for ms in FORMAT_MODES.values() for m in ms})
    for mode in modes or ():
        if mode not in known:
            raise BadInputError(f"unknown mode {mode!r}; choose from {', '.join(known)}")
    jobs = [
        (fmt, graph, mode)
        for fmt in formats
        for mode in FORMAT_MODES[fmt]
        if fmt == "savedmodel" or not modes or mode in modes
        for graph in GRAPHS
    ]
    if not any(fmt != "savedmodel" for fmt, _, _ in jobs) and set(formats) - {"savedmodel"}:
        raise BadInputError(f"modes {', '.join(modes)} apply to none of the formats {', '.join(formats)}")
    return jobs


def artifact_path(fmt: str, graph: str, mode: str) -> str:
    return "savedmodel" if fmt == "savedmodel" else f"{fmt}/{graph}.{mode}.{fmt}"


def export_bundle(
    model,
    out_dir,
    *,
    calibration_images: np.ndarray,
    heldout_images: np.ndarray,
    formats=None,
    modes=None,
    calibration_samples: int = 256,
    opset: int | None = None,
    seed: int = 0,
    verify: bool = True,
    tolerances: dict | None = None,
    force: bool = False,
    log: Callable[[str], None] = print,
    model_facts: dict | None = None,
) -> Path:
    """Write the bundle to `out_dir` and return its path (see `export/README.md` for the layout)."""
    out_dir = Path(out_dir)
    jobs = plan(formats, modes)
    check_writable(out_dir, force)
    if calibration_samples < MIN_CALIBRATION_SAMPLES or len(calibration_images) < calibration_samples:
        raise BadInputError(
            f"integer calibration needs at least {MIN_CALIBRATION_SAMPLES} samples and at most the "
            f"{len(calibration_images)} available; got --calibration-samples {calibration_samples}"
        )
    images = images_for_model(calibration_images[:calibration_samples], model.image_shape, "calibration images")
    heldout_images = images_for_model(heldout_images, model.image_shape, "held-out images")
    vae = float32_vae(model)
    z_mean, z_log_var = vae.encode(images)
    calibration = {"encoder": images, "decoder": reparameterize(z_mean, z_log_var, np.random.default_rng(seed))}

    scratch = Path(tempfile.mkdtemp(prefix="vae-edge-export-"))
    try:
        with atomic_directory(out_dir, force=True) as staging:
            savedmodel = (staging if any(job[0] == "savedmodel" for job in jobs) else scratch) / "savedmodel"
            started = time.perf_counter()
            write_savedmodel(vae.encoder, vae.decoder, savedmodel)  # also the source of every TFLite model
            savedmodel_seconds = time.perf_counter() - started
            artifacts = []
            for index, (fmt, graph, mode) in enumerate(jobs, start=1):
                started = time.perf_counter()
                relative = artifact_path(fmt, graph, mode)
                write_artifact(fmt, graph, mode, staging / relative, vae, savedmodel, calibration, opset, scratch)
                seconds = savedmodel_seconds if fmt == "savedmodel" else time.perf_counter() - started
                artifact = describe(staging, relative, fmt, graph, mode, vae, seconds)
                artifacts.append(artifact)
                log(f"[{index:>2}/{len(jobs)}] {artifact.key:<24} {artifact.size_bytes / 1024:>8.1f} KiB  {seconds:5.1f} s")
            manifest = build_manifest(vae, model, artifacts, heldout_images, calibration_samples, seed, model_facts)
            write_json(staging / MANIFEST, manifest)
            shutil.copyfile(BUNDLE_README, staging / "README.md")
            if verify:
                verify_staged(staging, out_dir, vae, heldout_images, tolerances, seed, log)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return out_dir


def verify_staged(staging: Path, out_dir: Path, vae, images, tolerances, seed: int, log) -> None:
    """Verify before the bundle goes into place; a failing bundle is kept beside it for inspection."""
    from vae_edge.verify import verify_bundle

    report = verify_bundle(staging, vae, images, tolerances=tolerances, seed=seed, log=log)
    if not report["passed"]:
        rejected = out_dir.with_name(f"{out_dir.name}.rejected")
        shutil.rmtree(rejected, ignore_errors=True)
        shutil.copytree(staging, rejected)
        raise VerificationFailed(
            f"verification failed, so {out_dir} was left as it was; the rejected bundle and its "
            f"verify.md are in {rejected}"
        )


def write_artifact(fmt, graph, mode, target: Path, vae, savedmodel: Path, calibration: dict, opset, scratch: Path) -> None:
    """Convert one graph to one format and mode at `target` (the SavedModel is already written)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    network = getattr(vae, graph)
    input_name = network.inputs[0].name
    if fmt == "tflite":
        feed = tflite_export.calibration_feed(input_name, calibration[graph])
        target.write_bytes(tflite_export.convert(savedmodel, GRAPHS[graph], mode, feed))
    elif fmt == "onnx":
        outputs = list(GRAPH_OUTPUTS[graph])
        float_path = target if mode == "float32" else scratch / f"{graph}.onnx"
        onnx_export.convert(network, outputs, float_path, opset)
        if mode == "int8":
            onnx_export.quantize_int8(float_path, target, input_name, calibration[graph])


def describe(staging: Path, relative: str, fmt: str, graph: str, mode: str, vae, seconds: float) -> Artifact:
    """The manifest entry of a written artifact; loading it in its engine doubles as a check."""
    path = staging / relative
    signature = GRAPHS[graph]
    if fmt == "savedmodel":
        network = getattr(vae, graph)
        names = GRAPH_OUTPUTS[graph]
        shapes = network.output_shape if graph == "encoder" else [network.output_shape]
        inputs = [tensor_spec(network.inputs[0].name, network.input_shape, "float32")]
        outputs = [tensor_spec(n, s, "float32") for n, s in zip(names, shapes)]
    else:
        engine = open_engine(path, signature)
        inputs, outputs = engine.inputs, engine.outputs
    return Artifact(
        path=relative, format=fmt, graph=graph, mode=mode, signature=signature, inputs=inputs, outputs=outputs,
        size_bytes=size_of(path), sha256=sha256_of(path), export_seconds=round(seconds, 3),
    )


def build_manifest(vae, trained, artifacts, heldout_images, calibration_samples, seed, model_facts) -> dict:
    """Everything an app or the runtime needs to know about the bundle."""
    z_mean, z_log_var = vae.encode(heldout_images)
    scores = anomaly_scores(heldout_images, z_mean, z_log_var, vae.decode(z_mean), vae.reconstruction_loss)
    return {
        "schema_version": SCHEMA_VERSION,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "model": {
            "variant": vae.variant,
            "input_shape": list(vae.image_shape),
            "latent_dim": vae.latent_dim,
            "filters": list(vae.filters),
            "blocks_per_stage": vae.blocks_per_stage,
            "parameters": int(vae.count_params()),
            "reconstruction_loss": vae.reconstruction_loss,
            "trained_precision": trained.dtype_policy.name,
            "preprocessing": {"layout": "NHWC (channels last)", "dtype": "float32", "pixel_range": [0.0, 1.0]},
            "prior": "standard normal N(0, I)",
            **(model_facts or {}),
        },
        "calibration": {"samples": calibration_samples, "source": "training split", "seed": seed},
        "anomaly": {
            "score": "negative ELBO at the posterior mean, nats/image",
            "threshold": anomaly_threshold(scores),
            "quantile": ANOMALY_QUANTILE,
            "heldout_images": int(len(heldout_images)),
        },
        "tools": package_versions(TOOLS),
        "artifacts": [asdict(a) for a in artifacts],
    }
