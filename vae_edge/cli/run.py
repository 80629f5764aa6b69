"""`vae-edge run`: the main job in one command, optionally from a TOML recipe."""

import json
import tomllib
from pathlib import Path

import click

from vae_edge.bundle import Cell, cells_of
from vae_edge.cli.common import export_target_options
from vae_edge.export.options import ExportOptions
from vae_edge.pipeline import STAGES, RunConfig, run_pipeline
from vae_edge.registry import PIPELINE, Precision, names
from vae_edge.train import ACCELERATOR_BUDGET, CPU_BUDGET, TrainConfig
from vae_edge.train.backend import AUTO, Backend, requested_backend, require_tensorflow_backend


def load_recipe(ctx, param, path):
    """Read a TOML recipe whose keys are this command's option names (dashes or underscores)."""
    if path is None:
        return None
    try:
        recipe = tomllib.loads(Path(path).read_text())
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise click.BadParameter(f"{path}: {error}") from None
    names = {}  # option spelling (format, bench_batch_size) -> parameter name (formats, bench_batch_sizes)
    for param in ctx.command.params:
        for spelling in (param.name, *(opt.lstrip("-").replace("-", "_") for opt in param.opts)):
            names[spelling] = param.name
    recipe = {key.replace("-", "_"): value for key, value in recipe.items()}
    unknown = sorted(set(recipe) - set(names))
    if unknown:
        raise click.BadParameter(f"{path}: unknown keys {', '.join(unknown)}; use the option names of `vae-edge run --help`")
    ctx.default_map = {**(ctx.default_map or {}), **{names[key]: value for key, value in recipe.items()}}
    return path


TRAIN_DEFAULTS = TrainConfig()
RUN_DEFAULTS = RunConfig()


@click.command()
@click.option(
    "--config",
    type=click.Path(exists=True, dir_okay=False),
    callback=load_recipe,
    is_eager=True,
    expose_value=False,
    help='TOML recipe with any of these options, e.g. `variant = "medium"`.',
)
@click.option("--variant", default=TRAIN_DEFAULTS.variant, show_default=True)
@click.option("--dataset", default=TRAIN_DEFAULTS.dataset, show_default=True)
@click.option(
    "--backend",
    type=click.Choice(names([AUTO], Backend)),
    default=RUN_DEFAULTS.backend,
    show_default=True,
    help="Keras backend that trains and evaluates (export always uses TensorFlow). auto: JAX, PyTorch or TensorFlow, "
    "the first that finds a GPU or TPU, else TensorFlow.",
)
@click.option(
    "--epochs",
    type=click.IntRange(min=1),
    help=f"Default: {CPU_BUDGET.epochs} on a CPU, {ACCELERATOR_BUDGET.epochs} with a GPU/TPU, each at its own peak "
    "learning rate (see `vae-edge train --help`).",
)
@click.option("--batch-size", default=TRAIN_DEFAULTS.batch_size, show_default=True, type=click.IntRange(min=1))
@click.option("--latent-dim", type=click.IntRange(min=1), help="Default: the variant's.")
@click.option("--precision", type=click.Choice(names(Precision)), default=str(TRAIN_DEFAULTS.precision), show_default=True)
@click.option("--max-samples", type=click.IntRange(min=3))
@click.option("--seed", default=TRAIN_DEFAULTS.seed, show_default=True, type=int)
@click.option("--conditional", is_flag=True, help="Condition on the data set's class labels (see `vae-edge train`).")
@export_target_options
@click.option("--importance-samples", default=RUN_DEFAULTS.importance_samples, show_default=True,
              type=click.IntRange(min=0), help="Samples per image for the importance-weighted NLL (0 to skip).")
@click.option(
    "--bench-batch-size", "bench_batch_sizes", multiple=True, type=click.IntRange(min=1),
    default=list(RUN_DEFAULTS.bench_batch_sizes), show_default=True,
)
@click.option("--bench-runs", default=RUN_DEFAULTS.bench_runs, show_default=True, type=click.IntRange(min=1))
@click.option("--bench-seconds", default=RUN_DEFAULTS.bench_min_seconds, show_default=True, type=click.FloatRange(min=0))
@click.option("--bench-threads", multiple=True, type=click.IntRange(min=1), help="Thread counts (default: 1 and all cores).")
@click.option(
    "--bench-only",
    multiple=True,
    help="Benchmark only subjects matching these globs, e.g. 'tflite/*/int8'. Default: the runtime's default mode "
    "(dynamic and fixed shape) against Keras.",
)
@click.option("--bench-full", is_flag=True, help="Benchmark every artifact at 1 and all threads, as `vae-edge bench` does.")
@click.option("--skip", multiple=True, type=click.Choice(STAGES), help="Skip a stage (repeatable).")
@click.option("--restart", is_flag=True, help="Discard an existing run in --out and start over.")
@click.option("--out", type=click.Path(path_type=Path), default=Path("runs/demo"), show_default=True)
def run(
    variant,
    dataset,
    backend,
    epochs,
    batch_size,
    latent_dim,
    precision,
    max_samples,
    seed,
    conditional,
    formats,
    modes,
    static_batch,
    tolerances,
    calibration_samples,
    importance_samples,
    bench_batch_sizes,
    bench_runs,
    bench_seconds,
    bench_threads,
    bench_only,
    bench_full,
    skip,
    restart,
    out,
):
    """Train, export every format, verify, benchmark, sample through the runtime, and report.

    Stages whose output already exists in --out are reused, so an interrupted run resumes.
    """
    if {"export", "bench"} <= set(skip):  # only they need TensorFlow here; training may run elsewhere
        requested_backend()  # still a one-line error for a bad KERAS_BACKEND, before anything imports Keras
    else:
        require_tensorflow_backend("run")
    config = RunConfig(
        train=TrainConfig(
            variant=variant,
            dataset=dataset,
            epochs=epochs,
            batch_size=batch_size,
            latent_dim=latent_dim,
            precision=precision,
            max_samples=max_samples,
            seed=seed,
            conditional=conditional,
        ),
        backend=backend,
        export=ExportOptions(formats=tuple(formats), modes=tuple(modes), static_batch=static_batch or None,
                             calibration_samples=calibration_samples, seed=seed, tolerances=tolerances),
        importance_samples=importance_samples,
        bench_batch_sizes=tuple(bench_batch_sizes),
        bench_runs=bench_runs,
        bench_min_seconds=bench_seconds,
        bench_threads=tuple(bench_threads),
        bench_only=tuple(bench_only),
        bench_full=bench_full,
    )
    folder = run_pipeline(config, out, skip=tuple(skip), restart=restart, log=click.echo)
    click.echo(summary(folder))


def summary(folder) -> str:
    """The closing lines: quality, the verdict per format, the best latency per format, where the
    report is. The full tables are in the report."""
    lines = ["", f"== done: {folder.root}/"]
    if folder.evaluation.is_file():
        scores = json.loads(folder.evaluation.read_text())
        lines.append(
            f"quality:  test -ELBO {scores['negative_elbo']:.2f} nats/image, reconstruction PSNR {scores['psnr_db']:.2f} dB"
            + (f", label accuracy {100 * scores['label_accuracy']:.1f} %" if "label_accuracy" in scores else "")
        )
    verify = folder.bundle / "verify.json"
    if verify.is_file():
        verdicts: dict[str, list[bool]] = {}
        for pipeline in json.loads(verify.read_text())["pipelines"]:
            verdicts.setdefault(pipeline["format"], []).append(pipeline["passed"])
        lines.append("verified: " + ", ".join(f"{fmt} {sum(v)}/{len(v)} PASS" for fmt, v in verdicts.items()))
    if folder.bench.is_file():
        best: dict[tuple[str, int], Cell] = {}
        for cell in cells_of(json.loads(folder.bench.read_text())):
            key = (cell.format, cell.batch)
            if cell.graph == PIPELINE and (key not in best or cell.p50_ms < best[key].p50_ms):
                best[key] = cell
        for (fmt, batch), cell in sorted(best.items()):
            shape = " fixed shape" if "@" in cell.key else ""
            lines.append(f"latency:  {fmt:<10} batch {batch:<3} best {cell.p50_ms:.3f} ms end to end "
                         f"({cell.mode}{shape}, {cell.threads} thread(s))")
    lines += [
        f"report:   {folder.report} and {folder.report.with_suffix('.html')}",
        f"bundle:   {folder.bundle}/",
        f"model:    {folder.model}",
    ]
    return "\n".join(lines)
