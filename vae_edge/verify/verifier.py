"""Run the Keras model and every artifact of a bundle on the same inputs, and judge each.

Per artifact and output: error statistics and PASS/FAIL against the mode's tolerance. Per
exported pipeline (every graph of one target): end-to-end reconstructions and the test ELBO
against the Keras model's. Writes `verify.json`, `verify.md`, `verify.png` and the results
into `manifest.json`.
"""

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vae_edge.bundle import MANIFEST, Bundle, sha256_of
from vae_edge.data import images_for_model
from vae_edge.elbo import anomaly_scores, anomaly_threshold, conditioned, evaluate_pipeline
from vae_edge.errors import BadInputError
from vae_edge.fsutil import write_json
from vae_edge.labels import check_labels, cycled, label_feed
from vae_edge.prior import prior_latents
from vae_edge.registry import Graph, Target
from vae_edge.runtime.engines import InferenceEngine, open_artifact
from vae_edge.signatures import IMAGE, RECONSTRUCTION, Z_LOG_VAR, Z_MEAN, Z, graph_specs
from vae_edge.verify.report import format_table, save_picture, verdict_line, write_markdown
from vae_edge.verify.results import OutputCheck, PipelineCheck, VerifyReport
from vae_edge.verify.stats import compare
from vae_edge.verify.tolerances import judge, judge_elbo, resolve


def check_model_matches(bundle: Bundle, model) -> None:
    facts = bundle.model
    if list(model.image_shape) != facts["input_shape"] or model.latent_dim != facts["latent_dim"]:
        raise BadInputError(
            f"{bundle.folder}: the bundle is for input {tuple(facts['input_shape'])} and latent_dim "
            f"{facts['latent_dim']}, the model has {tuple(model.image_shape)} and {model.latent_dim}; "
            "verify against the model it was exported from"
        )


def check_source(bundle: Bundle, model_path: Path) -> None:
    """Refuse (before anything is run or written) a model other than the one the bundle was exported
    from: judging a retrained model would fail every artifact and rewrite the manifest."""
    recorded = bundle.model.get("source_sha256")
    if recorded and Path(model_path).is_file() and sha256_of(model_path) != recorded:
        raise BadInputError(
            f"{model_path} is not the model {bundle.folder} was exported from (its sha256 differs from the manifest's "
            "source_sha256; was it retrained?); pass --model with the original, or re-export the bundle"
        )


def pipeline_functions(encoder: InferenceEngine, decoder: InferenceEngine, num_classes: int = 0):
    """numpy `encode(x[, labels])`/`decode(z[, labels])` callables over two engines; labels are class
    indices, fed as the graphs' one-hot `label` when the model is conditional."""

    def encode(x, labels=None):
        out = encoder.run({IMAGE: x, **label_feed(labels, num_classes)})
        return out[Z_MEAN], out[Z_LOG_VAR]

    def decode(z, labels=None):
        return decoder.run({Z: z, **label_feed(labels, num_classes)})[RECONSTRUCTION]

    return repeat_last(encode), repeat_last(decode)


def repeat_last(function):
    """`function`, answering a call with the very same argument objects as the previous call from
    memory: a pipeline's ELBO and its end-to-end check both encode the images and decode their
    posterior mean, and fixed-shape files run those a row at a time."""
    last: dict = {}

    def call(*args):
        if not (last and len(args) == len(last["args"]) and all(a is b for a, b in zip(args, last["args"]))):
            last.update(args=args, result=function(*args))
        return last["result"]

    return call


def verify_bundle(
    bundle_dir,
    model,
    images: np.ndarray,
    *,
    labels: np.ndarray | None = None,
    tolerances: dict | None = None,
    seed: int = 0,
    num_images: int = 256,
    num_prior: int = 64,
    log: Callable[[str], None] = print,
    table: bool = True,
) -> VerifyReport:
    """Verify every artifact; return the report (also written into the bundle).

    A conditional model needs the images' `labels`: the encoder and every pipeline run on each
    image's own class, and the prior latents are decoded as every class in turn."""
    from vae_edge.model.loading import float32_vae  # Keras, only when verifying: reading reports stays light

    bundle = Bundle(bundle_dir)
    bundle.check_all()
    check_model_matches(bundle, model)
    vae = float32_vae(model)
    limits = resolve(tolerances)
    kind = vae.reconstruction_loss
    specs = graph_specs(vae.image_shape, vae.latent_dim, vae.num_classes)
    x = images_for_model(images[:num_images], model.image_shape, "verification images")
    y = None
    if vae.conditional:
        if labels is None:
            raise BadInputError("a conditional model is verified with the class labels of its images; "
                                "use the labelled data set it was trained on")
        y = check_labels(np.asarray(labels)[:num_images], len(x), vae.num_classes, "verification labels")
    reference_mean, reference_log_var = vae.encode(x, y)
    latents = np.concatenate([prior_latents(num_prior, vae.latent_dim, seed), reference_mean])
    latent_labels = None if y is None else np.concatenate([cycled(num_prior, vae.num_classes), y])
    feeds = {Graph.ENCODER: {IMAGE: x, **label_feed(y, vae.num_classes)},
             Graph.DECODER: {Z: latents, **label_feed(latent_labels, vae.num_classes)}}
    reference = {Z_MEAN: reference_mean, Z_LOG_VAR: reference_log_var, RECONSTRUCTION: vae.decode(latents, latent_labels)}
    keras = KerasReference(x, vae.decode(reference_mean, y), {}, limits, kind, seed, y, vae.class_names)
    keras.scores = keras.elbo(vae.encode, vae.decode)

    outputs, engines = [], {}
    for artifact in bundle.artifacts:
        engine = engines[artifact.key] = open_artifact(bundle, artifact, check=False)  # checked above
        results = engine.run(feeds[Graph(artifact.graph)])
        for name in specs[Graph(artifact.graph)].output_names:
            stats = compare(reference[name], results[name], "image" if name == RECONSTRUCTION else "latent")
            passed, criterion = judge(stats, limits[artifact.mode])
            outputs.append(OutputCheck(artifact.key, name, stats, criterion, passed))

    pipelines, pictures = [], {}
    for target in bundle.targets():
        members = bundle.pipeline(target)
        encode, decode = pipeline_functions(engines[members[Graph.ENCODER].key], engines[members[Graph.DECODER].key],
                                            vae.num_classes)
        member_checks = [o for o in outputs if o.artifact in {a.key for a in members.values()}]
        check, pictures[target.key] = check_pipeline(target, encode, decode, keras, member_checks)
        pipelines.append(check)

    report = VerifyReport(
        passed=all(o.passed for o in outputs) and all(p.passed for p in pipelines),
        inputs={"images": int(len(x)), "prior_latents": num_prior, "encoded_latents": int(len(x)), "seed": seed},
        tolerances=limits,
        keras=keras.scores,
        outputs=outputs,
        pipelines=pipelines,
    )
    write_json(bundle.folder / "verify.json", report.to_json())
    write_markdown(report, bundle.folder / "verify.md")
    save_picture(x, keras.reconstruction, pictures, bundle.folder / "verify.png")
    record_in_manifest(bundle, report)
    log(format_table(report) if table else verdict_line(report))
    return report


@dataclass
class KerasReference:
    """What every pipeline is judged against: the Keras model's reconstructions and scores on the images."""

    images: np.ndarray
    reconstruction: np.ndarray  # decoded from the posterior mean
    scores: dict  # evaluate_pipeline's
    tolerances: dict
    reconstruction_loss: str
    seed: int
    labels: np.ndarray | None = None  # the images' classes, for a conditional model
    class_names: tuple[str, ...] = ()

    def elbo(self, encode, decode) -> dict:
        """`evaluate_pipeline`'s scores of a pipeline (encode/decode taking labels when conditional) on the
        images; for a conditional model also `per_class`: the negative ELBO of each class's images."""
        return evaluate_pipeline(*conditioned(encode, decode, self.labels), self.images,
                                 reconstruction_loss=self.reconstruction_loss, seed=self.seed, classes=self.labels,
                                 class_names=self.class_names)


def check_pipeline(
    target: Target, encode, decode, keras: KerasReference, member_checks: list[OutputCheck]
) -> tuple[PipelineCheck, np.ndarray]:
    """One target end to end: its reconstructions against Keras', and its ELBO cost (overall and, for a
    conditional model, per class); also the reconstructions."""
    x, kind, tolerance = keras.images, keras.reconstruction_loss, keras.tolerances[target.mode]
    scores = keras.elbo(encode, decode)
    encode, decode = conditioned(encode, decode, keras.labels)
    z_mean, z_log_var = encode(x)
    reconstruction = decode(z_mean)
    stats = compare(keras.reconstruction, reconstruction, "image")
    passed, criterion = judge(stats, tolerance)
    end_to_end = OutputCheck(f"{target.key} end to end", RECONSTRUCTION, stats, criterion, passed)
    threshold = anomaly_threshold(anomaly_scores(x, z_mean, z_log_var, reconstruction, kind))
    reference = keras.scores["negative_elbo"]
    increase = 100.0 * (scores["negative_elbo"] - reference) / abs(reference)
    elbo_ok, elbo_criterion = judge_elbo(increase, tolerance)
    per_class = None
    if "per_class" in scores:
        per_class = {name: 100.0 * (row["negative_elbo"] / keras.scores["per_class"][name]["negative_elbo"] - 1.0)
                     for name, row in scores["per_class"].items()}
        failing = [name for name, value in per_class.items() if not judge_elbo(value, tolerance)[0]]
        if failing:
            elbo_ok, elbo_criterion = False, f"{elbo_criterion}; classes {', '.join(failing)} out of it"
    check = PipelineCheck(
        pipeline=target.key,
        format=target.format,
        mode=target.mode,
        batch=target.batch,
        negative_elbo=scores["negative_elbo"],
        elbo_increase_pct=increase,
        psnr_db=scores["psnr_db"],
        anomaly_threshold=threshold,
        end_to_end=end_to_end,
        criterion=elbo_criterion,
        passed=elbo_ok and passed and all(o.passed for o in member_checks),
        elbo_increase_pct_per_class=per_class,
    )
    return check, reconstruction


def record_in_manifest(bundle: Bundle, report: VerifyReport) -> None:
    manifest = json.loads((bundle.folder / MANIFEST).read_text())
    artifacts: dict[str, bool] = {}
    for check in report.outputs:
        artifacts[check.artifact] = artifacts.get(check.artifact, True) and check.passed
    manifest["verification"] = {
        "passed": report.passed,
        "tolerances": report.tolerances,
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
    write_json(bundle.folder / MANIFEST, manifest)
