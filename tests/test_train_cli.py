import json

from click.testing import CliRunner
from PIL import Image

from vae_edge.cli import main


def test_help_lists_the_commands():
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    for command in ("train", "evaluate"):
        assert command in result.output


def test_training_writes_the_run_folder(trained_run):
    names = {p.name for p in trained_run.iterdir()}
    assert {
        "model.keras",
        "history.json",
        "train_config.json",
        "training_curves.png",
        "samples.png",
        "reconstructions.png",
    } <= names
    history = json.loads((trained_run / "history.json").read_text())
    assert len(history["history"]["loss"]) == 2
    for key in ("loss", "reconstruction_loss", "kl_loss", "kl_weight", "val_loss"):
        assert key in history["history"]
    assert (history["backend"], history["devices"], history["per_device_batch"]) == ("tensorflow", 1, 32)
    config = json.loads((trained_run / "train_config.json").read_text())
    assert config["epochs"] == 2 and config["backend"] == "tensorflow" and config["lr_schedule"] == "cosine"
    with Image.open(trained_run / "samples.png") as picture:
        assert picture.size[0] > 28 * 8


def test_evaluate_reports_elbo_terms_as_text_and_json(trained_run, tmp_path):
    out = tmp_path / "eval.json"
    result = CliRunner().invoke(main, ["evaluate", str(trained_run / "model.keras"), "-k", "4", "--json-out", str(out)])
    assert result.exit_code == 0, result.output
    scores = json.loads(out.read_text())
    assert "negative_elbo" in result.output and "iw_nll" in result.output
    assert abs(scores["negative_elbo"] - scores["reconstruction_loss"] - scores["kl_loss"]) < 1e-6
    assert scores["iw_nll"] <= scores["negative_elbo"] + 1.0  # the k-sample bound is tighter, up to noise
    assert 0 <= scores["active_units"] <= 8 and scores["psnr_db"] > 5


def test_existing_run_is_not_overwritten_without_force(trained_run):
    before = (trained_run / "model.keras").stat().st_mtime_ns
    result = CliRunner().invoke(
        main, ["train", "--out", str(trained_run), "--variant", "micro", "--max-samples", "30", "--epochs", "1"]
    )
    assert result.exit_code == 2
    assert "--force" in result.output
    assert (trained_run / "model.keras").stat().st_mtime_ns == before


def test_bad_dataset_is_one_line_error_and_nothing_written(tmp_path):
    result = CliRunner().invoke(main, ["train", "--dataset", str(tmp_path / "missing"), "--out", str(tmp_path / "run")])
    assert result.exit_code == 2
    assert "neither a known name" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "run").exists()


def test_evaluate_rejects_a_file_that_is_not_a_keras_model(tmp_path):
    bogus = tmp_path / "model.keras"
    bogus.write_text("hello")
    result = CliRunner().invoke(main, ["evaluate", str(bogus)])
    assert result.exit_code == 2 and "not a .keras model file" in result.output


def test_evaluate_on_images_of_another_shape_is_a_clear_error(trained_run, tmp_path):
    import numpy as np

    np.save(tmp_path / "small.npy", np.zeros((30, 16, 16), np.uint8))
    result = CliRunner().invoke(main, ["evaluate", str(trained_run / "model.keras"), "--dataset", str(tmp_path / "small.npy")])
    assert result.exit_code == 2 and "do not fit a model of input shape (28, 28, 1)" in result.output


def test_evaluate_warns_when_its_split_is_not_the_training_split(trained_run):
    result = CliRunner().invoke(main, ["evaluate", str(trained_run / "model.keras"), "-k", "0", "--seed", "5"])
    assert result.exit_code == 0
    assert "--seed differ from training" in result.output
    same = CliRunner().invoke(main, ["evaluate", str(trained_run / "model.keras"), "-k", "0", "--seed", "0"])
    assert "Warning" not in same.output
