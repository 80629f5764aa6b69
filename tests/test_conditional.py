"""The conditional VAE end to end: training, evaluation per class, every export with its label input,
verification per class, the same seeded samples on every runtime, and the command line."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from vae_edge.cli import main
from vae_edge.data import DIGITS
from vae_edge.registry import FORMATS, MODES, RUNTIME_FORMATS, Graph, Mode
from vae_edge.signatures import LABEL

VAE_EDGE = str(Path(sys.executable).with_name("vae-edge"))


def test_a_conditional_run_records_its_classes_and_draws_a_row_per_class(conditional_run):
    from PIL import Image

    config = json.loads((conditional_run / "train_config.json").read_text())
    assert config["conditional"] is True
    # 10 rows of 28-pixel digits (plus 1-pixel gaps), enlarged 3x: one row per class
    assert Image.open(conditional_run / "samples.png").height == 3 * (10 * 29 + 1)


def test_evaluation_scores_each_class_and_the_labels_the_samples_obey(conditional_model, digits):
    from vae_edge.train.evaluation import evaluate_splits

    scores = evaluate_splits(conditional_model, digits, samples_per_class=20)
    assert set(scores["per_class"]) == set(DIGITS)
    tested = sum(row["images"] for row in scores["per_class"].values())
    assert tested == len(digits.test)
    mean_of_classes = sum(row["images"] * row["negative_elbo"] for row in scores["per_class"].values()) / tested
    assert mean_of_classes == pytest.approx(scores["negative_elbo"], rel=1e-9)  # the same draws, grouped
    assert scores["classifier_test_accuracy"] > 0.3  # the judge itself is well above chance (0.1)
    assert 0.0 <= scores["label_accuracy"] <= 1.0
    assert all(0.0 <= row["label_accuracy"] <= 1.0 for row in scores["per_class"].values())


def test_every_format_and_mode_takes_the_named_label_and_says_so_in_the_file(conditional_bundle):
    from vae_edge.export.metadata import read_metadata

    folder, _ = conditional_bundle
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["model"]["class_names"] == list(DIGITS) and manifest["model"]["num_classes"] == 10
    exported = {(a["format"], a["mode"]) for a in manifest["artifacts"]}
    assert exported == {(f, m) for f in FORMATS for m in FORMATS[f].modes}
    for artifact in manifest["artifacts"]:
        names = {t["name"] for t in artifact["inputs"]}  # in the file's order: TFLite signatures sort them by name
        assert names == ({"image", LABEL} if artifact["graph"] == Graph.ENCODER else {"z", LABEL}), artifact["path"]
        label = next(t for t in artifact["inputs"] if t["name"] == LABEL)
        assert label["shape"][-1] == 10, artifact["path"]
        if FORMATS[artifact["format"]].metadata:
            embedded = read_metadata(folder / artifact["path"])
            assert embedded["class_names"] == list(DIGITS)
            assert "one-hot" in next(t for t in embedded["inputs"] if t["name"] == LABEL)["meaning"]
        if artifact["mode"] == Mode.INT8_IO:
            assert label["dtype"] == "int8" and label["quantization"], artifact["path"]


def test_verification_judges_every_pipeline_per_class(conditional_bundle):
    _, report = conditional_bundle
    assert set(report.keras["per_class"]) == set(DIGITS)
    for pipeline in report.pipelines:
        assert set(pipeline.elbo_increase_pct_per_class) == set(DIGITS), pipeline.pipeline
        assert pipeline.passed, (pipeline.pipeline, pipeline.reason)  # every mode, integer ones and every class included
        if not MODES[pipeline.mode].integer:
            assert max(abs(v) for v in pipeline.elbo_increase_pct_per_class.values()) < 0.1, pipeline.pipeline


def test_a_seed_and_a_label_give_the_same_images_on_every_runtime_and_in_keras(conditional_bundle, conditional_model):
    from vae_edge.runtime import EdgeVAE

    folder, _ = conditional_bundle
    keras_sevens = conditional_model.sample(6, seed=42, label="7")
    for backend in RUNTIME_FORMATS:
        vae = EdgeVAE.load(folder, backend=backend, mode=Mode.FLOAT32)
        sevens = vae.sample(6, seed=42, label=7)
        np.testing.assert_allclose(sevens, keras_sevens, atol=1e-4, err_msg=backend)
        assert np.abs(vae.sample(6, seed=42, label=1) - sevens).max() > 0.05  # the label changes the image
        np.testing.assert_array_equal(vae.sample(6, seed=42, labels=["7"] * 6), sevens)


def test_runtime_label_mistakes_are_one_line_errors(conditional_bundle, bundle_dir, tmp_path):
    folder, _ = conditional_bundle
    cases = [
        ([str(folder)], "this model is conditional: give a class with --label"),
        ([str(folder), "--label", "11"], "label '11' is not a class of this model; use an index 0..9"),
        ([str(bundle_dir), "--label", "3"], "this model is unconditional (trained without labels); drop the label"),
    ]
    for arguments, message in cases:
        done = subprocess.run([VAE_EDGE, "sample", *arguments, "-o", str(tmp_path / "s.png")], capture_output=True, text=True)
        assert done.returncode == 2, done.stderr
        assert len(done.stderr.strip().splitlines()) == 1 and done.stderr.startswith(f"Error: {message}"), done.stderr
    assert not (tmp_path / "s.png").exists()


def test_sample_reconstruct_and_score_take_the_label_on_the_command_line(conditional_bundle, digits, tmp_path):
    folder, _ = conditional_bundle
    np.save(tmp_path / "two.npy", digits.test[:2])
    runner = CliRunner()
    result = runner.invoke(main, ["sample", str(folder), "--label", "3", "-n", "4", "--seed", "1", "-o", str(tmp_path / "s.npy")])
    assert result.exit_code == 0 and "class 3" in result.output, result.output
    from vae_edge.runtime import EdgeVAE

    vae = EdgeVAE.load(folder)
    np.testing.assert_array_equal(np.load(tmp_path / "s.npy"), vae.sample(4, seed=1, label=3))
    result = runner.invoke(main, ["score", str(folder), str(tmp_path / "two.npy"), "--label", "3"])
    assert result.exit_code == 0, result.output
    scores = [float(line.split()[0]) for line in result.output.splitlines()[1:]]
    np.testing.assert_allclose(scores, vae.anomaly_score(digits.test[:2], label=3), atol=0.006)  # printed to 0.01


def test_the_bundle_readme_and_a_lone_file_are_enough_to_draw_a_class(conditional_bundle, tmp_path):
    import shutil

    from PIL import Image

    from vae_edge.runtime import EdgeVAE

    folder, _ = conditional_bundle
    readme = (folder / "README.md").read_text()
    assert "input `label`" in readme and "classes in index order: 0, 1, 2, 3, 4, 5, 6, 7, 8, 9" in readme
    assert '"label" to label' in readme  # the Kotlin call feeds it by name
    lone = shutil.copyfile(folder / "onnx" / "decoder.float32.b1.onnx", tmp_path / "decoder.onnx")
    example = Path(__file__).resolve().parents[1] / "examples" / "app_from_metadata.py"
    done = subprocess.run([sys.executable, str(example), str(lone), "-n", "4", "--seed", "42", "--label", "7",
                           "-o", str(tmp_path / "grid.png")], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    grid = np.asarray(Image.open(tmp_path / "grid.png"), dtype=np.float32) / 255  # 2x2 tiles of 28x28
    expected = EdgeVAE.load(folder, backend="onnx", mode=Mode.FLOAT32).sample(4, seed=42, label=7)[..., 0]
    tiles = np.stack([grid[r * 28 : (r + 1) * 28, c * 28 : (c + 1) * 28] for r in range(2) for c in range(2)])
    np.testing.assert_allclose(tiles, expected, atol=1 / 255 + 1e-6)


def test_the_run_report_shows_each_class_and_the_label_accuracy(conditional_model, digits, tmp_path):
    from vae_edge.fsutil import write_json
    from vae_edge.run_folder import RunFolder
    from vae_edge.run_report import write_report
    from vae_edge.train.evaluation import evaluate_splits

    folder = RunFolder(tmp_path / "run")
    folder.root.mkdir()
    write_json(folder.config, {"train": {"variant": "micro", "dataset": "mnist-5k", "conditional": True}})
    scores = evaluate_splits(conditional_model, digits, samples_per_class=10)
    write_json(folder.evaluation, scores)
    markdown, _ = write_report(folder.root)
    text = markdown.read_text()
    assert f"Conditional: {100 * scores['label_accuracy']:.1f} % of 10 samples per class" in text
    assert "| class | test images | -ELBO (nats) | label accuracy |" in text
    for name, row in scores["per_class"].items():
        assert f"| {name} | {row['images']} | {row['negative_elbo']:.2f} | {100 * row['label_accuracy']:.0f} % |" in text


def test_a_model_verified_on_data_without_some_of_its_classes_is_refused(conditional_bundle, tmp_path):
    """Round two: a 10-class bundle verified on digits of 3 classes passed, 7 classes never checked."""
    import shutil

    from vae_edge.data import load_labelled

    bundle = Path(shutil.copytree(conditional_bundle[0], tmp_path / "bundle"))
    digits = load_labelled("mnist-5k")
    keep = np.isin(digits.labels, [0, 1, 2])
    np.savez(tmp_path / "three.npz", x=(digits.images[keep] * 255).astype(np.uint8), y=digits.labels[keep],
             class_names=np.array(DIGITS))
    before = (bundle / "verify.json").read_bytes()
    result = CliRunner().invoke(main, ["verify", str(bundle), "--dataset", str(tmp_path / "three.npz")])
    assert result.exit_code == 2 and "no image of 7 of the 10 classes (3, 4, 5, 6, 7, 8, 9)" in result.output, result.output
    assert (bundle / "verify.json").read_bytes() == before
