"""Judge one runner's outputs against the Keras reference: the comparator half of verification.

Per artifact and output: error statistics against the Keras graph's output on the same feed, and
PASS/FAIL against its mode's tolerance. Per pipeline (every graph of one target): end-to-end
reconstructions against Keras', and how much worse its test ELBO is (overall, and per class for a
conditional model). It runs nothing, so saved outputs can be judged again under new tolerances.
"""

import numpy as np

from vae_edge.bundle import Bundle
from vae_edge.elbo import anomaly_scores, anomaly_threshold, elbo_scores
from vae_edge.registry import Graph
from vae_edge.signatures import RECONSTRUCTION
from vae_edge.verify.inputs import VerifyInputs
from vae_edge.verify.outputs import ARRAYS, KERAS, PipelineOutputs, RunOutputs
from vae_edge.verify.results import OutputCheck, PipelineCheck, VerifyReport
from vae_edge.verify.stats import OutputKind, compare, kind_of
from vae_edge.verify.tolerances import judge, judge_elbo, resolve


def judge_run(bundle: Bundle, inputs: VerifyInputs, reference: RunOutputs, run: RunOutputs,
              tolerances: dict | None = None) -> VerifyReport:
    """The report of `run` (the bundle's files on one CPU) against `reference` (Keras), on the inputs it ran."""
    limits = resolve(tolerances)
    kind = bundle.model["reconstruction_loss"]
    class_names = tuple(bundle.model.get("class_names") or ())
    ran = inputs.subset(run.images)
    rows = {Graph.ENCODER.value: np.arange(run.images), Graph.DECODER.value: inputs.latent_rows(run.images)}
    outputs = []
    for artifact in bundle.artifacts:
        if artifact.key not in run.artifacts:  # its engine is not where the runner ran (TensorFlow on a phone)
            continue
        produced = run.artifacts[artifact.key]
        for name, whole in reference.artifacts[artifact.graph].items():
            expected = whole[rows[artifact.graph]]
            stats = compare(expected, produced[name], kind_of(name))
            passed, criterion = judge(stats, limits[artifact.mode])
            outputs.append(OutputCheck(artifact.key, name, stats, criterion, passed))
    keras = PipelineOutputs(*(getattr(reference.pipelines[KERAS], name)[:run.images] for name in ARRAYS))
    keras_scores = scores_of(keras, ran, class_names)
    pipelines = []
    for target in bundle.targets():
        if target.key not in run.pipelines:
            continue
        members = {a.key for a in bundle.pipeline(target).values()}
        member_checks = [o for o in outputs if o.artifact in members]
        pipelines.append(judge_pipeline(target, run.pipelines[target.key], keras, keras_scores, member_checks, ran, kind,
                                        class_names, limits[target.mode]))
    return VerifyReport(
        passed=all(o.passed for o in outputs) and all(p.passed for p in pipelines),
        inputs={"images": int(len(ran.images)), "prior_latents": ran.num_prior,
                "encoded_latents": int(len(ran.latents) - ran.num_prior), "seed": ran.seed},
        tolerances=limits,
        keras=keras_scores,
        outputs=outputs,
        pipelines=pipelines,
        runner=run.runner,
        cpu=run.cpu,
    )


def scores_of(pipeline: PipelineOutputs, inputs: VerifyInputs, class_names) -> dict:
    """A pipeline's ELBO and PSNR on the images (per class with labels), from its per-image outputs."""
    return elbo_scores(inputs.images, pipeline.nll, pipeline.kl, pipeline.reconstruction, inputs.labels,
                       class_names if inputs.labels is not None else ())


def judge_pipeline(target, pipeline: PipelineOutputs, keras: PipelineOutputs, keras_scores: dict,
                   member_checks: list[OutputCheck], inputs: VerifyInputs, kind: str, class_names,
                   tolerance: dict) -> PipelineCheck:
    """One target end to end: its reconstructions against Keras', and its ELBO cost (overall and, for a
    conditional model, per class)."""
    scores = scores_of(pipeline, inputs, class_names)
    stats = compare(keras.reconstruction, pipeline.reconstruction, OutputKind.IMAGE)
    passed, criterion = judge(stats, tolerance)
    end_to_end = OutputCheck(f"{target.key} end to end", RECONSTRUCTION, stats, criterion, passed)
    threshold = anomaly_threshold(anomaly_scores(inputs.images, pipeline.z_mean, pipeline.z_log_var,
                                                 pipeline.reconstruction, kind))
    reference = keras_scores["negative_elbo"]
    increase = 100.0 * (scores["negative_elbo"] - reference) / abs(reference)
    elbo_ok, elbo_criterion = judge_elbo(increase, tolerance)
    per_class = None
    if "per_class" in scores:
        per_class = {name: 100.0 * (row["negative_elbo"] / keras_scores["per_class"][name]["negative_elbo"] - 1.0)
                     for name, row in scores["per_class"].items()}
        failing = [name for name, value in per_class.items() if not judge_elbo(value, tolerance)[0]]
        if failing:
            elbo_ok, elbo_criterion = False, f"{elbo_criterion}; classes {', '.join(failing)} out of it"
    failed_members = [o for o in member_checks if not o.passed]
    return PipelineCheck(
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
        passed=elbo_ok and passed and not failed_members,
        elbo_increase_pct_per_class=per_class,
        reason=failure_reason(increase, per_class, elbo_ok, elbo_criterion, end_to_end, failed_members),
    )


def failure_reason(increase: float, per_class: dict | None, elbo_ok: bool, elbo_criterion: str, end_to_end: OutputCheck,
                   failed_members: list[OutputCheck]) -> str:
    """Why a pipeline failed, in one phrase ("" when it passed): the ELBO cost first, as users judge by it."""
    reasons = []
    if not elbo_ok:
        worst = max(per_class.items(), key=lambda item: item[1]) if per_class else None
        detail = f", class {worst[0]} {worst[1]:+.2f}%" if worst and worst[1] > increase else ""
        reasons.append(f"ELBO cost {increase:+.2f}%{detail} against {elbo_criterion}")
    reasons += [f"{check.artifact} {check.output} out of {check.criterion}" for check in [*failed_members, end_to_end]
                if not check.passed]
    return "; ".join(reasons)
