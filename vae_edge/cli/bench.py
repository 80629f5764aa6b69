"""`vae-edge bench`."""

from pathlib import Path

import click

from vae_edge.cli.common import custom_objects_option, model_option
from vae_edge.train.backend import require_tensorflow_backend


@click.command()
@click.argument("bundle_dir", type=click.Path(path_type=Path))
@model_option("The Keras model for the baselines. Default: the one the bundle was exported from.")
@click.option(
    "--batch-size",
    "batch_sizes",
    multiple=True,
    type=click.IntRange(min=1),
    default=[1, 64],
    show_default=True,
    help="Batch size (repeatable).",
)
@click.option(
    "--threads",
    "threads",
    multiple=True,
    type=click.IntRange(min=1),
    help="Thread count (repeatable). Default: 1 and all usable cores.",
)
@click.option(
    "--warmup", default=10, show_default=True, type=click.IntRange(min=0), help="Untimed runs after the first inference."
)
@click.option("--runs", default=50, show_default=True, type=click.IntRange(min=1), help="Timed runs, at least.")
@click.option("--min-seconds", default=1.0, show_default=True, type=click.FloatRange(min=0), help="Timed seconds, at least.")
@click.option(
    "--max-seconds",
    default=30.0,
    show_default=True,
    type=click.FloatRange(min=0),
    help="Stop a cell's timed runs after this long even if --runs is not reached.",
)
@click.option(
    "--only",
    multiple=True,
    metavar="GLOB",
    help="Benchmark only subjects matching a format/graph/mode glob, e.g. 'tflite/*/int8', "
    "'keras/decoder/*', '*/e2e/*' (repeatable).",
)
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the random inputs.")
@custom_objects_option("the Keras baseline's own layer classes")
def bench(bundle_dir, model_path, batch_sizes, threads, warmup, runs, min_seconds, max_seconds, only, seed, custom_objects):
    """Latency, throughput, memory and FLOP/s of every artifact of a bundle against the Keras model.

    Writes bench.json, bench.md and bench.png into the bundle; exits 1 if a subject failed.
    """
    require_tensorflow_backend("bench")  # its Keras baselines
    from vae_edge.bench.harness import BenchSettings, run_bench
    from vae_edge.bench.report import format_table, write_all

    settings = BenchSettings(
        batch_sizes=tuple(sorted(set(batch_sizes))),
        warmup=warmup,
        runs=runs,
        min_seconds=min_seconds,
        max_seconds=max_seconds,
        seed=seed,
        only=only,
    )
    if threads:
        settings.threads = tuple(sorted(set(threads)))
    report = run_bench(bundle_dir, settings, model_path, log=click.echo, custom_objects=custom_objects)
    click.echo("\n" + format_table(report))
    written = write_all(report, bundle_dir)
    click.echo(f"\nwrote {', '.join(str(p) for p in written)}")
    if report["failures"]:
        raise click.exceptions.Exit(1)
