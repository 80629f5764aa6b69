"""The benchmark report: terminal tables, bench.json, bench.md and bench.png."""

from pathlib import Path

from vae_edge.fsutil import write_json
from vae_edge.tables import human_size, markdown_table, text_table

COLUMNS = ["subject", "size", "load", "first", "mean ± std ms", "p50 ms", "p90 ms", "p99 ms",
           "img/s", "peak RSS", "GFLOP/s", "% peak", "× eager", "× tf.fn"]
FORMAT_COLORS = {"keras": "tab:gray", "savedmodel": "tab:orange", "tflite": "tab:blue", "onnx": "tab:green"}


def _seconds(s: float) -> str:
    return f"{s:.2f} s" if s >= 1 else f"{s * 1e3:.1f} ms"


def _ms(value: float) -> str:
    return f"{value:.3g}" if value < 100 else f"{value:.0f}"


def _ratio(value) -> str:
    return f"{value:.2f}" if value else "-"


def groups(report: dict) -> list[tuple[int, int]]:
    """The (batch, threads) combinations measured, in order."""
    return sorted({(c["batch"], c["threads"]) for c in report["cells"]})


def table_rows(report: dict, batch: int, threads: int) -> list[list[str]]:
    rows = [COLUMNS]
    for c in (c for c in report["cells"] if (c["batch"], c["threads"]) == (batch, threads)):
        rows.append([
            c["key"], human_size(c["size_bytes"]), _seconds(c["load_s"]), _seconds(c["first_s"]),
            f"{_ms(c['mean_ms'])} ± {_ms(c['std_ms'])}", _ms(c["p50_ms"]), _ms(c["p90_ms"]), _ms(c["p99_ms"]),
            f"{c['images_per_s']:.0f}", f"{c['peak_rss_mib']:.0f} MiB",
            f"{c['gflops_per_s']:.2f}" if c["gflops_per_s"] else "-",
            f"{100 * c['fraction_of_measured_peak']:.1f}%" if c["fraction_of_measured_peak"] else "-",
            _ratio(c["speedup_vs_keras_eager"]), _ratio(c["speedup_vs_keras_tf_function"]),
        ])
    return rows


def _failures(report: dict) -> list[str]:
    return [f"{f['key']} at {f['threads']} thread(s): {f['error']}" for f in report["failures"]]


def format_table(report: dict) -> str:
    parts = [f"batch {b}, {t} thread(s)\n{text_table(table_rows(report, b, t))}" for b, t in groups(report)]
    parts += [f"note: {note}" for note in report["notes"]] + [f"FAILED: {line}" for line in _failures(report)]
    return "\n\n".join(parts)


def _machine_lines(report: dict) -> list[str]:
    m = report["machine"]
    versions = ", ".join(f"{k} {v}" for k, v in m["versions"].items())
    peak_rows = [["threads", "measured FP32 GFLOP/s", "theoretical FP32 GFLOP/s"]] + [
        [t, f"{p['measured_gflops']:.1f}" if p["measured_gflops"] else "-", f"{p['theoretical_gflops']:.1f}" if p["theoretical_gflops"] else "-"]
        for t, p in m["fp32_peak"].items()
    ]
    return [
        f"- CPU: {m['cpu']}, {m['usable_cores']} usable of {m['logical_cores']} logical cores, "
        f"{m['cpu_mhz'] or '?'} MHz, {' '.join(m['vector_extensions'])}",
        f"- {m['platform']}, Python {m['python']}; {versions}",
        "", markdown_table(peak_rows), "", f"FP32 ceiling: {m['fp32_peak_method']}.",
    ]


def _flops_lines(report: dict) -> list[str]:
    flops = report["flops"]
    if "e2e" not in flops:
        return [f"FLOPs: {flops['method']}."]
    counts = ", ".join(f"{g} {flops[g]['flops'] / 1e6:.2f} MFLOP" for g in ("encoder", "decoder", "e2e"))
    return [f"FLOPs per image: {counts}. Counted as {flops['method']}."]


def write_markdown(report: dict, path) -> Path:
    s = report["settings"]
    sections = [
        f"# Inference benchmark: {report['model'].get('variant', '')} {tuple(report['model']['input_shape'])}, latent {report['model']['latent_dim']}",
        f"Bundle `{report['bundle']}`, {report['created']}. Keras baseline: `{report['keras_model'] or 'none'}`.",
        "## Machine", "\n".join(_machine_lines(report)),
        "## Method",
        "\n".join([
            f"- Each subject at each thread count runs in a fresh process: load, first inference, {s['warmup']} warm-up runs, "
            f"then timed runs until at least {s['runs']} runs and {s['min_seconds']} s (at most {s['max_seconds']} s).",
            f"- Latency is one call on a whole batch ({s['timer']}); img/s = batch / mean latency. "
            "Percentiles use numpy's linear interpolation; std is the population std.",
            "- `e2e` is the encoder then the decoder of the same format and mode (z_mean passed on); "
            "`keras/*/eager` calls the Keras model with `training=False`, `keras/*/tf.function` one traced function with a dynamic batch.",
            "- Size is the file on disk; a SavedModel's is its whole folder (both signatures), a pipeline's both files.",
            "- × eager and × tf.fn: the Keras subject's p50 divided by this row's p50, same batch and threads, measured in this run.",
            "- Peak RSS is the serving process's high-water mark (VmHWM), interpreter and libraries included; "
            "load time is building the interpreter, session or model from its file (the engine library is imported before the clock starts).",
            f"- {_flops_lines(report)[0]} GFLOP/s = FLOPs per image × img/s; % peak is of the measured FP32 ceiling at that thread count "
            "(for float16, dynamic and int8 modes it is the same operation count against the FP32 ceiling, not that mode's own peak).",
        ]),
    ]
    for batch, threads in groups(report):
        sections += [f"## Batch {batch}, {threads} thread(s)", markdown_table(table_rows(report, batch, threads))]
    if report["notes"] or report["failures"]:
        sections += ["## Notes", "\n".join(f"- {line}" for line in report["notes"] + [f"FAILED: {f}" for f in _failures(report)])]
    sections.append("![p50 latency per subject, whiskers to p90](bench.png)")
    Path(path).write_text("\n\n".join(sections) + "\n")
    return Path(path)


def save_picture(report: dict, path) -> Path:
    """One panel per (threads, batch): p50 latency bars with whiskers to p90, log scale."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter

    batches = sorted({c["batch"] for c in report["cells"]})
    threads = sorted({c["threads"] for c in report["cells"]})
    keys = list(dict.fromkeys(c["key"] for c in report["cells"]))
    figure, axes = plt.subplots(len(threads), len(batches), figsize=(5 * len(batches), 0.22 * len(keys) * len(threads) + 1.2),
                                squeeze=False, sharey=True)
    for row, t in enumerate(threads):
        for col, b in enumerate(batches):
            axis = axes[row, col]
            cells = {c["key"]: c for c in report["cells"] if (c["batch"], c["threads"]) == (b, t)}
            for y, key in enumerate(keys):
                if key in cells:
                    c = cells[key]
                    axis.barh(y, c["p50_ms"], xerr=[[0], [c["p90_ms"] - c["p50_ms"]]], capsize=2,
                              color=FORMAT_COLORS.get(c["format"], "tab:purple"), error_kw={"elinewidth": 0.8})
            axis.set_xscale("log")
            axis.xaxis.set_minor_formatter(NullFormatter())
            axis.set_title(f"batch {b}, {t} thread(s)", fontsize=9)
            axis.set_xlabel("latency per call, ms (bar p50, whisker p90)", fontsize=8)
            axis.grid(axis="x", which="both", alpha=0.3)
        axes[row, 0].set_yticks(range(len(keys)), keys, fontsize=7)
    axes[0, 0].invert_yaxis()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return Path(path)


def write_all(report: dict, folder) -> list[Path]:
    """bench.json, bench.md and bench.png in `folder`."""
    folder = Path(folder)
    written = [write_markdown(report, folder / "bench.md"), save_picture(report, folder / "bench.png")]
    return [*written, write_json(folder / "bench.json", report)]  # last: bench.json marks the stage done
