"""The benchmark report: terminal tables, bench.json, bench.md and bench.png."""

from pathlib import Path

from vae_edge.bundle import cells_of
from vae_edge.document import Heading, Paragraph, Picture, Table, to_markdown
from vae_edge.fsutil import atomic_file, write_json, write_text
from vae_edge.registry import BENCH_JSON, FORMATS, KERAS, KERAS_COLOR, PIPELINE
from vae_edge.tables import human_size, text_table

COLUMNS = [
    "subject",
    "size",
    "load",
    "first",
    "mean ± std ms",
    "p50 ms",
    "p90 ms",
    "p99 ms",
    "img/s",
    "peak RSS",
    "GFLOP/s",
    "% ceiling",
    "× eager",
    "× tf.fn",
]
FORMAT_COLORS = {KERAS: KERAS_COLOR, **{str(fmt): info.color for fmt, info in FORMATS.items()}}


def _seconds(s: float) -> str:
    return f"{s:.2f} s" if s >= 1 else f"{s * 1e3:.1f} ms"


def _ms(value: float) -> str:
    return f"{value:.3g}" if value < 100 else f"{value:.0f}"


def _ratio(value) -> str:
    return f"{value:.2f}" if value else "-"


def groups(report: dict) -> list[tuple[int, int]]:
    """The (batch, threads) combinations measured, in order."""
    return sorted({(c.batch, c.threads) for c in cells_of(report)})


def table_rows(report: dict, batch: int, threads: int) -> list[list[str]]:
    rows = [COLUMNS]
    for c in (c for c in cells_of(report) if (c.batch, c.threads) == (batch, threads)):
        rows.append(
            [
                c.key,
                human_size(c.size_bytes),
                _seconds(c.load_s),
                _seconds(c.first_s),
                f"{_ms(c.mean_ms)} ± {_ms(c.std_ms)}",
                _ms(c.p50_ms),
                _ms(c.p90_ms),
                _ms(c.p99_ms),
                f"{c.images_per_s:.0f}",
                f"{c.peak_rss_mib:.0f} MiB",
                f"{c.gflops_per_s:.2f}" if c.gflops_per_s else "-",
                f"{100 * c.fraction_of_own_ceiling:.1f}%" if c.fraction_of_own_ceiling else "-",
                _ratio(c.speedup_vs_keras_eager),
                _ratio(c.speedup_vs_keras_tf_function),
            ]
        )
    return rows


def browser_rows(report: dict) -> list[list[str]]:
    rows = [["file", "batch", "threads", "browser p50 ms", "native p50 ms", "browser / native"]]
    for row in report.get("browser", []):
        rows.append(
            [
                row["file"],
                str(row["batch"]),
                str(row["threads"]),
                _ms(row["p50_ms"]),
                _ms(row["native_p50_ms"]),
                f"{row['ratio']:.2f}x",
            ]
        )
    return rows


def _failures(report: dict) -> list[str]:
    return [f"{f['key']} at {f['threads']} thread(s): {f['error']}" for f in report["failures"]]


def format_table(report: dict) -> str:
    parts = [f"batch {b}, {t} thread(s)\n{text_table(table_rows(report, b, t))}" for b, t in groups(report)]
    parts += [f"note: {note}" for note in report["notes"]] + [f"FAILED: {line}" for line in _failures(report)]
    return "\n\n".join(parts)


def _machine_blocks(report: dict) -> list:
    m = report["machine"]
    versions = ", ".join(f"{k} {v}" for k, v in m["versions"].items())
    peak_rows = [["threads", "measured FP32 GFLOP/s", "theoretical FP32 GFLOP/s"]] + [
        [
            t,
            f"{p['measured_gflops']:.1f}" if p["measured_gflops"] else "-",
            f"{p['theoretical_gflops']:.1f}" if p["theoretical_gflops"] else "-",
        ]
        for t, p in m["fp32_peak"].items()
    ]
    return [
        Paragraph(
            f"- CPU: {m['cpu']}, {m['usable_cores']} usable of {m['logical_cores']} logical cores, "
            f"{m['cpu_mhz'] or '?'} MHz, vector extensions: {' '.join(m['vector_extensions'])}\n"
            f"- {m['platform']}, Python {m['python']}; {versions}\n"
            f"- vae-edge commit: {report.get('git_commit') or 'unknown (not a git checkout)'}"
        ),
        Table(peak_rows),
        Paragraph(f"FP32 ceiling: {m['fp32_peak_method']}."),
        *_ceiling_blocks(m.get("ceilings", {})),
    ]


def _ceiling_blocks(ceilings: dict) -> list:
    """Each engine's float32 and int8 ceiling per thread count, what `% ceiling` is held against."""
    measured = {t: c for t, c in ceilings.items() if "method" in c}
    if not measured:
        return [Paragraph("Engine ceilings: not measured (" + "; ".join(c.get("error", "?") for c in ceilings.values()) + ").")]
    rows = [["threads", "onnxruntime float32 GFLOP/s", "onnxruntime int8 GOP/s", "LiteRT float32 GFLOP/s", "LiteRT int8 GOP/s"]]
    for threads, c in measured.items():
        rows.append(
            [threads] + [f"{c[p][e]:.1f}" if c[p].get(e) else "-" for e in ("onnxruntime", "litert") for p in ("float32", "int8")]
        )
    first = next(iter(measured.values()))
    notes = "; ".join(note for c in measured.values() for note in c.get("notes", []))
    return [Table(rows), Paragraph(f"Engine ceilings: {first['method']}{'. ' + notes if notes else ''}.")]


def _flops_line(report: dict) -> str:
    flops = report["flops"]
    if PIPELINE not in flops:
        return f"FLOPs and GFLOP/s: {flops['method']}, so those columns show '-'."
    counts = ", ".join(f"{g} {flops[g]['flops'] / 1e6:.2f} MFLOP" for g in flops if g != "method")
    return f"FLOPs per image: {counts}. Counted as {flops['method']}."


def blocks(report: dict) -> list:
    """The report as document blocks (the run report reuses the tables)."""
    s = report["settings"]
    document = [
        Heading(
            f"Inference benchmark: {report['model'].get('variant', '')} {tuple(report['model']['input_shape'])}, "
            f"latent {report['model']['latent_dim']}",
            1,
        ),
        Paragraph(f"Bundle `{report['bundle']}`, {report['created']}. Keras baseline: `{report['keras_model'] or 'none'}`."),
        Heading("Machine"),
        *_machine_blocks(report),
        Heading("Method"),
        Paragraph(
            "\n".join(
                [
                    f"- Each subject at each thread count runs in a fresh process: load, first inference, "
                    f"{s['warmup']} warm-up runs, "
                    f"then timed runs until at least {s['runs']} runs and {s['min_seconds']} s (at most {s['max_seconds']} s).",
                    f"- Latency is one call on a whole batch ({s['timer']}); img/s = batch / mean latency. "
                    "Percentiles use numpy's linear interpolation; std is the population std.",
                    f"- `{PIPELINE}` is the encoder then the decoder of the same target (z_mean passed on); "
                    f"`{KERAS}/*/eager` calls the Keras model with `training=False`, "
                    f"`{KERAS}/*/tf.function` one traced function with a dynamic batch.",
                    "- `@b1` marks a fixed-shape file (every dimension fixed, batch 1); "
                    "it runs a larger batch one row at a time.",
                    "- Size is the file on disk; a SavedModel's is its whole folder (both signatures), a pipeline's both files.",
                    "- × eager and × tf.fn: the Keras subject's p50 divided by this row's p50, "
                    "same batch and threads, measured in this run.",
                    "- Peak RSS is the serving process's high-water mark (VmHWM), interpreter and libraries included; "
                    "load time is building the interpreter, session or model from its file "
                    "(the engine library is imported before the clock starts).",
                    f"- {_flops_line(report)} GFLOP/s = FLOPs per image × img/s; "
                    "% ceiling is of the subject's own engine's ceiling "
                    "in its mode's precision at that thread count: int8 for dynamic, int8 and int8-io (their matrix products run "
                    "in int8), float32 otherwise; Keras and SavedModel have none.",
                ]
            )
        ),
    ]
    for batch, threads in groups(report):
        document += [Heading(f"Batch {batch}, {threads} thread(s)"), Table(table_rows(report, batch, threads))]
    if report.get("browser"):
        document += [
            Heading("Decoder in the browser (onnxruntime-web, WASM) vs native onnxruntime"),
            Paragraph(
                f"The bundle's web app in headless Chromium {report['browser'][0]['browser']}, timed by the page's clock "
                "around `session.run`; native: the same file in onnxruntime, same batch and threads, right after."
            ),
            Table(browser_rows(report)),
        ]
    if report["notes"] or report["failures"]:
        document += [
            Heading("Notes"),
            Paragraph("\n".join(f"- {line}" for line in report["notes"] + [f"FAILED: {f}" for f in _failures(report)])),
        ]
    document.append(Picture(Path("bench.png"), "p50 latency per subject, whiskers to p90"))
    return document


def write_markdown(report: dict, path) -> Path:
    return write_text(path, to_markdown(blocks(report)))


def save_picture(report: dict, path) -> Path:
    """One panel per (threads, batch): p50 latency bars with whiskers to p90, log scale."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter

    all_cells = cells_of(report)
    batches = sorted({c.batch for c in all_cells})
    threads = sorted({c.threads for c in all_cells})
    keys = list(dict.fromkeys(c.key for c in all_cells))
    figure, axes = plt.subplots(
        len(threads), len(batches), figsize=(5 * len(batches), 0.22 * len(keys) * len(threads) + 1.2), squeeze=False, sharey=True
    )
    for row, t in enumerate(threads):
        for col, b in enumerate(batches):
            axis = axes[row, col]
            cells = {c.key: c for c in all_cells if (c.batch, c.threads) == (b, t)}
            for y, key in enumerate(keys):
                if key in cells:
                    c = cells[key]
                    axis.barh(
                        y,
                        c.p50_ms,
                        xerr=[[0], [c.p90_ms - c.p50_ms]],
                        capsize=2,
                        color=FORMAT_COLORS.get(c.format, "tab:purple"),
                        error_kw={"elinewidth": 0.8},
                    )
            axis.set_xscale("log")
            axis.xaxis.set_minor_formatter(NullFormatter())
            axis.set_title(f"batch {b}, {t} thread(s)", fontsize=9)
            axis.set_xlabel("latency per call, ms (bar p50, whisker p90)", fontsize=8)
            axis.grid(axis="x", which="both", alpha=0.3)
        axes[row, 0].set_yticks(range(len(keys)), keys, fontsize=7)
    axes[0, 0].invert_yaxis()
    figure.tight_layout()
    with atomic_file(path) as partial:
        figure.savefig(partial, dpi=110, format="png")
    plt.close(figure)
    return Path(path)


def write_all(report: dict, folder) -> list[Path]:
    """bench.json, bench.md and bench.png in `folder`, the picture first: without matplotlib (a
    runtime-only install) the picture is left out and said so, and the other two still agree."""
    folder = Path(folder)
    written = []
    try:
        written.append(save_picture(report, folder / "bench.png"))
    except ImportError:
        report["notes"].append("bench.png not drawn: matplotlib is not installed (pip install vae-edge[train])")
    written.insert(0, write_markdown(report, folder / "bench.md"))
    return [*written, write_json(folder / BENCH_JSON, report)]  # last: bench.json marks the stage done
