"""The main job end to end: `vae-edge run` on tiny settings, then every output checked."""

import json
import re

import pytest
from click.testing import CliRunner
from PIL import Image

from vae_edge.bundle import Bundle
from vae_edge.cli import main
from vae_edge.pipeline import STAGES
from vae_edge.registry import RUNTIME_FORMATS, Graph, targets
from vae_edge.run_folder import RunFolder

# Two epochs: after one, micro's posterior had not left the prior (KL 0.07 nats), and the cosine
# check of an int8 z_log_var spread over only +-0.1 was ill-conditioned (0.9886 for a +0.007 % ELBO cost).
TINY_RUN = [
    "--variant", "micro", "--latent-dim", "4", "--max-samples", "160", "--epochs", "2", "--batch-size", "32",
    "--calibration-samples", "16", "--importance-samples", "2",
    "--bench-batch-size", "1", "--bench-threads", "1", "--bench-runs", "2", "--bench-seconds", "0",
    "--bench-only", "tflite/*/float32", "--bench-only", "onnx/decoder/int8",
]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("pipeline") / "run"
    result = CliRunner().invoke(main, ["run", *TINY_RUN, "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "test -ELBO" in result.output
    assert re.search(r"pipelines against Keras on host \(\w+\): PASS; largest ELBO cost", result.output)
    assert "max abs err" not in result.output  # the verification tables go to the report, not the terminal
    return out


def test_every_artifact_and_report_file_exists_and_is_valid(run_dir):
    for name in ("run_config.json", "evaluation.json", "train/history.json", "bundle/manifest.json",
                 "bundle/verify.json", "bundle/bench.json"):
        json.loads((run_dir / name).read_text())
    pngs = list(run_dir.rglob("*.png"))
    assert {p.name for p in pngs} >= {"training_curves.png", "samples.png", "reconstructions.png", "verify.png", "bench.png"}
    for fmt in RUNTIME_FORMATS:
        assert list((run_dir / "samples").glob(f"{fmt}_*.png")), fmt
    for png in pngs:
        with Image.open(png) as picture:
            picture.verify()
    bundle = Bundle(run_dir / "bundle")
    bundle.check_all()  # every artifact matches its manifest sha256
    assert len(bundle.artifacts) == len(targets()) * len(Graph)  # every target, fixed-shape variants included
    report = (run_dir / "report.md").read_text()
    for section in ("model card", "## Training", "## Verification", "## Latency", "## The bundle"):
        assert section in report
    html = (run_dir / "report.html").read_text()
    assert html.count("data:image/png;base64,") == len([line for line in report.splitlines() if line.startswith("![")])


def test_a_finished_run_resumes_without_redoing_stages(run_dir):
    before = (run_dir / "train/model.keras").stat().st_mtime_ns
    result = CliRunner().invoke(main, ["run", *TINY_RUN, "--out", str(run_dir)])
    assert result.exit_code == 0, result.output
    done = [stage for stage in STAGES if RunFolder(run_dir).done(stage)]
    assert len(done) == len(STAGES) - 1  # every stage but the report, which is always rewritten
    assert result.output.count("already done") == len(done)
    assert (run_dir / "train/model.keras").stat().st_mtime_ns == before


def test_resuming_with_other_settings_is_refused(run_dir):
    result = CliRunner().invoke(main, ["run", *TINY_RUN, "--epochs", "3", "--out", str(run_dir)])
    assert result.exit_code == 2 and "--restart" in result.output


def test_a_toml_recipe_with_an_unknown_key_is_refused_before_anything_runs(tmp_path):
    recipe = tmp_path / "recipe.toml"
    recipe.write_text('variant = "micro"\nepochs = 3\nunknown-key = 1\n')
    result = CliRunner().invoke(main, ["run", "--config", str(recipe), "--out", str(tmp_path / "r")])
    assert result.exit_code == 2 and "unknown keys unknown_key" in result.output
    assert not (tmp_path / "r").exists()


TINY_RECIPE = ('variant = "micro"\nlatent-dim = 4\nmax-samples = 160\nbatch-size = 32\ncalibration-samples = 16\n'
               "importance-samples = 2\nbench-batch-size = [1]\n")


@pytest.mark.parametrize("settings, changed", [
    ('epochs = 3\n', ["finished train stage", "train.epochs 2 -> 3"]),
    ('epochs = 2\nformat = ["tflite"]\n', ["finished export stage", "formats ['all'] -> ['tflite']"]),
], ids=["training", "formats"])
def test_a_toml_recipe_sets_the_options(run_dir, tmp_path, settings, changed):
    recipe = tmp_path / "recipe.toml"
    recipe.write_text(TINY_RECIPE + settings)
    result = CliRunner().invoke(main, ["run", "--config", str(recipe), "--out", str(run_dir)])
    assert result.exit_code == 2  # the recipe's values (option spellings too) reached the run
    for text in changed:
        assert text in result.output
