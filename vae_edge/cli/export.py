"""`vae-edge export`, `vae-edge verify` and `vae-edge info`."""

from pathlib import Path

import click

from vae_edge.cli.common import export_target_options, model_option
from vae_edge.cpu import CpuClass
from vae_edge.errors import BadInputError
from vae_edge.quantization import AUTO
from vae_edge.registry import names
from vae_edge.train.backend import require_tensorflow_backend


def parse_tolerances(pairs: tuple[str, ...]) -> dict:
    """`MODE.KEY=VALUE` pairs, e.g. `float16.max_abs=0.02`."""
    tolerances = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        try:
            tolerances[key] = float(value)
        except ValueError:
            sep = ""
        if not sep:
            raise BadInputError(f"--tolerance takes MODE.KEY=NUMBER (e.g. float16.max_abs=0.02), got {pair!r}")
    return tolerances


def _tolerance_option(function):
    return click.option(
        "--tolerance",
        "tolerances",
        multiple=True,
        metavar="MODE.KEY=VALUE",
        help="Override a verification tolerance, e.g. int8.min_psnr_db=35 (repeatable).",
    )(function)


@click.command()
@click.argument("model_path", type=click.Path(path_type=Path))
@export_target_options
@click.option(
    "--onnx-int8-target",
    type=click.Choice([AUTO, *names(CpuClass)]),
    default=AUTO,
    show_default=True,
    help="The CPU class the ONNX int8 files are for (auto: this machine's); a VNNI file saturates on AVX2.",
)
@click.option("--out", type=click.Path(path_type=Path), help="Bundle folder. Default: export/<run name>.")
@click.option(
    "--calibration-samples", type=int, help="Real training images for int8 calibration. Default: 256, or all when fewer."
)
@click.option("--opset", type=click.IntRange(13, 18), help="ONNX opset. Default: the newest tf2onnx writes.")
@click.option("--dataset", help="Calibration and verification data. Default: the model's training data.")
@click.option("--verify/--no-verify", default=True, show_default=True, help="Verify every artifact against the Keras model.")
@_tolerance_option
@click.option("--force", is_flag=True, help="Replace an existing bundle.")
def export(
    model_path,
    formats,
    modes,
    static_batch,
    onnx_int8_target,
    out,
    calibration_samples,
    opset,
    dataset,
    verify,
    tolerances,
    force,
):
    """Export a trained model.keras to a bundle of SavedModel, TFLite, ONNX, ORT graphs and the web app."""
    require_tensorflow_backend("export")
    from vae_edge.cli.common import run_splits
    from vae_edge.export import export_bundle, source_facts
    from vae_edge.model.loading import load_vae

    out = out or Path("export") / model_path.resolve().parent.name
    model = load_vae(model_path)
    splits = run_splits(model_path, dataset)
    click.echo(f"exporting {model_path} -> {out}/")
    bundle = export_bundle(
        model,
        out,
        calibration_images=splits.train,
        heldout_images=splits.test,
        calibration_labels=splits.train_labels,
        heldout_labels=splits.test_labels,
        formats=formats,
        modes=modes or None,
        static_batch=static_batch or None,
        onnx_int8_target=onnx_int8_target,
        calibration_samples=calibration_samples,
        opset=opset,
        verify=verify,
        tolerances=parse_tolerances(tolerances),
        force=force,
        log=click.echo,
        model_facts=source_facts(model_path, splits.name),
    )
    click.echo("\n" + artifact_table(bundle))
    click.echo(f"\nwrote {bundle}/ (manifest.json lists every artifact with its sha256)")


def artifact_table(bundle_dir: Path) -> str:
    """The closing table of an export: artifact, file, size and seconds to export."""
    from vae_edge.bundle import Bundle
    from vae_edge.tables import human_size, text_table

    rows = [["artifact", "file", "size", "export time"]]
    for artifact in Bundle(bundle_dir).artifacts:
        rows.append([artifact.key, artifact.path, human_size(artifact.size_bytes), f"{artifact.export_seconds:.1f} s"])
    return text_table(rows)


@click.command()
@click.argument("bundle_dir", type=click.Path(path_type=Path))
@model_option("The Keras model. Default: the one the bundle was exported from.")
@click.option("--dataset", help="Held-out images. Default: the model's test split.")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the latent inputs and noise.")
@_tolerance_option
@click.pass_context
def verify(ctx, bundle_dir, model_path, dataset, seed, tolerances):
    """Compare every artifact of a bundle with the Keras model; exit 1 if any is out of tolerance."""
    require_tensorflow_backend("verify")
    from vae_edge.bundle import Bundle
    from vae_edge.cli.common import run_splits
    from vae_edge.model.loading import load_vae
    from vae_edge.verify import verify_bundle
    from vae_edge.verify.verifier import check_source

    bundle = Bundle(bundle_dir)
    model_path = model_path or Path(bundle.model.get("source_model", ""))
    if not model_path.name:
        raise BadInputError(f"{bundle_dir}: the manifest does not name its Keras model; pass --model")
    check_source(bundle, model_path)
    model = load_vae(model_path)
    splits = run_splits(model_path, dataset)
    report = verify_bundle(bundle_dir, model, splits.test, labels=splits.test_labels,
                           tolerances=parse_tolerances(tolerances), seed=seed, log=click.echo)
    click.echo(f"\nwrote {bundle_dir}/verify.md, verify.json, verify.png")
    ctx.exit(0 if report.passed else 1)
