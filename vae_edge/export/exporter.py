"""Export a VAE as a bundle: every target of the registry for every graph, and a manifest.

The bundle is built in a temporary folder and moved into place when every artifact is written
and verified. When some targets fail verification, the bundle is written with the others; the
failing files go to its `rejected/` folder (named in the manifest with the reason), the previous
bundle is kept beside it as `<out>.previous/`, and `PartialExport` says what failed and how to go
on (exit status 1). When nothing passes, the previous bundle stays as it was.
"""

import datetime
import importlib
import json
import shutil
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from vae_edge.bundle import MANIFEST, SCHEMA_VERSION, Artifact, sha256_of, size_of
from vae_edge.data import images_for_model
from vae_edge.elbo import ANOMALY_QUANTILE, anomaly_scores, anomaly_threshold, reparameterize
from vae_edge.errors import BadInputError, ExportError, PartialExport, VaeEdgeError, VerificationFailed, first_line
from vae_edge.export.bundle_readme import render_bundle_readme
from vae_edge.export.job import ExportJob
from vae_edge.export.metadata import embed_file, metadata_fields
from vae_edge.export.options import DEFAULT_CALIBRATION_SAMPLES, MIN_CALIBRATION_SAMPLES, ExportOptions
from vae_edge.export.savedmodel import write_savedmodel
from vae_edge.fsutil import atomic_directory, check_writable, write_json, write_text
from vae_edge.labels import check_every_class, check_labels, label_feed
from vae_edge.model.source import VaeGraphs, graphs_of_vae, vae_graphs
from vae_edge.provenance import package_versions
from vae_edge.quantization import Settings, choose_settings, target_class
from vae_edge.registry import (
    ALL,
    APP_WRITERS,
    APPS,
    CONVERTERS,
    DEFAULT_STATIC_BATCH,
    FORMATS,
    MAX_STATIC_BATCH,
    MODES,
    WRITER_MODULES,
    App,
    Format,
    Graph,
    Mode,
    Target,
    artifact_path,
    names,
    targets,
)
from vae_edge.runtime.engines import ORT_OPERATORS_CONFIG, open_engine
from vae_edge.signatures import IMAGE, GraphSpec, Z, graph_specs, logits_spec
from vae_edge.verify.golden import forget_files
from vae_edge.verify.tolerances import resolve
from vae_edge.verify.verifier import VERIFY_IMAGES, verify_bundle, write_layer_tables

TOOLS = ("vae-edge", "tensorflow", "tensorflow-cpu", "keras", "tf2onnx", "onnx", "onnxruntime", "ai-edge-litert")
REJECTED = "rejected"  # the bundle's folder for the files of targets that failed verification


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
    modes = list(modes or [])
    for name in formats:
        if name not in FORMATS and name not in APPS and name != ALL:
            raise BadInputError(f"unknown format {name!r}; choose from {', '.join(names(FORMATS, APPS))} or {ALL}")
    apps = plan_apps(formats)
    formats = list(FORMATS) if not formats or ALL in formats else [f for f in formats if f in FORMATS]
    formats += [APPS[app].requires for app in apps if APPS[app].requires not in formats]
    formats += [FORMATS[f].requires for f in formats if FORMATS[f].requires and FORMATS[f].requires not in formats]
    for mode in modes:
        if mode not in MODES:
            raise BadInputError(f"unknown mode {mode!r}; choose from {', '.join(MODES)}")
    if static_batch is not None and not 1 <= static_batch <= MAX_STATIC_BATCH:
        raise BadInputError(f"--static-batch must be between 1 and {MAX_STATIC_BATCH} (0 writes no fixed-shape files), "
                            f"got {static_batch}")
    chosen = [
        t
        for t in targets(static_batch)
        if t.format in formats and (not modes or t.mode in modes or len(FORMATS[t.format].modes) == 1)
    ]
    if not any(len(FORMATS[t.format].modes) > 1 for t in chosen) and any(len(FORMATS[f].modes) > 1 for f in formats):
        raise BadInputError(f"modes {', '.join(modes)} apply to none of the formats {', '.join(formats)}")
    return chosen


def export_bundle(
    model,
    out_dir,
    *,
    calibration_images: np.ndarray,
    heldout_images: np.ndarray,
    calibration_labels: np.ndarray | None = None,
    heldout_labels: np.ndarray | None = None,
    options: ExportOptions | None = None,
    dataset: str | None = None,
    force: bool = False,
    log: Callable[[str], None] = print,
    verify_table: bool = True,
) -> Path:
    """Write the bundle of `model` (a `vae_edge.model.VAE`, or `VaeGraphs` of any Keras VAE) to `out_dir`
    and return its path (see `export/README.md` for the layout). Integer modes calibrate on
    `calibration_images` (real training images); verification runs on `heldout_images`. `dataset` names
    them in the manifest. `verify_table=False` logs one verdict line instead of the tables.

    A conditional model needs the class labels of both image sets: integer modes calibrate on
    real (image, label) pairs and verification runs end to end on each image's own class."""
    options = options or ExportOptions()
    graphs = model if isinstance(model, VaeGraphs) else graphs_of_vae(model)
    out_dir = Path(out_dir)
    chosen = plan(options.formats, options.modes, options.static_batch)
    check_writable(out_dir, force)
    data = ExportData.checked(graphs, options, calibration_images, heldout_images, calibration_labels, heldout_labels)
    log(f"exporting to {out_dir}/, calibrating integer modes on {data.calibration_samples} of the "
        f"{len(calibration_images)} training images")
    apps = plan_apps(options.formats)
    for writer in [*{t.format for t in chosen}, *apps]:
        importlib.import_module(WRITER_MODULES[writer])
    facts = model_section(graphs, dataset)
    with atomic_directory(out_dir, force=force) as staging:
        conversions = Conversions(graphs, data.calibration_feeds(graphs, options.seed), staging, facts,
                                  choose_settings(options.onnx_int8_target), options.opset)
        artifacts, failures = conversions.convert(chosen, log)
        if len(failures) == len(chosen):
            raise ExportError(f"no target could be converted, so {out_dir} was left as it was; "
                              f"{next(iter(failures.values())).reason}")
        manifest = {**build_manifest(graphs, facts, artifacts, data, options.seed),
                    "quantization": {"onnx_int8": {"cpu_class": str(target_class(options.onnx_int8_target)),
                                                   "settings": conversions.int8_settings.as_dict()}}}
        write_json(staging / MANIFEST, manifest)
        write_text(staging / "README.md", render_bundle_readme(manifest))
        elsewhere = verify_staged(staging, out_dir, graphs, data, options, failures, log, verify_table)
        if failures:
            set_aside(staging, list(failures.values()))
        failing = {failure.target.key for failure in failures.values()}  # what set_aside took out of the manifest
        write_apps(staging, out_dir, apps, {a.format for a in artifacts if a.target.key not in failing}, log)
        if failures and (out_dir / MANIFEST).is_file():  # a partial bundle replaces it: kept whole beside it
            copy_beside(out_dir, out_dir, "previous")
    if failures:
        raise PartialExport(partial_message(out_dir, list(failures.values()), len(chosen))
                            + (f"; {failing_elsewhere(elsewhere)}" if elsewhere else ""))
    if elsewhere:
        raise VerificationFailed(f"wrote {out_dir}, verified on this CPU; {failing_elsewhere(elsewhere)}")
    for stale in (f"{out_dir.name}.rejected", f"{out_dir.name}.previous"):  # from earlier exports that failed
        shutil.rmtree(out_dir.with_name(stale), ignore_errors=True)
    return out_dir


@dataclass
class ExportData:
    """The images an export calibrates on and verifies on, checked against the model and its options."""

    calibration: np.ndarray
    heldout: np.ndarray
    calibration_labels: np.ndarray | None
    heldout_labels: np.ndarray | None

    @property
    def calibration_samples(self) -> int:
        return len(self.calibration)

    @classmethod
    def checked(cls, graphs: VaeGraphs, options: ExportOptions, calibration_images, heldout_images, calibration_labels,
                heldout_labels) -> "ExportData":
        """Everything that can be wrong with the data or the options, refused before any conversion."""
        available = len(calibration_images)
        samples = options.calibration_samples
        samples = min(DEFAULT_CALIBRATION_SAMPLES, available) if samples is None else samples
        if not MIN_CALIBRATION_SAMPLES <= samples <= available:
            raise BadInputError(f"integer calibration needs between {MIN_CALIBRATION_SAMPLES} and the {available} "
                                f"available images; got calibration_samples={samples}")
        if options.static_batch and options.static_batch > samples:
            raise BadInputError(f"--static-batch {options.static_batch} is more than the {samples} calibration images; "
                                "calibrate on more (--calibration-samples) or fix a smaller batch")
        resolve(options.tolerances)  # an unknown tolerance fails now, not after every conversion
        images = images_for_model(calibration_images[:samples], graphs.image_shape, "calibration images")
        heldout = images_for_model(heldout_images, graphs.image_shape, "held-out images")
        return cls(images, heldout, *model_labels(graphs, calibration_labels, heldout_labels, samples, len(heldout)))

    def calibration_feeds(self, graphs: VaeGraphs, seed: int) -> dict[Graph, dict[str, np.ndarray]]:
        """Real inputs of each graph: the images (and classes), and z drawn from their posterior."""
        z_mean, z_log_var = graphs.encode(self.calibration, self.calibration_labels)
        label = label_feed(self.calibration_labels, graphs.num_classes)
        return {Graph.ENCODER: {IMAGE: self.calibration, **label},
                Graph.DECODER: {Z: reparameterize(z_mean, z_log_var, np.random.default_rng(seed)), **label}}


@dataclass
class Conversions:
    """Every target's files of one export, written into the staging folder, each from the right Keras graph."""

    graphs: VaeGraphs
    calibration: dict[Graph, dict[str, np.ndarray]]
    staging: Path
    facts: dict  # the manifest's model section, embedded in each file
    int8_settings: Settings
    opset: int | None
    savedmodels: dict[tuple[int | None, bool], Path] = field(default_factory=dict)

    @property
    def scratch(self) -> Path:
        return self.staging / ".scratch"  # inside the staging folder: an interrupted export leaves nothing behind

    @cached_property
    def specs(self) -> dict[Graph, GraphSpec]:
        """The encoder's and decoder's named inputs and outputs."""
        return graph_specs(self.graphs.image_shape, self.graphs.latent_dim, self.graphs.num_classes)

    def convert(self, chosen: list[Target], log: Callable[[str], None]) -> tuple[list[Artifact], dict[str, "Failure"]]:
        """Each target's file of each graph; a layer one format cannot take fails that format's targets, not the
        export. The per-layer tables of the integer files go beside the saved verification outputs."""
        self.scratch.mkdir()
        jobs = [(target, graph) for target in chosen for graph in Graph]
        artifacts, failures, layers = [], {}, {}
        for index, (target, graph) in enumerate(jobs, start=1):
            if target.key in failures or blocked(target, failures):
                continue
            started = time.perf_counter()
            job = self.job(target, graph)
            try:
                debugger = run_converter(job)
                artifact = describe(self.staging, job, graph, self.facts, time.perf_counter() - started)
            except ExportError as error:
                failures[target.key] = Failure(target, CONVERSION, str(error))
                log(f"[{index:>2}/{len(jobs)}] {target.artifact_key(graph):<28} FAILED: {error}")
                continue
            artifacts.append(artifact)
            log(f"[{index:>2}/{len(jobs)}] {artifact.key:<28} {artifact.size_bytes / 1024:>8.1f} KiB  "
                f"{artifact.export_seconds:5.1f} s")
            layers[artifact.key] = layer_table(job, log, debugger)
        shutil.rmtree(self.scratch)
        write_layer_tables(self.staging, {key: rows for key, rows in layers.items() if rows})
        return artifacts, failures

    def job(self, target: Target, graph: Graph) -> ExportJob:
        """What the target's converter gets for one graph: a decoder with integer output returns logits."""
        logits = returns_logits(self.graphs, target, graph)
        network, spec = (logits_endpoint(self.graphs, self.specs) if logits
                         else (graphs_network(self.graphs, graph), self.specs[graph]))
        path = self.staging / artifact_path(target, graph)
        path.parent.mkdir(parents=True, exist_ok=True)
        return ExportJob(target=target, spec=spec, network=network, path=path, calibration=self.calibration[graph],
                         savedmodel=self.savedmodel_of(logits), scratch=self.scratch, bundle=self.staging,
                         onnx_int8=self.int8_settings, opset=self.opset)

    def savedmodel_of(self, logits: bool) -> Callable[[int | None], Path]:
        """Each batch shape's SavedModel of the encoder and decoder, or of the decoder's logits alone, written once
        (the dynamic one of both graphs is also the bundle's)."""

        def savedmodel(batch: int | None) -> Path:
            if (batch, logits) not in self.savedmodels:
                endpoints = [logits_endpoint(self.graphs, self.specs)] if logits else [
                    (self.graphs.encoder, self.specs[Graph.ENCODER]), (self.graphs.decoder, self.specs[Graph.DECODER])]
                folder = self.scratch / f"savedmodel-{batch}{'-logits' if logits else ''}"
                self.savedmodels[(batch, logits)] = write_savedmodel(endpoints, folder, batch)
            return self.savedmodels[(batch, logits)]

        return savedmodel


def verify_staged(staging: Path, out_dir: Path, graphs: VaeGraphs, data: ExportData, options: ExportOptions,
                  failures: dict[str, "Failure"], log: Callable[[str], None], table: bool) -> dict[str, list[str]]:
    """Verify the staged bundle: the targets that fail here join `failures` (when every one fails, the export
    stops and the previous bundle stays); returns the targets failing on each other CPU verified."""
    if not options.verify:
        log(f"not verified (--no-verify): no file has a verdict yet; run `vae-edge verify {out_dir}` before shipping")
        return {}
    report = verify_bundle(staging, graphs, data.heldout, labels=data.heldout_labels, tolerances=options.tolerances,
                           seed=options.seed, cpus=options.cpus, log=log, table=table)
    failing = [p for p in report.pipelines if not p.passed]
    if failing and len(failing) == len(report.pipelines):
        keep_rejected(staging, out_dir)
    failures.update({p.pipeline: Failure(Target(Format(p.format), Mode(p.mode), p.batch), VERIFICATION, p.reason)
                     for p in failing})
    elsewhere = {name: [p.pipeline for p in other.pipelines if not p.passed] for name, other in report.cpus.items()}
    return {name: keys for name, keys in elsewhere.items() if keys}


def write_apps(staging: Path, out_dir: Path, apps: list[App], exported: set[str], log: Callable[[str], None]) -> None:
    """Each app of the bundle, from the files that were kept, of the `exported` formats (none when those of its
    format failed)."""
    for app in apps:
        if APPS[app].requires not in exported:
            log(f"no {app} app: its {APPS[app].requires} files failed")
            continue
        APP_WRITERS[app](staging, staging / APPS[app].folder)
        log(f"wrote the {app} app into {out_dir / APPS[app].folder}/")


def export_encoder_decoder(encoder, decoder, out_dir, *, calibration_images: np.ndarray, heldout_images: np.ndarray,
                           likelihood: str | None = None, decoder_output: str | None = None,
                           encoder_outputs: Iterable[str] | None = None, options: ExportOptions | None = None,
                           dataset: str | None = None, force: bool = False, log: Callable[[str], None] = print) -> Path:
    """Export any Keras VAE given as its two models (from a notebook, say): `vae_graphs` checks them
    against the contract (see there for `likelihood`, `decoder_output` and `encoder_outputs`), then
    `export_bundle` writes the same bundle as for a VAE trained by vae-edge."""
    graphs = vae_graphs(encoder, decoder, likelihood=likelihood, decoder_output=decoder_output,
                        encoder_outputs=None if encoder_outputs is None else list(encoder_outputs), log=log)
    return export_bundle(graphs, out_dir, calibration_images=calibration_images, heldout_images=heldout_images,
                         options=options, dataset=dataset, force=force, log=log)


def graphs_network(graphs: VaeGraphs, graph: Graph):
    return graphs.encoder if graph == Graph.ENCODER else graphs.decoder


def logits_endpoint(graphs: VaeGraphs, specs: dict[Graph, GraphSpec]) -> tuple[object, GraphSpec]:
    """The decoder without its final sigmoid, with its spec (`reconstruction_logits` out)."""
    return graphs.decoder_logits, logits_spec(specs[Graph.DECODER])


def returns_logits(graphs: VaeGraphs, target: Target, graph: Graph) -> bool:
    """Whether a target's file of one graph returns logits: the decoder of a mode with integer output, where
    the decoder ends in a sigmoid (256 levels of probability round dim pixels to 0, 256 of logits do not)."""
    return graph == Graph.DECODER and MODES[target.mode].logits_out and graphs.decoder_logits is not None


LAYER_BATCHES = 8  # calibration batches the per-layer tables run: a few seconds per integer graph


def layer_table(job: ExportJob, log: Callable[[str], None], debugger=None) -> list[dict] | None:
    """Where a dynamic-batch integer TFLite or ONNX file loses, layer by layer (`vae_edge.export.diagnosis`),
    for verify.md; None for other targets, or when the measurement itself fails (the file is not the worse for it).
    `debugger`: what the TFLite converter returned (an `int8` file's calibrated debugger), reused by the diagnosis."""
    target = job.target
    if target.batch is not None or not MODES[target.mode].calibrated or target.format not in (Format.TFLITE, Format.ONNX):
        return None
    from vae_edge.export.diagnosis import onnx_layer_errors, tflite_layer_errors
    from vae_edge.export.onnx import float_source

    try:
        if target.format == Format.TFLITE:
            rows = tflite_layer_errors(job.savedmodel(None), job.spec.signature, target.mode, job.calibration_batches,
                                       batches=LAYER_BATCHES, debugger=debugger)
        else:
            rows = onnx_layer_errors(float_source(job), job.path, job.calibration_batches, batches=LAYER_BATCHES)
    except Exception as error:  # a measurement, not the export: say so and go on
        log(f"     no per-layer table for {target.artifact_key(job.spec.graph)}: {first_line(error)}")
        return None
    return [row.to_json() for row in rows]


def run_converter(job: ExportJob):
    """The target's converter, returning what it returns; whatever a converter library raises becomes one ExportError line
    naming the artifact (a full disk, say, is TensorFlow's ResourceExhaustedError, not an OSError)."""
    try:
        return CONVERTERS[job.target.format](job)
    except VaeEdgeError:
        raise
    except Exception as error:
        raise ExportError(
            f"writing {job.target.artifact_key(job.spec.graph)} failed: {type(error).__name__}: {first_line(error)}"
        ) from error


def model_labels(graphs: VaeGraphs, calibration_labels, heldout_labels, calibration_count: int, heldout_count: int):
    """The checked labels of the calibration and held-out images for a conditional model; (None, None) otherwise."""
    if not graphs.conditional:
        return None, None
    if calibration_labels is None or heldout_labels is None:
        raise BadInputError("a conditional model exports with the class labels of its calibration and held-out images; "
                            "use the labelled data set it was trained on")
    checked = (check_labels(np.asarray(calibration_labels)[:calibration_count], calibration_count, graphs.num_classes,
                            "calibration labels"),
               check_labels(heldout_labels, heldout_count, graphs.num_classes, "held-out labels"))
    check_every_class(checked[1][:VERIFY_IMAGES], graphs.class_names, "the held-out images verification runs on")
    return checked


def keep_rejected(staging: Path, out_dir: Path) -> None:
    """Nothing passed: keep the whole bundle beside the previous one for inspection, and leave that as it was."""
    rejected = copy_beside(staging, out_dir, "rejected")
    raise VerificationFailed(
        f"every target failed verification, so {out_dir} was left as it was; the rejected bundle and its verify.md "
        f"are in {rejected}; see how far each is in verify.md, then loosen a tolerance (--tolerance MODE.KEY=VALUE)"
    )


def copy_beside(source: Path, out_dir: Path, suffix: str) -> Path:
    """A copy of `source` as `OUT.suffix` beside the bundle (a rejected or the previous one), written then renamed."""
    with atomic_directory(out_dir.with_name(f"{out_dir.name}.{suffix}"), force=True) as staging:
        shutil.copytree(source, staging, symlinks=True, dirs_exist_ok=True)
    return out_dir.with_name(f"{out_dir.name}.{suffix}")


@dataclass
class Failure:
    """A target left out of the bundle: it could not be converted, or it failed verification."""

    target: Target
    stage: str  # CONVERSION or VERIFICATION
    reason: str


CONVERSION, VERIFICATION = "conversion", "verification"


def blocked(target: Target, failures: dict[str, Failure]) -> bool:
    """Whether `target` is converted from another format's file of the same target that failed; records why."""
    required = FORMATS[target.format].requires
    source = Target(required, target.mode, target.batch) if required else None
    if source is None or source.key not in failures:
        return False
    failures[target.key] = Failure(target, CONVERSION, f"it is converted from {source.key}, which failed")
    return True


def set_aside(staging: Path, failures: list[Failure]) -> None:
    """Move the files of the failing targets into the bundle's `rejected/` folder and out of its manifest (which
    records each target with the stage it failed at and why) and its golden vectors; the README is written again."""
    failing = {failure.target.key: failure for failure in failures}
    manifest = json.loads((staging / MANIFEST).read_text())
    moved: dict[str, list[str]] = {key: [] for key in failing}
    for target_key, failure in failing.items():
        for relative in dict.fromkeys(artifact_path(failure.target, graph) for graph in Graph):  # a folder: once
            source = staging / relative
            if not source.exists():
                continue
            destination = staging / REJECTED / relative
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(source, destination)
            config = source.with_suffix(ORT_OPERATORS_CONFIG)
            if config.exists():
                shutil.move(config, destination.with_suffix(ORT_OPERATORS_CONFIG))
            moved[target_key].append(relative)
    manifest["artifacts"] = [e for e in manifest["artifacts"] if Artifact(**e).target.key not in failing]
    manifest["rejected"] = [{"target": key, "stage": f.stage, "reason": f.reason, "folder": REJECTED,
                             "artifacts": moved[key]} for key, f in failing.items()]
    write_json(staging / MANIFEST, manifest)
    write_text(staging / "README.md", render_bundle_readme(manifest))
    forget_files(staging, {path for paths in moved.values() for path in paths})


def failing_elsewhere(elsewhere: dict[str, list[str]]) -> str:
    """The targets that pass here but fail on an emulated CPU, which stay in the bundle, and what to do."""
    return ("on other CPUs some targets fail (" + "; ".join(f"{name}: {', '.join(keys)}" for name, keys in elsewhere.items())
            + "), which the runtime will not pick on those CPU classes (verify.md); for ONNX int8, export on or for "
            "that class (--onnx-int8-target)")


def partial_message(out_dir: Path, failures: list[Failure], planned: int) -> str:
    """What failed, why, where the files are, and the ways to go on."""
    why = "; ".join(f"{f.target.key}: {f.reason}" for f in failures[:3]) + ("; ..." if len(failures) > 3 else "")
    previous = out_dir.with_name(f"{out_dir.name}.previous")
    kept = f"; the previous bundle is in {previous}" if previous.exists() else ""
    modes = sorted({f.target.mode for f in failures if f.stage == VERIFICATION})
    ways = [f"keep them with {' '.join(f'--tolerance {mode}.KEY=VALUE' for mode in modes)}"] if modes else []
    if any(f.stage == CONVERSION for f in failures):
        ways.append("replace the layer a format cannot take, or leave that format out with --format")
    ways.append("leave modes out with --quantize")
    return (f"wrote {out_dir} with {planned - len(failures)} of {planned} targets; {len(failures)} failed ({why}); "
            f"their files are in {out_dir / REJECTED} and verify.md says how far each is{kept}; {', or '.join(ways)}")


def describe(staging: Path, job: ExportJob, graph: Graph, facts: dict, seconds: float) -> Artifact:
    """The manifest entry of a written artifact, after its self-description is embedded in it; loading it
    in its engine doubles as a check."""
    target, spec, path = job.target, job.spec, job.path
    relative = str(path.relative_to(staging))
    engine = open_engine(path, spec.signature)
    if FORMATS[target.format].metadata:
        embed_file(path, metadata_fields(facts, graph, target.mode, engine.inputs, engine.outputs))
    return Artifact(
        path=relative,
        format=target.format,
        graph=graph,
        mode=target.mode,
        signature=spec.signature,
        inputs=engine.inputs,
        outputs=engine.outputs,
        size_bytes=size_of(path),
        sha256=sha256_of(path),
        export_seconds=round(seconds, 3),
        batch=target.batch,
    )


def model_section(graphs: VaeGraphs, dataset: str | None) -> dict:
    """The manifest's `model`: what the graphs expect, what they are and where they come from."""
    return {
        "input_shape": list(graphs.image_shape),
        "latent_dim": graphs.latent_dim,
        "reconstruction_loss": graphs.reconstruction_loss,
        **({"num_classes": graphs.num_classes, "class_names": list(graphs.class_names)} if graphs.conditional else {}),
        **graphs.facts,
        "preprocessing": {"layout": "NHWC (channels last)", "dtype": "float32", "pixel_range": [0.0, 1.0]},
        "prior": "standard normal N(0, I); seeded draws: vae_edge.prior (lowbias32 hash + Box-Muller)",
        "source": graphs.source.as_dict(),
        **({"dataset": dataset} if dataset else {}),
    }


def build_manifest(graphs: VaeGraphs, facts: dict, artifacts: list[Artifact], data: ExportData, seed: int) -> dict:
    """Everything an app or the runtime needs to know about the bundle."""
    z_mean, z_log_var = graphs.encode(data.heldout, data.heldout_labels)
    reconstruction = graphs.decode(z_mean, data.heldout_labels)
    scores = anomaly_scores(data.heldout, z_mean, z_log_var, reconstruction, graphs.reconstruction_loss)
    return {
        "schema_version": SCHEMA_VERSION,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "model": facts,
        "calibration": {"samples": data.calibration_samples, "source": "training split", "seed": seed},
        "anomaly": {
            "score": "negative ELBO at the posterior mean, nats/image",
            "threshold": anomaly_threshold(scores),
            "quantile": ANOMALY_QUANTILE,
            "heldout_images": int(len(data.heldout)),
        },
        "tools": package_versions(TOOLS),
        "artifacts": [asdict(a) for a in artifacts],
    }


