"""`vae-edge verify`: every artifact of a bundle against the Keras graphs, on the same inputs.

Runners produce outputs (`reference` runs Keras, `runner` the bundle's files, on this CPU or an
emulated one) and `comparator` judges them. The inputs and every runner's outputs are saved in the
bundle's `verify/` folder, so `rejudge` can judge them again under other tolerances without the
model, and outputs captured elsewhere can be judged against the same reference. Writes
`verify.json`, `verify.md`, `verify.png` and the results into `manifest.json`.
"""

import json
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from vae_edge.bundle import MANIFEST, Bundle
from vae_edge.data import images_for_model
from vae_edge.errors import BadInputError, VaeEdgeError
from vae_edge.fsutil import write_bytes, write_json
from vae_edge.labels import check_every_class, check_labels, cycled
from vae_edge.prior import prior_latents
from vae_edge.registry import Graph
from vae_edge.verify.comparator import judge_run
from vae_edge.verify.golden import write_golden
from vae_edge.verify.inputs import VerifyInputs
from vae_edge.verify.outputs import HOST, KERAS, RunOutputs, check_runner_name
from vae_edge.verify.report import format_table, save_picture, verdict_line, write_markdown
from vae_edge.verify.results import VerifyReport
from vae_edge.verify.runner import run_bundle

SAVED = "verify"  # the bundle's folder of saved inputs and outputs
INPUTS = "inputs.npz"
LAYERS = "layers.json"  # the export's per-layer tables of its integer files (vae_edge.export.diagnosis)
VERIFY_IMAGES, PRIOR_LATENTS = 256, 64  # held-out images and prior draws every runner is fed
EMULATED_IMAGES = 16  # images an emulated CPU runs (and as many latents of each kind): emulation is 10-40x slower


def saved_outputs(bundle_dir, runner: str) -> Path:
    return Path(bundle_dir) / SAVED / f"{runner}.npz"


def check_graphs_match(bundle: Bundle, graphs) -> None:
    facts = bundle.model
    if list(graphs.image_shape) != facts["input_shape"] or graphs.latent_dim != facts["latent_dim"]:
        raise BadInputError(
            f"{bundle.folder}: the bundle is for input {tuple(facts['input_shape'])} and latent_dim "
            f"{facts['latent_dim']}, the model has {tuple(graphs.image_shape)} and {graphs.latent_dim}; "
            "verify against the model it was exported from"
        )


def make_inputs(graphs, images: np.ndarray, labels: np.ndarray | None, seed: int, num_images: int,
                num_prior: int) -> tuple[VerifyInputs, tuple[np.ndarray, np.ndarray]]:
    """Held-out images (with their classes), and the decoder's latents: prior draws (each class in turn),
    then the Keras encoder's z_mean of the images; with that encoder's (z_mean, z_log_var) of the images."""
    x = images_for_model(images[:num_images], graphs.image_shape, "verification images")
    y = None
    if graphs.conditional:
        if labels is None:
            raise BadInputError("a conditional model is verified with the class labels of its images; "
                                "use the labelled data set it was trained on")
        y = check_labels(np.asarray(labels)[:num_images], len(x), graphs.num_classes, "verification labels")
        check_every_class(y, graphs.class_names, "the verification images")
    z_mean, z_log_var = graphs.encode(x, y)
    latents = np.concatenate([prior_latents(num_prior, graphs.latent_dim, seed), z_mean])
    latent_labels = None if y is None else np.concatenate([cycled(num_prior, graphs.num_classes), y])
    return VerifyInputs(x, latents, seed, num_prior, y, latent_labels), (z_mean, z_log_var)


def verify_bundle(
    bundle_dir,
    model,
    images: np.ndarray,
    *,
    labels: np.ndarray | None = None,
    tolerances: dict | None = None,
    seed: int = 0,
    num_images: int = VERIFY_IMAGES,
    num_prior: int = PRIOR_LATENTS,
    cpus: Sequence[str] = (),
    log: Callable[[str], None] = print,
    table: bool = True,
) -> VerifyReport:
    """Verify every artifact against `model` (a `vae_edge.model.VAE`, or `VaeGraphs` of any Keras VAE), on this
    CPU and on each emulated CPU target of `cpus` (`vae_edge.verify.emulation.TARGETS`); return the report (also
    written into the bundle, with the inputs and outputs it was judged on).

    A conditional model needs the images' `labels`: the encoder and every pipeline run on each
    image's own class, and the prior latents are decoded as every class in turn."""
    from vae_edge.model.source import VaeGraphs, graphs_of_vae  # Keras, only when verifying: re-judging stays light
    from vae_edge.verify.reference import run_keras

    graphs = model if isinstance(model, VaeGraphs) else graphs_of_vae(model)
    bundle = Bundle(bundle_dir)
    bundle.check_all()
    check_graphs_match(bundle, graphs)
    inputs, posterior = make_inputs(graphs, images, labels, seed, num_images, num_prior)
    reference = run_keras(graphs, inputs, posterior)
    host = run_bundle(bundle, inputs, HOST)
    for stale in _saved(bundle.folder).glob("*.npz"):  # another verification's inputs and outputs
        stale.unlink()
    inputs.save(_saved(bundle.folder) / INPUTS)
    for run in (reference, host):
        run.save(saved_outputs(bundle.folder, run.runner))
    write_golden(bundle, inputs, reference, host)
    for target in cpus:
        run_emulated(bundle.folder, target, log)
    return publish(bundle, inputs, reference, host, tolerances, log, table)


def run_emulated(folder: Path, name: str, log: Callable[[str], None], images: int = EMULATED_IMAGES) -> Path:
    """The bundle's files run as CPU target `name` under qemu (set up once and cached) on the first `images`
    of the saved inputs; their outputs saved beside the others. Emulated timings mean nothing: none is kept."""
    from vae_edge.verify.emulation import prepare, target_named

    target = target_named(name)
    environment = prepare(target, log)
    out = saved_outputs(folder, target.name)
    log(f"running the bundle as {target.name} ({target.cpu_class}, emulated by qemu) on {images} images")
    done = environment.run(["-m", "vae_edge.verify.runner", folder, folder / SAVED / INPUTS, out, target.name,
                            "--images", str(images), "--emulated"])
    if done.returncode != 0 or not out.is_file():
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise VaeEdgeError(f"the bundle's runner under {target.name} emulation failed: {last}")
    return out


def rejudge(bundle_dir, tolerances: dict | None = None, log: Callable[[str], None] = print,
            table: bool = True) -> VerifyReport:
    """Judge the outputs saved by the last verification again, under `tolerances`; runs nothing."""
    bundle = Bundle(bundle_dir)
    inputs = VerifyInputs.load(_saved(bundle.folder) / INPUTS)
    return publish(bundle, inputs, *_reference_and_host(bundle), tolerances, log, table)


def _reference_and_host(bundle: Bundle) -> tuple[RunOutputs, RunOutputs]:
    """The Keras and this machine's outputs saved by the last verification."""
    reference, host = (RunOutputs.load(saved_outputs(bundle.folder, name)) for name in (KERAS, HOST))
    return reference, host


def publish(bundle: Bundle, inputs: VerifyInputs, reference: RunOutputs, host: RunOutputs, tolerances: dict | None,
            log: Callable[[str], None], table: bool, loaded: dict[str, RunOutputs] | None = None) -> VerifyReport:
    """Judge the host's outputs (and every other CPU's saved beside them), write the reports and the manifest.
    `loaded`: other CPUs' saved outputs already in memory, by runner name, not read again."""
    loaded = loaded or {}
    report = judge_run(bundle, inputs, reference, host, tolerances)
    for path in sorted((bundle.folder / SAVED).glob("*.npz")):
        if path.stem not in (KERAS, HOST, Path(INPUTS).stem):
            other = loaded[path.stem] if path.stem in loaded else RunOutputs.load(path)
            report.cpus[other.runner] = judge_run(bundle, inputs, reference, other, tolerances)
    if report.cpus:
        report.passed = report.passed and all(other.passed for other in report.cpus.values())
        fewest = min(other.inputs["images"] for other in report.cpus.values())
        if fewest < report.inputs["images"]:  # this CPU on the rows the others ran: a fair column beside theirs
            rows = {Graph.ENCODER.value: np.arange(fewest), Graph.DECODER.value: inputs.latent_rows(fewest)}
            report.same_rows = judge_run(bundle, inputs, reference, host.subset(rows, fewest), tolerances)
    write_json(bundle.folder / "verify.json", report.to_json())
    layers = bundle.folder / SAVED / LAYERS
    write_markdown(report, bundle.folder / "verify.md", json.loads(layers.read_text()) if layers.is_file() else {})
    save_picture(inputs.images, reference.pipelines[KERAS].reconstruction,
                 {key: pipeline.reconstruction for key, pipeline in host.pipelines.items()}, bundle.folder / "verify.png")
    record_in_manifest(bundle, report)
    log(format_table(report) if table else verdict_line(report))
    return report


def write_layer_tables(folder: Path, tables: dict[str, list[dict]]) -> None:
    """Keep the export's per-layer tables beside the saved outputs, for verify.md (and its re-judging)."""
    write_json(_saved(folder) / LAYERS, tables)


def _saved(folder: Path) -> Path:
    (folder / SAVED).mkdir(exist_ok=True)
    return folder / SAVED


def record_in_manifest(bundle: Bundle, report: VerifyReport) -> None:
    """The verdict per artifact and per pipeline, on this CPU and on every other CPU it was checked on, so the
    runtime can tell which files were verified for the CPU it runs on."""
    manifest = json.loads((bundle.folder / MANIFEST).read_text())
    manifest["verification"] = {**verdicts(report), "tolerances": report.tolerances,
                                "cpus": {name: verdicts(other) for name, other in report.cpus.items()}}
    write_json(bundle.folder / MANIFEST, manifest)


def verdicts(report: VerifyReport) -> dict:
    artifacts: dict[str, bool] = {}
    for check in report.outputs:
        artifacts[check.artifact] = artifacts.get(check.artifact, True) and check.passed
    return {
        "passed": all(p.passed for p in report.pipelines) and all(artifacts.values()),
        "cpu_class": (report.cpu or {}).get("cpu_class"),
        "emulated": bool((report.cpu or {}).get("emulated")),
        "artifacts": artifacts,
        "pipelines": {
            p.pipeline: {
                "passed": p.passed,
                "negative_elbo": p.negative_elbo,
                "elbo_increase_pct": p.elbo_increase_pct,
                "psnr_db": p.psnr_db,
                "anomaly_threshold": p.anomaly_threshold,
            }
            for p in report.pipelines
        },
    }


def judge_captured(bundle_dir, captured: Sequence[Path], tolerances: dict | None = None,
                   log: Callable[[str], None] = print, table: bool = True) -> VerifyReport:
    """Add outputs captured elsewhere (another CPU; `python -m vae_edge.verify.runner` wrote them there) to
    the bundle's saved outputs and judge everything again."""
    bundle = Bundle(bundle_dir)
    inputs = VerifyInputs.load(_saved(bundle.folder) / INPUTS)
    runs = [(path, check_captured(bundle, inputs, RunOutputs.load(path), path)) for path in captured]
    for path, run in runs:  # every file checked before any is kept
        write_bytes(saved_outputs(bundle.folder, run.runner), Path(path).read_bytes())
    return publish(bundle, inputs, *_reference_and_host(bundle), tolerances, log, table,
                   {run.runner: run for _, run in runs})


def check_captured(bundle: Bundle, inputs: VerifyInputs, run: RunOutputs, path: Path) -> RunOutputs:
    """Outputs captured elsewhere, checked to be this bundle's files run on these inputs before they are judged."""
    try:
        check_runner_name(run.runner)
    except BadInputError as error:
        raise BadInputError(f"{path}: {error}") from None
    pipelines = {target.key for target in bundle.targets()}
    artifacts = {artifact.key for artifact in bundle.artifacts}
    if not 0 < run.images <= len(inputs.images) or not set(run.pipelines) & pipelines \
            or not set(run.artifacts) <= artifacts:
        raise BadInputError(f"{path}: not this bundle's files run on its saved inputs; run "
                            f"`python -m vae_edge.verify.runner {bundle.folder} "
                            f"{bundle.folder / SAVED / INPUTS} OUT.npz NAME` on the other CPU")
    if any(len(pipeline.z_mean) != run.images for pipeline in run.pipelines.values()):
        raise BadInputError(f"{path}: its pipelines' outputs are not one row per image it says it ran; capture it again")
    return run
