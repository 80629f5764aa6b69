"""Verification report: terminal table, Markdown, and a picture of reconstructions and errors."""

from pathlib import Path

import numpy as np

from vae_edge.tables import markdown_table, text_table


def _measure(row: dict) -> str:
    if "psnr_db" in row:
        return f"PSNR {row['psnr_db']:.1f} dB"
    if "cosine" in row:
        return f"cos {row['cosine']:.5f}"
    return "-"


def table_rows(report: dict) -> list[list[str]]:
    rows = [["artifact", "output", "max abs err", "p99 abs err", "measure", "tolerance", "result"]]
    for row in report["outputs"]:
        if not row["shape_ok"]:
            rows.append([row["artifact"], row["output"], "-", "-", "shape mismatch", row["criterion"], "FAIL"])
            continue
        rows.append([
            row["artifact"], row["output"], f"{row['max_abs']:.2e}", f"{row['p99_abs']:.2e}",
            _measure(row), row["criterion"], "PASS" if row["passed"] else "FAIL",
        ])
    return rows


def pipeline_rows(report: dict) -> list[list[str]]:
    keras = report["keras"]
    rows = [["pipeline", "-ELBO (nats)", "ELBO cost", "recon PSNR", "tolerance", "result"],
            ["Keras", f"{keras['negative_elbo']:.2f}", "-", f"{keras['psnr_db']:.2f} dB", "-", "reference"]]
    for p in report["pipelines"]:
        rows.append([p["pipeline"], f"{p['negative_elbo']:.2f}", f"{p['elbo_increase_pct']:+.3f}%",
                     f"{p['psnr_db']:.2f} dB", p["criterion"], "PASS" if p["passed"] else "FAIL"])
    return rows


def format_table(report: dict) -> str:
    verdict = "PASS: every artifact is within tolerance" if report["passed"] else "FAIL: some artifacts are out of tolerance"
    return f"{text_table(table_rows(report))}\n\n{text_table(pipeline_rows(report))}\n\n{verdict}"


def write_markdown(report: dict, path) -> Path:
    inputs = report["inputs"]
    text = "\n\n".join([
        "# Verification against the Keras model",
        f"**{'PASS' if report['passed'] else 'FAIL'}**. Inputs: {inputs['images']} held-out images, "
        f"{inputs['prior_latents']} latents from the prior and {inputs['encoded_latents']} encoded latents (seed {inputs['seed']}). "
        "`min_atol` in verify.json is the smallest absolute tolerance that would have passed.",
        "## Per artifact and output", markdown_table(table_rows(report)),
        "## Per pipeline (encoder then decoder), in the model's own terms", markdown_table(pipeline_rows(report)),
        "![reconstructions and error maps](verify.png)",
    ])
    Path(path).write_text(text + "\n")
    return Path(path)


def save_picture(images: np.ndarray, reconstructions: dict[str, np.ndarray], path, count: int = 6) -> Path:
    """One row per pipeline: its reconstructions, then |artifact - Keras| heat maps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(reconstructions)
    keras = reconstructions["Keras"]
    count = min(count, len(images))
    figure, axes = plt.subplots(len(names) + 1, 2 * count, figsize=(2 * count * 0.9, (len(names) + 1) * 0.95), squeeze=False)
    peak = max(float(np.abs(reconstructions[n][:count] - keras[:count]).max()) for n in names) or 1e-6
    rows = [("input", images)] + [(n, reconstructions[n]) for n in names]
    for r, (name, batch) in enumerate(rows):
        for c in range(count):
            axes[r, c].imshow(batch[c].squeeze(), cmap="gray" if batch.shape[-1] == 1 else None, vmin=0, vmax=1)
            if r > 0:
                axes[r, count + c].imshow(np.abs(batch[c] - keras[c]).mean(-1), cmap="inferno", vmin=0, vmax=peak)
        axes[r, 0].set_ylabel(name, rotation=0, ha="right", va="center", fontsize=7)
    for axis in axes.ravel():
        axis.set_xticks([]), axis.set_yticks([])
        axis.spines[:].set_visible(False)
    axes[0, count].set_title(f"|artifact - Keras|, max {peak:.3g}", fontsize=7, loc="left")
    figure.tight_layout(pad=0.2, rect=(0.1, 0, 1, 1))  # room on the left for the pipeline names
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return Path(path)
