"""Export a trained VAE as a bundle: every target of the registry for every graph, and a manifest.

The bundle is built in a temporary folder and moved into place only when every artifact
is written (and, by default, verified), so a failed export keeps the previous bundle.
"""

import datetime
import importlib
import shutil
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict
from pathlib import Path

import numpy as np

from vae_edge.bundle import MANIFEST, SCHEMA_VERSION, Artifact, sha256_of, size_of
from vae_edge.data import images_for_model
from vae_edge.elbo import ANOMALY_QUANTILE, anomaly_scores, anomaly_threshold, reparameterize
from vae_edge.errors import BadInputError, ExportError, VaeEdgeError, VerificationFailed, first_line
from vae_edge.export.bundle_readme import render_bundle_readme
from vae_edge.export.job import ExportJob
from vae_edge.export.metadata import embed_file, metadata_fields
from vae_edge.export.savedmodel import write_savedmodel
from vae_edge.fsutil import atomic_directory, check_writable, write_json, write_text
from vae_edge.labels import check_labels, label_feed
from vae_edge.provenance import package_versions
from vae_edge.quantization import AUTO, choose_settings, target_class
from vae_edge.registry import (
    ALL,
    APP_WRITERS,
    APPS,
    CONVERTERS,
    DEFAULT_STATIC_BATCH,
    FORMATS,
    MODES,
    WRITER_MODULES,
    App,
    Graph,
    Target,
    artifact_path,
    names,
    targets,
)
from vae_edge.runtime.engines import open_engine
from vae_edge.signatures import IMAGE, Z, graph_specs
from vae_edge.verify.verifier import verify_bundle

MIN_CALIBRATION_SAMPLES = 16
DEFAULT_CALIBRATION_SAMPLES = 256  # or the whole training split when it is smaller
TOOLS = ("vae-edge", "tensorflow", "tensorflow-cpu", "keras", "tf2onnx", "onnx", "onnxruntime", "ai-edge-litert")


def plan_apps(formats: Iterable[str] | str | None = None) -> list[App]:
    """The apps among the requested formats (all of them for `all` or nothing)."""
    formats = [formats] if isinstance(formats, str) else list(formats or [])
    return list(APPS) if not formats or ALL in formats else [App(f) for f in formats if f in APPS]


def plan(
    formats: Iterable[str] | str | None = None,
    modes: Iterable[str] | None = None,
    static_batch: int | None = DEFAULT_STATIC_BATCH,
) -> list[Target]:
    """The targets to write (an app brings the format it runs); unknown names are errors that list the valid ones."""
    formats = [formats] if isinstance(formats, str) else list(formats or [])
    for name in formats:
        if name not in FORMATS and name not in APPS and name != ALL:
            raise BadInputError(f"unknown format {name!r}; choose from {', '.join(names(FORMATS, APPS))} or {ALL}")
    apps = plan_apps(formats)
    formats = list(FORMATS) if not formats or ALL in formats else [f for f in formats if f in FORMATS]
    formats += [APPS[app].requires for app in apps if APPS[app].requires not in formats]
    formats += [FORMATS[f].requires for f in formats if FORMATS[f].requires and FORMATS[f].requires not in formats]
    for mode in modes or ():
        if mode not in MODES:
            raise BadInputError(f"unknown mode {mode!r}; choose from {', '.join(MODES)}")
    if static_batch is not None and static_batch < 1:
        raise BadInputError(f"--static-batch must be a positive integer, got {static_batch}")
    chosen = [
        t
        for t in targets(static_batch)
        if t.format in formats and (not modes or t.mode in modes or len(FORMATS[t.format].modes) == 1)
    ]
    if not any(len(FORMATS[t.format].modes) > 1 for t in chosen) and any(len(FORMATS[f].modes) > 1 for f in formats):
        raise BadInputError(f"modes {', '.join(modes)} apply to none of the formats {', '.join(formats)}")
    return chosen


def source_facts(model_path: Path, dataset: str) -> dict:
    """What the manifest records of the model a bundle comes from; verification refuses any other."""
    return {"source_model": str(Path(model_path).resolve()), "source_sha256": sha256_of(model_path), "dataset": dataset}


def export_bundle(
    model,
    out_dir,
    *,
    calibration_images: np.ndarray,
    heldout_images: np.ndarray,
    calibration_labels: np.ndarray | None = None,
    heldout_labels: np.ndarray | None = None,
    formats=None,
    modes=None,
    static_batch: int | None = DEFAULT_STATIC_BATCH,
    onnx_int8_target: str = AUTO,
    calibration_samples: int | None = None,
    opset: int | None = None,
    seed: int = 0,
    verify: bool = True,
    tolerances: dict | None = None,
    force: bool = False,
    log: Callable[[str], None] = print,
    model_facts: dict | None = None,
    verify_table: bool = True,
) -> Path:
    """Write the bundle to `out_dir` and return its path (see `export/README.md` for the layout).
    `verify_table=False` logs one verdict line instead of the verification tables (`verify.md` has them).

    A conditional model needs the class labels of both image sets: integer modes calibrate on
    real (image, label) pairs and verification runs end to end on each image's own class."""
    out_dir = Path(out_dir)
    chosen = plan(formats, modes, static_batch)
    check_writable(out_dir, force)
    available = len(calibration_images)
    if calibration_samples is None:
        calibration_samples = min(DEFAULT_CALIBRATION_SAMPLES, available)
        log(f"calibrating integer modes on {calibration_samples} of the {available} training images")
    if not MIN_CALIBRATION_SAMPLES <= calibration_samples <= available:
        raise BadInputError(
            f"integer calibration needs between {MIN_CALIBRATION_SAMPLES} and the {available} available images; "
            f"got calibration_samples={calibration_samples}"
        )
    images = images_for_model(calibration_images[:calibration_samples], model.image_shape, "calibration images")
    heldout_images = images_for_model(heldout_images, model.image_shape, "held-out images")
    calibration_labels, heldout_labels = model_labels(model, calibration_labels, heldout_labels, calibration_samples,
                                                      len(heldout_images))
    from vae_edge.model.loading import float32_vae  # Keras, only when exporting: planning stays light

    vae = float32_vae(model)
    specs = graph_specs(vae.image_shape, vae.latent_dim, vae.num_classes)
    networks = {Graph.ENCODER: vae.encoder, Graph.DECODER: vae.decoder}
    z_mean, z_log_var = vae.encode(images, calibration_labels)
    label = label_feed(calibration_labels, vae.num_classes)
    calibration = {
        Graph.ENCODER: {IMAGE: images, **label},
        Graph.DECODER: {Z: reparameterize(z_mean, z_log_var, np.random.default_rng(seed)), **label},
    }
    apps = plan_apps(formats)
    for writer in [*{t.format for t in chosen}, *apps]:
        importlib.import_module(WRITER_MODULES[writer])

    savedmodels: dict[int | None, Path] = {}

    def savedmodel(batch: int | None) -> Path:
        """Each batch shape's SavedModel, written once (the dynamic one is also the bundle's)."""
        if batch not in savedmodels:
            savedmodels[batch] = write_savedmodel(networks, specs, scratch / f"savedmodel-{batch}", batch)
        return savedmodels[batch]

    facts = model_section(vae, model, model_facts)
    int8_settings = choose_settings(onnx_int8_target)
    quantization = {
        "onnx_int8": {
            "cpu_class": str(target_class(onnx_int8_target)),
            "settings": int8_settings.as_dict(),
        }
    }
    jobs = [(target, graph) for target in chosen for graph in Graph]
    with atomic_directory(out_dir, force=force) as staging:
        scratch = staging / ".scratch"  # inside the staging folder, so an interrupted export leaves nothing behind
        scratch.mkdir()
        artifacts = []
        for index, (target, graph) in enumerate(jobs, start=1):
            started = time.perf_counter()
            relative = artifact_path(target, graph)
            job = ExportJob(
                target,
                specs[graph],
                networks[graph],
                staging / relative,
                calibration[graph],
                savedmodel,
                scratch,
                staging,
                int8_settings,
                opset,
            )
            job.path.parent.mkdir(parents=True, exist_ok=True)
            run_converter(job)
            artifact = describe(staging, relative, target, specs[graph].signature, graph, facts, time.perf_counter() - started)
            artifacts.append(artifact)
            log(
                f"[{index:>2}/{len(jobs)}] {artifact.key:<28} {artifact.size_bytes / 1024:>8.1f} KiB  "
                f"{artifact.export_seconds:5.1f} s"
            )
        shutil.rmtree(scratch)
        manifest = {
            **build_manifest(vae, facts, artifacts, heldout_images, heldout_labels, calibration_samples, seed),
            "quantization": quantization,
        }
        write_json(staging / MANIFEST, manifest)
        write_text(staging / "README.md", render_bundle_readme(manifest))
        if verify:
            verify_staged(staging, out_dir, vae, heldout_images, heldout_labels, tolerances, seed, log, verify_table)
        for app in apps:
            APP_WRITERS[app](staging, staging / APPS[app].folder)
            log(f"wrote the {app} app into {out_dir / APPS[app].folder}/")
    return out_dir


def run_converter(job: ExportJob) -> None:
    """The target's converter; whatever a converter library raises becomes one ExportError line
    naming the artifact (a full disk, say, is TensorFlow's ResourceExhaustedError, not an OSError)."""
    try:
        CONVERTERS[job.target.format](job)
    except VaeEdgeError:
        raise
    except Exception as error:
        raise ExportError(
            f"writing {job.target.artifact_key(job.spec.graph)} failed: {type(error).__name__}: {first_line(error)}"
        ) from error


def model_labels(model, calibration_labels, heldout_labels, calibration_count: int, heldout_count: int):
    """The checked labels of the calibration and held-out images for a conditional model; (None, None) otherwise."""
    if not model.conditional:
        return None, None
    if calibration_labels is None or heldout_labels is None:
        raise BadInputError("a conditional model exports with the class labels of its calibration and held-out images; "
                            "use the labelled data set it was trained on")
    return (check_labels(np.asarray(calibration_labels)[:calibration_count], calibration_count, model.num_classes,
                         "calibration labels"),
            check_labels(heldout_labels, heldout_count, model.num_classes, "held-out labels"))


def verify_staged(staging: Path, out_dir: Path, vae, images, labels, tolerances, seed: int, log, table: bool) -> None:
    """Verify before the bundle goes into place; a failing bundle is kept beside it for inspection."""
    report = verify_bundle(staging, vae, images, labels=labels, tolerances=tolerances, seed=seed, log=log, table=table)
    if not report.passed:
        rejected = out_dir.with_name(f"{out_dir.name}.rejected")
        shutil.rmtree(rejected, ignore_errors=True)
        shutil.copytree(staging, rejected)
        raise VerificationFailed(
            f"verification failed, so {out_dir} was left as it was; the rejected bundle and its verify.md are in {rejected}"
        )


def describe(staging: Path, relative: str, target: Target, signature: str, graph: Graph, facts: dict, seconds: float) -> Artifact:
    """The manifest entry of a written artifact, after its self-description is embedded in it; loading it
    in its engine doubles as a check."""
    path = staging / relative
    engine = open_engine(path, signature)
    if FORMATS[target.format].metadata:
        embed_file(path, metadata_fields(facts, graph, target.mode, engine.inputs, engine.outputs))
    return Artifact(
        path=relative,
        format=target.format,
        graph=graph,
        mode=target.mode,
        signature=signature,
        inputs=engine.inputs,
        outputs=engine.outputs,
        size_bytes=size_of(path),
        sha256=sha256_of(path),
        export_seconds=round(seconds, 3),
        batch=target.batch,
    )


def model_section(vae, trained, model_facts: dict | None) -> dict:
    """The manifest's `model`: what the graphs expect and where they come from."""
    return {
        "variant": vae.variant,
        "input_shape": list(vae.image_shape),
        "latent_dim": vae.latent_dim,
        "filters": list(vae.filters),
        "blocks_per_stage": vae.blocks_per_stage,
        "parameters": int(vae.count_params()),
        "reconstruction_loss": vae.reconstruction_loss,
        **({"num_classes": vae.num_classes, "class_names": list(vae.class_names)} if vae.conditional else {}),
        "trained_precision": trained.dtype_policy.name,
        "preprocessing": {"layout": "NHWC (channels last)", "dtype": "float32", "pixel_range": [0.0, 1.0]},
        "prior": "standard normal N(0, I); seeded draws: vae_edge.prior (lowbias32 hash + Box-Muller)",
        **(model_facts or {}),
    }


def build_manifest(vae, facts: dict, artifacts, heldout_images, heldout_labels, calibration_samples, seed) -> dict:
    """Everything an app or the runtime needs to know about the bundle."""
    z_mean, z_log_var = vae.encode(heldout_images, heldout_labels)
    reconstruction = vae.decode(z_mean, heldout_labels)
    scores = anomaly_scores(heldout_images, z_mean, z_log_var, reconstruction, vae.reconstruction_loss)
    return {
        "schema_version": SCHEMA_VERSION,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "model": facts,
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
