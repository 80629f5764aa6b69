"""`vae-edge verify`: run the Keras model and every artifact of a bundle on the same inputs.

Per artifact and output it reports error statistics and PASS/FAIL against the mode's
tolerance; per exported pipeline (an encoder and decoder of the same format and mode) it
compares end-to-end reconstructions and the test ELBO against the Keras model's.
Writes `verify.json`, `verify.md`, `verify.png` and the results into `manifest.json`.
"""

import json
from collections.abc import Callable

import numpy as np

from vae_edge.bundle import GRAPH_OUTPUTS, MANIFEST, Bundle
from vae_edge.data import images_for_model
from vae_edge.elbo import anomaly_scores, anomaly_threshold, prior_latents
from vae_edge.errors import BadInputError
from vae_edge.evaluation import evaluate_pipeline
from vae_edge.fsutil import write_json
from vae_edge.verify.report import format_table, save_picture, write_markdown
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


def pipeline_functions(encoder, decoder):
    """numpy `encode`/`decode` callables over two engines."""

    def encode(x):
        out = encoder.run({encoder.inputs[0]["name"]: x})
        return out["z_mean"], out["z_log_var"]

    def decode(z):
        return decoder.run({decoder.inputs[0]["name"]: z})["reconstruction"]

    return encode, decode


def verify_bundle(
    bundle_dir,
    model,
    images: np.ndarray,
    *,
    tolerances: dict | None = None,
    seed: int = 0,
    num_images: int = 256,
    num_prior: int = 64,
    log: Callable[[str], None] = print,
) -> dict:
    """Verify every artifact; return the report (also written into the bundle)."""
    from vae_edge.export.graphs import float32_vae

    bundle = Bundle(bundle_dir)
    bundle.check_all()
    check_model_matches(bundle, model)
    vae = float32_vae(model)
    limits = resolve(tolerances)
    kind = vae.reconstruction_loss
    x = images_for_model(images[:num_images], model.image_shape, "verification images")
    reference_mean, reference_log_var = vae.encode(x)
    latents = np.concatenate([prior_latents(num_prior, vae.latent_dim, seed), reference_mean])
    reference = {"z_mean": reference_mean, "z_log_var": reference_log_var, "reconstruction": vae.decode(latents)}
    keras_scores = evaluate_pipeline(vae.encode, vae.decode, x, reconstruction_loss=kind, seed=seed)
    keras_reconstruction = vae.decode(reference_mean)

    rows, engines = [], {}
    for artifact in bundle.artifacts:
        engine = engines[artifact.key] = bundle.open(artifact)
        tolerance = limits[artifact.mode]
        feed = x if artifact.graph == "encoder" else latents
        outputs = engine.run({engine.inputs[0]["name"]: feed})
        for name in GRAPH_OUTPUTS[artifact.graph]:
            stats = compare(reference[name], outputs[name], "image" if name == "reconstruction" else "latent")
            passed, criterion = judge(stats, tolerance)
            rows.append({"artifact": artifact.key, "output": name, **stats, "criterion": criterion, "passed": passed})

    pipelines, pictures = [], {"Keras": keras_reconstruction}
    for artifact in bundle.artifacts:
        decoder_key = f"{artifact.format}/decoder/{artifact.mode}"
        if artifact.graph != "encoder" or decoder_key not in engines:
            continue
        encode, decode = pipeline_functions(engines[artifact.key], engines[decoder_key])
        name = f"{artifact.format}/{artifact.mode}"
        reconstruction = decode(encode(x)[0])
        pictures[name] = reconstruction
        stats = compare(keras_reconstruction, reconstruction, "image")
        passed, criterion = judge(stats, limits[artifact.mode])
        rows.append({"artifact": f"{name} (end to end)", "output": "reconstruction", **stats, "criterion": criterion, "passed": passed})
        scores = evaluate_pipeline(encode, decode, x, reconstruction_loss=kind, seed=seed)
        z_mean, z_log_var = encode(x)
        threshold = anomaly_threshold(anomaly_scores(x, z_mean, z_log_var, decode(z_mean), kind))
        increase = 100.0 * (scores["negative_elbo"] - keras_scores["negative_elbo"]) / abs(keras_scores["negative_elbo"])
        elbo_ok, elbo_criterion = judge_elbo(increase, limits[artifact.mode])
        pipelines.append({
            "pipeline": name, "format": artifact.format, "mode": artifact.mode,
            "negative_elbo": scores["negative_elbo"], "elbo_increase_pct": increase, "psnr_db": scores["psnr_db"],
            "end_to_end_max_abs": stats.get("max_abs"), "anomaly_threshold": threshold, "criterion": elbo_criterion,
            "passed": elbo_ok and passed and all(r["passed"] for r in rows if r["artifact"].startswith(f"{artifact.format}/") and r["artifact"].endswith(f"/{artifact.mode}")),
        })

    report = {
        "passed": all(r["passed"] for r in rows) and all(p["passed"] for p in pipelines),
        "inputs": {"images": int(len(x)), "prior_latents": num_prior, "encoded_latents": int(len(x)), "seed": seed},
        "tolerances": limits,
        "keras": keras_scores,
        "outputs": rows,
        "pipelines": pipelines,
    }
    write_json(bundle.folder / "verify.json", report)
    write_markdown(report, bundle.folder / "verify.md")
    save_picture(x, pictures, bundle.folder / "verify.png")
    record_in_manifest(bundle, report)
    log(format_table(report))
    return report


def record_in_manifest(bundle: Bundle, report: dict) -> None:
    manifest = json.loads((bundle.folder / MANIFEST).read_text())
    manifest["verification"] = {
        "passed": report["passed"],
        "tolerances": report["tolerances"],
        "artifacts": {
            key: all(r["passed"] for r in report["outputs"] if r["artifact"] == key)
            for key in dict.fromkeys(r["artifact"] for r in report["outputs"] if "end to end" not in r["artifact"])
        },
        "pipelines": {p["pipeline"]: {k: p[k] for k in ("passed", "negative_elbo", "elbo_increase_pct", "psnr_db", "anomaly_threshold")} for p in report["pipelines"]},
    }
    write_json(bundle.folder / MANIFEST, manifest)
