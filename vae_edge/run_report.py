"""`report.md` and `report.html` of a run: model card, training, samples, verification, latency."""

import json
from pathlib import Path

from vae_edge.bench.report import groups
from vae_edge.bench.report import table_rows as bench_rows
from vae_edge.bundle import Bundle
from vae_edge.document import Code, Heading, Paragraph, Picture, Table, write
from vae_edge.run_folder import RunFolder
from vae_edge.tables import human_size
from vae_edge.verify.report import blocks as verify_blocks
from vae_edge.verify.results import VerifyReport


def _read(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def model_card(config: dict, history: dict, bench: dict | None) -> Table:
    train = config["train"]
    rows = [
        ["model card", ""],
        ["variant", f"{train['variant']} (latent_dim {train['latent_dim'] or 'preset'}; {history['parameters']:,} parameters)"],
        ["data", f"{train['dataset']} (seed {train['seed']} split)"],
        ["precision", train["precision"]],
        [
            "training",
            f"{train['epochs']} epochs, batch {train['batch_size']}, {history['seconds_per_epoch']:.1f} s/epoch, "
            f"best epoch {history['best_epoch']}",
        ],
    ]
    if bench and bench.get("flops"):
        flops = bench["flops"]
        rows.append(
            [
                "FLOPs per image",
                ", ".join(
                    f"{graph} {value['flops'] / 1e6:.1f} M"
                    for graph, value in flops.items()
                    if isinstance(value, dict) and "flops" in value
                ),
            ]
        )
    return Table(rows)


def bundle_layout(bundle: Bundle) -> Table:
    rows = [["artifact", "file", "size", "verified"]]
    verdicts = bundle.manifest.get("verification", {}).get("artifacts", {})
    for artifact in bundle.artifacts:
        verdict = verdicts.get(artifact.key)
        rows.append(
            [
                artifact.key,
                artifact.path,
                human_size(artifact.size_bytes),
                "-" if verdict is None else ("PASS" if verdict else "FAIL"),
            ]
        )
    return Table(rows)


def write_report(run_dir) -> tuple[Path, Path]:
    """Build the report from whatever stages have produced output."""
    folder = RunFolder(run_dir)
    config = _read(folder.config)
    history = _read(folder.train / "history.json")
    evaluation = _read(folder.evaluation)
    verify = _read(folder.bundle / "verify.json")
    bench = _read(folder.bench)
    train = config["train"]
    blocks = [Heading(f"vae-edge run: {train['variant']} VAE on {train['dataset']}", 1)]
    if evaluation:
        blocks.append(
            Paragraph(
                f"Test -ELBO {evaluation['negative_elbo']:.2f} nats/image "
                f"(reconstruction {evaluation['reconstruction_loss']:.2f} "
                f"+ KL {evaluation['kl_loss']:.2f}), importance-weighted NLL {evaluation.get('iw_nll', float('nan')):.2f} "
                f"(k={evaluation.get('importance_samples', 0)}), reconstruction PSNR {evaluation['psnr_db']:.2f} dB, "
                f"{evaluation['active_units']}/{evaluation['latent_dim']} active latent units, "
                f"on {evaluation['images']} held-out images."
            )
        )
        if "per_class" in evaluation:
            blocks += [
                Paragraph(
                    f"Conditional: {100 * evaluation['label_accuracy']:.1f} % of "
                    f"{evaluation['label_accuracy_samples_per_class']} samples per class are seen as the class asked for "
                    f"by a classifier trained on the training split ({100 * evaluation['classifier_test_accuracy']:.1f} % "
                    "accurate on the test images)."
                ),
                Table([["class", "test images", "-ELBO (nats)", "label accuracy"]] + [
                    [name, str(row["images"]), f"{row.get('negative_elbo', float('nan')):.2f}",
                     f"{100 * row['label_accuracy']:.0f} %"] for name, row in evaluation["per_class"].items()
                ]),
            ]
    if history:
        blocks += [
            model_card(config, history, bench),
            Heading("Training"),
            Picture(Path("train/training_curves.png"), "loss, reconstruction and KL per epoch"),
        ]
        blocks += [
            Heading("Samples and reconstructions"),
            Picture(Path("train/samples.png"), "samples from the prior (Keras)"
                    + (", a row per class" if "per_class" in (evaluation or {}) else "")),
            Picture(Path("train/reconstructions.png"), "test digits (top) and their reconstructions (bottom)"),
        ]
    if folder.samples.is_dir():
        for png in sorted(folder.samples.glob("*.png")):
            blocks.append(Picture(png.relative_to(folder.root), f"samples through the TensorFlow-free runtime: {png.stem}"))
    if verify:
        blocks += [
            Heading("Verification against the Keras model"),
            *verify_blocks(VerifyReport.from_json(verify), Path("bundle/verify.png")),
        ]
    if bench:
        blocks.append(Heading("Latency"))
        for batch, threads in groups(bench):
            blocks += [Paragraph(f"batch {batch}, {threads} thread(s)"), Table(bench_rows(bench, batch, threads))]
        blocks.append(Picture(Path("bundle/bench.png"), "median latency per artifact, whiskers to p90"))
    if (folder.bundle / "manifest.json").is_file():
        blocks += [
            Heading("The bundle"),
            bundle_layout(Bundle(folder.bundle)),
            Code(f"vae-edge info {folder.bundle}\nvae-edge sample {folder.bundle} -n 16 -o samples.png"),
        ]
    return write(blocks, folder.root, "report", f"vae-edge run {folder.root.name}")
