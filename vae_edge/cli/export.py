"""`vae-edge export` and `vae-edge verify`."""

from pathlib import Path

import click

from vae_edge.cli.common import (
    EXPORT_DEFAULTS,
    contract_of,
    cpu_option,
    export_target_options,
    model_option,
    model_source_options,
    source_splits,
    tolerance_option,
)
from vae_edge.cpu import CpuClass
from vae_edge.fsutil import exclusive_lock
from vae_edge.quantization import AUTO
from vae_edge.registry import names
from vae_edge.train.backend import require_tensorflow_backend


@click.command()
@click.argument("model_path", required=False, type=click.Path(path_type=Path))
@model_source_options
@export_target_options
@click.option(
    "--onnx-int8-target",
    type=click.Choice([AUTO, *names(CpuClass)]),
    default=EXPORT_DEFAULTS.onnx_int8_target,
    show_default=True,
    help="The CPU class the ONNX int8 files are for (auto: this machine's); a VNNI file saturates on AVX2.",
)
@click.option("--out", type=click.Path(path_type=Path), help="Bundle folder. Default: export/<run or model name>.")
@click.option("--opset", type=click.IntRange(13, 18), help="ONNX opset. Default: the newest tf2onnx writes.")
@click.option("--dataset", help="Calibration and verification images. Default: the data a vae-edge model was trained on; "
              "required for any other model.")
@click.option("--verify/--no-verify", default=EXPORT_DEFAULTS.verify, show_default=True,
              help="Verify every artifact against the Keras model.")
@cpu_option
@click.option("--force", is_flag=True, help="Replace an existing bundle.")
def export(model_path, encoder_path, decoder_path, custom_objects, likelihood, decoder_output, encoder_outputs, formats,
           modes, static_batch, tolerances, onnx_int8_target, out, calibration_samples, opset, dataset, verify, cpus, force):
    """Export a Keras VAE to a bundle of SavedModel, TFLite, ONNX, ORT graphs and the web app.

    MODEL is a model.keras from `vae-edge train`, or any .keras whose model exposes `encoder` and
    `decoder`; or give a VAE's two halves with --encoder and --decoder. Targets that fail verification
    are left out of the bundle (into its rejected/ folder) and the exit status is 1.
    """
    require_tensorflow_backend("export")
    from vae_edge.export import ExportOptions, export_bundle, plan
    from vae_edge.fsutil import check_writable
    from vae_edge.model.source import load_graphs

    options = ExportOptions(formats=tuple(formats), modes=tuple(modes), static_batch=static_batch or None,
                            onnx_int8_target=onnx_int8_target, calibration_samples=calibration_samples, opset=opset,
                            verify=verify, tolerances=tolerances, cpus=cpus)
    plan(options.formats, options.modes, options.static_batch)  # a bad format or mode fails before the model loads
    named = model_path or encoder_path
    out = out or Path("export") / (model_path.resolve().parent.name if model_path else Path(named or "bundle").stem)
    check_writable(out, force)
    graphs = load_graphs(model_path, encoder_path=encoder_path, decoder_path=decoder_path, custom_objects=custom_objects,
                         **contract_of(likelihood, decoder_output, encoder_outputs), log=click.echo)
    splits = source_splits(graphs.source, dataset)
    bundle = export_bundle(graphs, out, calibration_images=splits.train, heldout_images=splits.test,
                           calibration_labels=splits.train_labels, heldout_labels=splits.test_labels, options=options,
                           dataset=splits.name, force=force, log=click.echo)
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
@model_option("The Keras model. Default: the one the bundle was exported from (its manifest names it).")
@model_source_options
@click.option("--dataset", help="Held-out images. Default: the data the bundle was verified on at export.")
@click.option("--seed", default=EXPORT_DEFAULTS.seed, show_default=True, type=int,
              help="Seed of the latent inputs and noise.")
@tolerance_option
@cpu_option
@click.option("--rejudge", is_flag=True,
              help="Judge the outputs saved by the last verification again (under --tolerance); needs no model.")
@click.option("--outputs", "captured", multiple=True, type=click.Path(path_type=Path),
              help="Outputs captured on another CPU (`python -m vae_edge.verify.runner`) to judge with the rest.")
@click.pass_context
def verify(ctx, bundle_dir, model_path, encoder_path, decoder_path, custom_objects, likelihood, decoder_output,
           encoder_outputs, dataset, seed, tolerances, cpus, rejudge, captured):
    """Compare every artifact of a bundle with the Keras model; exit 1 if any is out of tolerance."""
    from vae_edge.bundle import Bundle
    from vae_edge.verify.verifier import judge_captured
    from vae_edge.verify.verifier import rejudge as rejudge_saved

    bundle = Bundle(bundle_dir)
    ctx.with_resource(exclusive_lock(bundle.folder))  # an export or another verify writing it refuses meanwhile
    if captured or rejudge:
        report = (judge_captured(bundle_dir, captured, tolerances, log=click.echo) if captured
                  else rejudge_saved(bundle_dir, tolerances, log=click.echo))
        ctx.exit(0 if report.passed else 1)
    if cpus and not (model_path or encoder_path or decoder_path) and (bundle.folder / "verify" / "inputs.npz").is_file():
        from vae_edge.verify.verifier import run_emulated

        for target in cpus:  # the saved inputs and the Keras outputs are the reference: no model needed
            run_emulated(bundle.folder, target, click.echo)
        report = rejudge_saved(bundle_dir, tolerances, log=click.echo)
        ctx.exit(0 if report.passed else 1)
    require_tensorflow_backend("verify")
    from vae_edge.bundle import ModelSource
    from vae_edge.model.source import load_graphs, reload_graphs
    from vae_edge.verify import verify_bundle

    contract = contract_of(likelihood, decoder_output, encoder_outputs)
    if model_path or encoder_path or decoder_path:
        graphs = load_graphs(model_path, encoder_path=encoder_path, decoder_path=decoder_path,
                             custom_objects=custom_objects, **contract, log=click.echo)
        ModelSource.from_manifest(bundle.model).check_same_files(graphs.source)
    else:
        graphs = reload_graphs(ModelSource.from_manifest(bundle.model), custom_objects, log=click.echo)
    splits = source_splits(graphs.source, dataset or bundle.model.get("dataset"))
    report = verify_bundle(bundle_dir, graphs, splits.test, labels=splits.test_labels, tolerances=tolerances, seed=seed,
                           cpus=cpus, log=click.echo)
    click.echo(f"\nwrote {bundle_dir}/verify.md, verify.json, verify.png")
    ctx.exit(0 if report.passed else 1)
