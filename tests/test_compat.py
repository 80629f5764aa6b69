"""Bundles exported before this version still load, verify and run: their manifest names the source model
as `source_model`/`source_sha256`, has no per-CPU verification and no saved outputs or golden vectors."""

import json
import shutil

import numpy as np
from click.testing import CliRunner

from vae_edge.bundle import Bundle, ModelSource
from vae_edge.cli import main
from vae_edge.registry import SourceKind


def as_before(bundle):
    """The bundle as vae-edge wrote it before it recorded `model.source` and verified per CPU."""
    manifest = json.loads((bundle / "manifest.json").read_text())
    source = manifest["model"].pop("source")
    manifest["model"].update(source_model=source["paths"][0], source_sha256=source["sha256"][0])
    for key in ("origin", "decoder_layout"):
        manifest["model"].pop(key)
    for key in ("cpus", "cpu_class", "emulated"):
        manifest["verification"].pop(key)
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    for folder in ("verify", "golden"):
        shutil.rmtree(bundle / folder)
    return bundle


def test_an_earlier_bundle_loads_runs_verifies_and_is_described(bundle_copy, trained_run, tmp_path):
    from vae_edge.runtime import EdgeVAE

    bundle = as_before(bundle_copy)
    source = ModelSource.from_manifest(Bundle(bundle).model)
    assert source.kind == SourceKind.VAE_EDGE and source.paths == (str(trained_run.resolve() / "model.keras"),)
    vae = EdgeVAE.load(bundle)
    assert np.isfinite(vae.sample(3, seed=0)).all()
    runner = CliRunner()
    done = runner.invoke(main, ["verify", str(bundle)])
    assert done.exit_code == 0, done.output
    assert (bundle / "verify" / "host.npz").is_file() and (bundle / "golden" / "golden.json").is_file()
    assert runner.invoke(main, ["info", str(bundle)]).exit_code == 0
    assert runner.invoke(main, ["sample", str(bundle), "-n", "2", "-o", str(tmp_path / "s.png")]).exit_code == 0
