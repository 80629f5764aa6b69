"""Verification report: terminal table, Markdown (through the document model) and a picture."""

from pathlib import Path

import numpy as np

from vae_edge.document import Heading, Paragraph, Picture, Table, to_markdown
from vae_edge.fsutil import atomic_file, write_text
from vae_edge.tables import text_table
from vae_edge.verify.results import OutputCheck, VerifyReport


def _measure(check: OutputCheck) -> str:
    if check.stats.psnr_db is not None:
        return f"PSNR {check.stats.psnr_db:.1f} dB"
    if check.stats.kl_change_nats is not None:
        return f"KL change {check.stats.kl_change_nats:.3f} nats, std {100 * check.stats.std_ratio_error:.1f}%"
    if check.stats.cosine is not None:
        return f"cos {check.stats.cosine:.5f}"
    return "-"


def _verdict(passed: bool) -> str:
    return "PASS" if passed else "FAIL"


def table_rows(report: VerifyReport) -> list[list[str]]:
    rows = [["artifact", "output", "max abs err", "p99 abs err", "measure", "tolerance", "result"]]
    for check in [*report.outputs, *(p.end_to_end for p in report.pipelines)]:
        s = check.stats
        if not s.shape_ok:
            rows.append([check.artifact, check.output, "-", "-", "shape mismatch", check.criterion, "FAIL"])
            continue
        rows.append(
            [
                check.artifact,
                check.output,
                f"{s.max_abs:.2e}",
                f"{s.p99_abs:.2e}",
                _measure(check),
                check.criterion,
                _verdict(check.passed),
            ]
        )
    return rows


def pipeline_rows(report: VerifyReport) -> list[list[str]]:
    keras = report.keras
    rows = [
        ["pipeline", "-ELBO (nats)", "ELBO cost", "recon PSNR", "tolerance", "result"],
        ["Keras", f"{keras['negative_elbo']:.2f}", "-", f"{keras['psnr_db']:.2f} dB", "-", "reference"],
    ]
    for p in report.pipelines:
        rows.append(
            [
                p.pipeline,
                f"{p.negative_elbo:.2f}",
                f"{p.elbo_increase_pct:+.3f}%",
                f"{p.psnr_db:.2f} dB",
                p.criterion,
                _verdict(p.passed),
            ]
        )
    return rows


def verdict_line(report: VerifyReport) -> str:
    """The verification in one line: counts, the verdict and the worst ELBO cost; the tables are in verify.md."""
    worst = max(report.pipelines, key=lambda p: p.elbo_increase_pct, default=None)
    cost = f"; largest ELBO cost {worst.elbo_increase_pct:+.3f}% ({worst.pipeline})" if worst else ""
    failed = [p.pipeline for p in report.pipelines if not p.passed]
    verdict = "PASS" if not failed else f"FAIL ({', '.join(failed)})"
    artifacts = len({o.artifact for o in report.outputs})
    line = (f"verified {artifacts} artifacts and {len(report.pipelines)} pipelines against Keras on {where(report)}: "
            f"{verdict}{cost}")
    for other in report.cpus.values():
        failing = [p.pipeline for p in other.pipelines if not p.passed]
        line += f"\n  on {where(other)}: {'PASS' if not failing else 'FAIL (' + ', '.join(failing) + ')'}"
    return line


def where(report: VerifyReport) -> str:
    """The CPU a report's outputs came from, e.g. `host (vnni)` or `cortex-a53 (arm64, emulated)`."""
    cpu = report.cpu or {}
    details = ", ".join(filter(None, [cpu.get("cpu_class"), "emulated" if cpu.get("emulated") else ""]))
    return f"{report.runner} ({details})" if details else report.runner


def format_table(report: VerifyReport) -> str:
    """The tables of verify.md as text, and one verdict that names every CPU where something failed."""
    tables = [text_table(table_rows(report)), text_table(pipeline_rows(report))]
    if report.cpus:
        tables.append(text_table(cpu_rows(report)))
    failing = {where(r): keys for r in (report, *report.cpus.values()) if (keys := _failing(r))}
    verdict = ("FAIL: " + "; ".join(f"on {cpu}, {', '.join(keys)}" for cpu, keys in failing.items())
               + " out of tolerance" if failing
               else "PASS: every artifact is within tolerance" + (" on every CPU" if report.cpus else ""))
    return "\n\n".join([*tables, verdict])


def _failing(report: VerifyReport) -> list[str]:
    """The pipelines and artifacts out of tolerance in one CPU's report."""
    return list(dict.fromkeys([*(p.pipeline for p in report.pipelines if not p.passed),
                               *(o.artifact for o in report.outputs if not o.passed)]))


def cpu_rows(report: VerifyReport) -> list[list[str]]:
    """Each pipeline's ELBO cost and verdict on every CPU it was verified on, and this CPU's on the same (fewer)
    images as the others, since the ELBO cost of a handful of images moves with which images they are."""
    reports = [report, *([report.same_rows] if report.same_rows else []), *report.cpus.values()]
    rows = [["pipeline", *(f"{where(r)}, {r.inputs['images']} images" for r in reports)]]
    results = [{p.pipeline: p for p in r.pipelines} for r in reports]
    for p in report.pipelines:
        cells = []
        for found in results:
            check = found.get(p.pipeline)
            cells.append("-" if check is None else f"{check.elbo_increase_pct:+.3f}% {_verdict(check.passed)}")
        rows.append([p.pipeline, *cells])
    return rows


def blocks(report: VerifyReport, picture: Path) -> list:
    """The report as document blocks (also used by the run report)."""
    inputs = report.inputs
    cpu = report.cpu or {}
    per_cpu = [Heading("Per CPU: ELBO cost and verdict of each pipeline", 3), Table(cpu_rows(report)),
               Paragraph("Emulated CPUs run the same files under qemu user-mode emulation: their numbers are "
                         "real, their timings mean nothing.")] if report.cpus else []
    return [
        Paragraph(
            f"**{_verdict(report.passed)}**. Inputs: {inputs['images']} held-out images, {inputs['prior_latents']} "
            f"latents from the prior and {inputs['encoded_latents']} encoded latents (seed {inputs['seed']}), saved "
            f"in `verify/` with every runner's outputs. Ran on {cpu.get('cpu', 'this machine')} "
            f"(CPU class {cpu.get('cpu_class', '?')}). "
            "`max abs err` is also the smallest absolute tolerance that would have passed."
        ),
        Heading("Per artifact and output", 3),
        Table(table_rows(report)),
        Heading("Per pipeline (encoder then decoder), in the model's own terms", 3),
        Table(pipeline_rows(report)),
        *per_cpu,
        Picture(picture, "reconstructions per pipeline, and |artifact - Keras| per pixel with each row's own scale"),
    ]


def write_markdown(report: VerifyReport, path, layers: dict[str, list[dict]] | None = None) -> Path:
    """verify.md: the report, and where the integer files lose, layer by layer, when the export measured it."""
    document = [Heading("Verification against the Keras model", 1), *blocks(report, Path("verify.png")),
                *layer_blocks(layers or {})]
    return write_text(path, to_markdown(document))


def layer_blocks(layers: dict[str, list[dict]]) -> list:
    """One table per integer file: each quantized tensor's local SQNR (its op run on quantized inputs) and
    accumulated SQNR (the whole file so far against float); the lowest say which layer to keep in float."""
    if not layers:
        return []
    blocks_ = [Heading("Where the integer files lose, per layer", 2), Paragraph(
        "SQNR in dB of each quantized tensor against float, on calibration inputs: local (the op alone, on quantized "
        "inputs) and accumulated (the whole file up to it). The lowest accumulated values say which layers to keep "
        "in float; the head after the last convolution already runs in float.")]
    for key, rows in layers.items():
        table = [["op", "tensor", "local SQNR", "accumulated SQNR"]]
        table += [[row["op"], row["tensor"], _db(row.get("local_sqnr_db")), _db(row.get("accumulated_sqnr_db"))]
                  for row in rows]
        blocks_ += [Heading(key, 3), Table(table)]
    return blocks_


def _db(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} dB"


def save_picture(images: np.ndarray, keras: np.ndarray, reconstructions: dict[str, np.ndarray], path, count: int = 6) -> Path:
    """A row of inputs and of Keras' reconstructions, then one row per pipeline: its reconstructions,
    and |pipeline - Keras| heat maps on that row's own scale (float32 errors are ~1e-7, int8 ~1e-2),
    with a colour bar per row."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    count = min(count, len(images))
    names = list(reconstructions)
    rows = [("input", images, None), ("Keras", keras, None)] + [
        (n, reconstructions[n], np.abs(reconstructions[n] - keras)) for n in names
    ]
    figure, axes = plt.subplots(
        len(rows),
        2 * count + 1,
        figsize=(2 * count * 0.9 + 2.6, len(rows) * 0.95),
        squeeze=False,
        gridspec_kw={"width_ratios": [1] * (2 * count) + [0.25]},
    )
    for r, (name, batch, error) in enumerate(rows):
        for c in range(count):
            axes[r, c].imshow(batch[c].squeeze(), cmap="gray" if batch.shape[-1] == 1 else None, vmin=0, vmax=1)
        if error is not None:
            peak = float(error[:count].max()) or 1e-12
            for c in range(count):
                shown = axes[r, count + c].imshow(error[c].mean(-1), cmap="inferno", vmin=0, vmax=peak)
            bar = figure.colorbar(shown, cax=axes[r, -1])
            bar.set_ticks([0, peak], labels=["0", f"{peak:.1e}"])
            bar.ax.tick_params(labelsize=6)
        else:
            for axis in axes[r, count:]:
                axis.set_visible(False)
        axes[r, 0].set_ylabel(name, rotation=0, ha="right", va="center", fontsize=7)
    for axis in axes[:, :-1].ravel():
        axis.set_xticks([]), axis.set_yticks([])
        axis.spines[:].set_visible(False)
    axes[0, 0].set_title("reconstructions", fontsize=7, loc="left")
    axes[2 if len(rows) > 2 else 0, count].set_title("|pipeline - Keras|, per-row scale", fontsize=7, loc="left")
    figure.subplots_adjust(left=0.16, right=0.93, top=0.95, bottom=0.02, wspace=0.05, hspace=0.1)
    with atomic_file(path) as partial:
        figure.savefig(partial, dpi=110, format="png")
    plt.close(figure)
    return Path(path)
