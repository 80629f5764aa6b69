"""`vae-edge run`: the main job, from data to a verified, benchmarked bundle and a report.

Each stage writes its output atomically into the run folder, and a stage whose output is
already there is skipped, so an interrupted run resumes where it stopped. The settings
are saved in `run_config.json`; resuming with different settings is refused.
"""

import functools
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from vae_edge.bench.machine import usable_cores
from vae_edge.bundle import Bundle
from vae_edge.errors import BadInputError, PartialExport
from vae_edge.export.options import ExportOptions
from vae_edge.fsutil import atomic_directory, exclusive_lock, write_json
from vae_edge.registry import KERAS, KERAS_MODES, PIPELINE, RUNTIME_FORMATS
from vae_edge.run_folder import RunFolder
from vae_edge.run_report import write_report
from vae_edge.runtime import default_backend, default_mode
from vae_edge.train import TrainConfig
from vae_edge.train.backend import AUTO, call_in_backend, training_backend

STAGES = ("train", "evaluate", "export", "bench", "samples", "report")


@dataclass
class RunConfig:
    """A whole recipe; `--config recipe.toml` fills the same fields."""

    train: TrainConfig = field(default_factory=TrainConfig)
    backend: str = AUTO  # the Keras backend that trains and evaluates; auto: a GPU's if one is found
    export: ExportOptions = field(default_factory=ExportOptions)
    importance_samples: int = 16  # k=64 costs the demo 30 s more on 2 cores for a bound 1.8 nats tighter (107.9 vs 109.7)
    bench_batch_sizes: tuple[int, ...] = (1, 64)
    bench_runs: int = 30  # lighter than `vae-edge bench`'s defaults: the demo should take minutes
    bench_min_seconds: float = 0.5
    bench_threads: tuple[int, ...] = ()  # () = 1 and all cores
    bench_only: tuple[str, ...] = ()  # glob patterns over subject keys, e.g. "tflite/*/int8"; () = the demo set
    bench_full: bool = False  # every artifact, as `vae-edge bench` does, instead of the demo set
    sample_count: int = 64


_EXPORT_SETTINGS = ("train", "export")
# Run folders written before the export options were one object kept four of them at the top level.
_FORMER_EXPORT_KEYS = ("formats", "modes", "static_batch", "calibration_samples")
# The settings each stage's output depends on, its upstream stages' included: resuming checks only
# the stages that finished, so a run that failed can be resumed with corrected settings.
STAGE_SETTINGS = {
    "train": ("train", "backend"),
    "evaluate": ("train", "backend", "importance_samples"),
    "export": _EXPORT_SETTINGS,
    "bench": (
        *_EXPORT_SETTINGS,
        "bench_batch_sizes",
        "bench_runs",
        "bench_min_seconds",
        "bench_threads",
        "bench_only",
        "bench_full",
    ),
    "samples": (*_EXPORT_SETTINGS, "sample_count"),
    "report": (),
}


def _flatten(config: dict, prefix: str = "") -> dict:
    """{"train": {"epochs": 8}} as {"train.epochs": 8}, so a message names the one setting that changed."""
    flat = {}
    for key, value in config.items():
        flat.update(_flatten(value, f"{prefix}{key}.") if isinstance(value, dict) else {prefix + key: value})
    return flat


def check_resumable(folder: RunFolder, config: RunConfig, restart: bool) -> None:
    """Refuse to mix outputs of different settings: a finished stage must have been made with the
    settings it would be made with now."""
    if restart or not folder.config.exists():
        return
    wanted = _flatten(json.loads(json.dumps(asdict(config))))
    saved = _flatten(saved_settings(json.loads(folder.config.read_text())))
    for stage in STAGES:
        if not folder.done(stage):
            continue
        keys = [key for key in wanted | saved if key.split(".")[0] in STAGE_SETTINGS[stage]]
        changed = [key for key in keys if saved.get(key) != wanted.get(key)]
        if changed:
            details = ", ".join(f"{key} {saved.get(key)!r} -> {wanted.get(key)!r}" for key in changed)
            raise BadInputError(
                f"{folder.root} holds a finished {stage} stage made with other settings ({details}); "
                "pass --restart to start it over, or choose another --out"
            )


def saved_settings(saved: dict) -> dict:
    """A run folder's settings in today's layout: folders written before `RunConfig.export` kept four export
    settings at the top level, and exported with the defaults of the rest and the training seed."""
    if not isinstance(saved, dict) or "export" in saved:
        return saved
    defaults = asdict(ExportOptions(seed=saved.get("train", {}).get("seed", 0)))
    moved = {key: saved.pop(key) for key in _FORMER_EXPORT_KEYS if key in saved}
    return {**saved, "export": json.loads(json.dumps({**defaults, **moved}))}


def check_settings(config: RunConfig) -> None:
    """Every setting of a run, checked before its first stage: nothing fails after training that could fail now."""
    from vae_edge.bench.harness import check_patterns, planned_keys
    from vae_edge.export import MIN_CALIBRATION_SAMPLES, plan
    from vae_edge.model.presets import get_preset
    from vae_edge.verify.tolerances import resolve

    get_preset(config.train.variant)
    export = config.export
    chosen = plan(export.formats, export.modes, export.static_batch)  # bad formats or modes fail now, not after training
    resolve(config.export.tolerances)
    check_patterns(config.bench_only, planned_keys(chosen), "--bench-only")
    splits = _load_splits(config)
    available = len(splits.train)
    wanted = config.export.calibration_samples
    if wanted is not None and not MIN_CALIBRATION_SAMPLES <= wanted <= available:
        raise BadInputError(
            f"--calibration-samples must be between {MIN_CALIBRATION_SAMPLES} and the {available} training "
            f"images of {splits.name}, got {wanted}"
        )


def run_pipeline(
    config: RunConfig,
    out,
    *,
    skip: tuple[str, ...] = (),
    restart: bool = False,
    log: Callable[[str], None] = print,
) -> RunFolder:
    """Run every stage not skipped and not already done; return the run folder."""
    for stage in skip:
        if stage not in STAGES:
            raise BadInputError(f"unknown stage {stage!r}; stages are {', '.join(STAGES)}")
    check_settings(config)
    folder = RunFolder(out)
    folder.root.parent.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(folder.root):
        check_resumable(folder, config, restart)
        if restart:
            shutil.rmtree(folder.root, ignore_errors=True)
        folder.root.mkdir(parents=True, exist_ok=True)
        write_json(folder.config, asdict(config))
        run_stages(config, folder, skip, log)
    return folder


def run_stages(config: RunConfig, folder: RunFolder, skip: tuple[str, ...], log: Callable[[str], None]) -> None:
    """Each stage in turn; an export that left failing targets out lets the later stages run on the rest of the
    bundle, and its error ends the run (exit status 1), so a resumed run exports again."""
    partial = None
    for index, stage in enumerate(STAGES, start=1):
        if stage in skip:
            log(f"== [{index}/{len(STAGES)}] {stage}: skipped")
            continue
        if folder.done(stage):
            log(f"== [{index}/{len(STAGES)}] {stage}: already done, reusing {folder.root}")
            continue
        log(f"== [{index}/{len(STAGES)}] {stage}")
        started = time.perf_counter()
        try:
            STAGE_FUNCTIONS[stage](config, folder, log)
        except PartialExport as error:
            partial = error
            log(f"   {stage}: {error}")
        log(f"   {stage} took {time.perf_counter() - started:.1f} s")
    if partial is not None:
        raise partial


def _train(config: RunConfig, folder: RunFolder, log) -> None:
    from vae_edge.train import train

    call_in_backend(training_backend(config.backend), functools.partial(train, force=True), config.train, folder.train)


def _load_splits(config: RunConfig):
    from vae_edge.data import load_dataset

    t = config.train
    return load_dataset(t.dataset, seed=t.seed, max_samples=t.max_samples, image_size=t.image_size, channels=t.channels)


def _scores(config: RunConfig, model_path: Path) -> dict:
    from vae_edge.model.loading import load_vae
    from vae_edge.train.evaluation import evaluate_splits

    return evaluate_splits(load_vae(model_path), _load_splits(config), importance_samples=config.importance_samples,
                           seed=config.train.seed)


def _evaluate(config: RunConfig, folder: RunFolder, log) -> None:
    scores = call_in_backend(training_backend(config.backend), _scores, config, folder.model)
    write_json(folder.evaluation, scores)
    log(
        f"   test -ELBO {scores['negative_elbo']:.2f} nats/image, "
        f"IW-NLL (k={config.importance_samples}) {scores.get('iw_nll', float('nan')):.2f}, "
        f"PSNR {scores['psnr_db']:.2f} dB"
        + (f", label accuracy {100 * scores['label_accuracy']:.1f} %" if "label_accuracy" in scores else "")
    )


def _export(config: RunConfig, folder: RunFolder, log) -> None:
    from vae_edge.export import export_bundle
    from vae_edge.model.source import load_graphs

    splits = _load_splits(config)
    export_bundle(
        load_graphs(folder.model),
        folder.bundle,
        calibration_images=splits.train,
        heldout_images=splits.test,
        calibration_labels=splits.train_labels,
        heldout_labels=splits.test_labels,
        options=config.export,
        dataset=splits.name,
        force=True,
        log=log,
        verify_table=False,  # the report and bundle/verify.md have the tables; the terminal gets the verdict
    )


def _bench(config: RunConfig, folder: RunFolder, log) -> None:
    from vae_edge.bench.harness import BenchSettings, run_bench
    from vae_edge.bench.report import write_all

    only = config.bench_only or (() if config.bench_full else demo_subjects(folder.bundle))
    threads = config.bench_threads or (() if config.bench_full or config.bench_only else (usable_cores(),))
    settings = BenchSettings(
        batch_sizes=config.bench_batch_sizes,
        runs=config.bench_runs,
        min_seconds=config.bench_min_seconds,
        only=only,
        engine_ceilings=config.bench_full,  # the demo's bench is about a minute: the ceilings are analysis
        **({"threads": threads} if threads else {}),
    )
    write_all(run_bench(folder.bundle, settings, folder.model, log=log), folder.bundle)


def demo_subjects(bundle_dir: Path) -> tuple[str, ...]:
    """What a user decides with, in about a minute: the runtime's default backend and mode, its
    dynamic and fixed-shape files, end to end and per graph, against Keras' traced function end to
    end (each Keras graph costs a worker that imports TensorFlow: 15 s of the demo per graph)."""
    bundle = Bundle(bundle_dir)
    backend = default_backend(bundle)
    mode = default_mode(bundle, backend)
    return (f"{backend}/*/{mode}", f"{backend}/*/{mode}@b*", f"{KERAS}/{PIPELINE}/{KERAS_MODES[-1]}")


def _samples(config: RunConfig, folder: RunFolder, log) -> None:
    from vae_edge.image_grid import save_image_grid
    from vae_edge.runtime import EdgeVAE

    with atomic_directory(folder.samples, force=True) as staging:
        for backend in RUNTIME_FORMATS:
            try:
                vae = EdgeVAE.load(folder.bundle, backend=backend)
            except BadInputError as error:  # that backend was not exported
                log(f"   no {backend} samples: {error}")
                continue
            path = staging / f"{backend}_{vae.mode}.png"
            if vae.class_names:  # a row of 8 per class
                rows = np.repeat(np.arange(len(vae.class_names)), 8)
                save_image_grid(vae.sample(len(rows), seed=config.train.seed, labels=rows), path, columns=8,
                                row_labels=list(vae.class_names))
            else:
                save_image_grid(vae.sample(config.sample_count, seed=config.train.seed), path, columns=8)
            log(f"   {path.name}: {config.sample_count} samples through the runtime ({backend} {vae.mode})")


def _report(config: RunConfig, folder: RunFolder, log) -> None:
    markdown, html = write_report(folder.root)
    log(f"   wrote {markdown} and {html}")


STAGE_FUNCTIONS = {
    "train": _train,
    "evaluate": _evaluate,
    "export": _export,
    "bench": _bench,
    "samples": _samples,
    "report": _report,
}
