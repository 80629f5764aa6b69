"""Bad and unusual input through the CLI and the Python API: one line, the documented exit status,
and nothing that existed before changed (issue: the defects found when tried as a new user would)."""

import errno
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from vae_edge.bundle import MANIFEST, Bundle
from vae_edge.cli import main
from vae_edge.errors import BadInputError
from vae_edge.export.metadata import KEY, embed_tflite, metadata_fields, read_metadata
from vae_edge.export.options import ExportOptions
from vae_edge.fsutil import atomic_directory, atomic_file, exclusive_lock
from vae_edge.pipeline import RunConfig, check_resumable
from vae_edge.run_folder import RunFolder
from vae_edge.runtime import EdgeVAE
from vae_edge.train import TrainConfig


def snapshot(*folders: Path) -> dict[str, str]:
    """sha256 of every file under the folders, by path."""
    files = [p for folder in folders for p in sorted(folder.rglob("*")) if p.is_file()]
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def invoke(args: list[str]):
    return CliRunner().invoke(main, [str(a) for a in args])


INTERNAL_NAMES = re.compile(r"\.(lock|partial|tmp)\b")  # files the user never named: errors name their path instead


def litter(folder: Path) -> list[str]:
    """Lock, partial and staging files left anywhere under `folder`."""
    return sorted(str(p) for p in folder.rglob(".*") if INTERNAL_NAMES.search(p.name))


def assert_one_line_error(result, status: int):
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == status, (result.exit_code, result.stderr, result.output)
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    assert "Traceback" not in result.stderr + result.output
    assert not INTERNAL_NAMES.search(result.stderr), result.stderr


@pytest.fixture(scope="module")
def workspace(bundle_dir, trained_run, tmp_path_factory):
    """A private bundle, run folder and a few files that bad commands must leave alone."""
    root = tmp_path_factory.mktemp("bad")
    bundle = Path(shutil.copytree(bundle_dir, root / "bundle"))
    shutil.copytree(trained_run, root / "run")
    good = root / "good.npy"
    np.save(good, np.zeros((2, 28, 28, 1), np.float32))
    (root / "folder.png").mkdir()
    for name, manifest in {
        "list": [],
        "no-artifacts": {k: v for k, v in json.loads((bundle / "manifest.json").read_text()).items() if k != "artifacts"},
        "unknown-field": {**json.loads((bundle / "manifest.json").read_text()), "surprise": 1},
        "rank-2": {**json.loads((bundle / "manifest.json").read_text()),
                   "model": {**json.loads((bundle / "manifest.json").read_text())["model"], "input_shape": [28, 28]}},
    }.items():
        broken = Path(shutil.copytree(bundle, root / f"manifest-{name}"))
        (broken / "manifest.json").write_text(json.dumps(manifest))
    failed = Path(shutil.copytree(bundle, root / "all-failed"))
    manifest = json.loads((failed / "manifest.json").read_text())
    for pipeline in manifest["verification"]["pipelines"].values():
        pipeline["passed"] = False
    (failed / "manifest.json").write_text(json.dumps(manifest))
    digits = np.random.default_rng(0).integers(0, 256, (60, 28, 28), dtype=np.uint8)
    np.savez(root / "labels-0-1-7.npz", x=digits, y=np.repeat([0, 1, 7], 20))
    np.savez(root / "five-names.npz", x=digits, y=np.repeat([0, 1, 2], 20), class_names=np.array(list("abcde")))
    np.savez_compressed(root / "whole.npz", x=digits)
    (root / "cut.npz").write_bytes((root / "whole.npz").read_bytes()[:3000])  # a copy that stopped half way
    (root / "cut.npy").write_bytes(good.read_bytes()[:1000])
    (root / "text.npz").write_text("not an array")
    return root


BAD_COMMANDS = [  # (args with {root} for the workspace, exit status)
    (["sample", "{root}/bundle", "-n", "100000000", "-o", "{root}/big.png"], 2),
    (["sample", "{root}/bundle", "-n", "0", "-o", "{root}/zero.png"], 2),
    (["sample", "{root}/bundle", "-o", "/proc/x/y.png"], 2),
    (["sample", "{root}/bundle", "-o", "/proc/y.png"], 2),  # named the internal .y.png.*.partial
    (["sample", "{root}/bundle", "-o", "{root}/folder.png"], 2),
    (["sample", "{root}/bundle", "-o", "{root}/out.txt"], 2),
    (["sample", "{root}/bundle", "--seed", "4294967296", "-o", "{root}/s.png"], 2),
    (["sample", "{root}/bundle", "--mode", "int4"], 2),
    (["sample", "{root}/bundle", "--backend", "tflite", "--threads", "0"], 2),
    (["interpolate", "{root}/bundle", "{root}/good.npy", "{root}/good.npy", "--steps", "100000000", "-o", "{root}/i.png"], 2),
    (["score", "{root}/bundle", "{root}/missing.png"], 2),
    (["reconstruct", "{root}/bundle", "{root}/good.npy", "-o", "/proc/x/r.npy"], 2),
    (["info", "{root}/nowhere"], 2),
    (["info", "{root}/manifest-list"], 2),
    (["sample", "{root}/manifest-no-artifacts"], 2),
    (["sample", "{root}/manifest-unknown-field"], 2),
    (["sample", "{root}/manifest-rank-2"], 2),
    (["verify", "{root}/manifest-rank-2"], 2),
    (["export", "{root}/run/model.keras", "--out", "{root}/bundle"], 2),
    (["export", "{root}/run/model.keras", "--format", "onnx", "--out", "/proc/x"], 2),  # named the internal .x.lock
    (["export", "{root}/run/model.keras", "--format", "bogus", "--out", "{root}/new"], 2),
    (["export", "{root}/run/model.keras", "--calibration-samples", "5", "--out", "{root}/new"], 2),
    (["export", "{root}/good.npy", "--out", "{root}/new"], 2),
    (["bench", "{root}/bundle", "--only", "nothing/*"], 2),
    (["run", "--variant", "gigantic", "--out", "{root}/run2"], 2),
    (["run", "--bench-only", "tflite/decoder/int4", "--out", "{root}/run2"], 2),
    (["run", "--calibration-samples", "100000", "--max-samples", "400", "--out", "{root}/run2"], 2),
    (["train", "--dataset", "{root}/missing", "--out", "{root}/run2"], 2),
    (["evaluate", "{root}/good.npy"], 2),
    # values out of range are refused before any work, with the range (round two)
    (["export", "{root}/run/model.keras", "--tolerance", "int8.min_psnr_db=nan", "--out", "{root}/new"], 2),
    (["export", "{root}/run/model.keras", "--tolerance", "int8.min_cosine=2", "--out", "{root}/new"], 2),
    (["export", "{root}/run/model.keras", "--tolerance", "float32.max_abs=-1", "--out", "{root}/new"], 2),
    (["export", "{root}/run/model.keras", "--tolerance", "int8.speed=1", "--out", "{root}/new"], 2),
    (["export", "{root}/run/model.keras", "--static-batch", "100000", "--out", "{root}/new"], 2),
    (["export", "{root}/run/model.keras", "--calibration-samples", "16", "--static-batch", "32", "--out", "{root}/new"], 2),
    (["export", "{root}/run/model.keras", "--cpu", "pentium", "--out", "{root}/new"], 2),
    (["run", "--tolerance", "int8.min_cosine=2", "--out", "{root}/run2"], 2),
    (["train", "--image-size", "20000", "--out", "{root}/run2"], 2),
    (["sample", "{root}/bundle", "--temperature", "1e30", "-o", "{root}/hot.png"], 2),
    (["sample", "{root}/bundle", "--temperature", "nan", "-o", "{root}/nan.png"], 2),
    (["verify", "{root}/bundle", "--rejudge", "--tolerance", "float16.max_abs=inf"], 2),
    # a bundle whose every mode failed verification: no default runs it (round two: it ran the failed file)
    (["sample", "{root}/all-failed", "-o", "{root}/failed.png"], 2),
    # conditional data that leaves classes without images (round two: trained or verified without a word)
    (["train", "--conditional", "--dataset", "{root}/labels-0-1-7.npz", "--epochs", "1", "--out", "{root}/run2"], 2),
    (["train", "--conditional", "--dataset", "{root}/five-names.npz", "--epochs", "1", "--out", "{root}/run2"], 2),
    # array files that are cut short or are not arrays: numpy's and zipfile's exceptions were tracebacks or a pickle hint
    (["train", "--dataset", "{root}/cut.npz", "--epochs", "1", "--out", "{root}/run2"], 2),
    (["train", "--dataset", "{root}/text.npz", "--epochs", "1", "--out", "{root}/run2"], 2),
    (["score", "{root}/bundle", "{root}/cut.npy"], 2),
    (["verify", "{root}/bundle", "--outputs", "{root}/cut.npz"], 2),
    (["verify", "{root}/bundle", "--outputs", "{root}/good.npy"], 2),
]


@pytest.mark.parametrize("args, status", BAD_COMMANDS, ids=lambda v: " ".join(v) if isinstance(v, list) else str(v))
def test_bad_command_is_one_line_and_changes_nothing(workspace, args, status):
    before = snapshot(workspace)
    result = invoke([a.format(root=workspace) for a in args])
    assert_one_line_error(result, status)
    assert snapshot(workspace) == before and litter(workspace) == []
    assert not (workspace / "run2").exists() and not (workspace / "new").exists()


def test_an_explicit_mode_that_failed_verification_runs_with_one_warning(workspace, tmp_path):
    """`--mode` still runs what the user asked for, and says in one line that it was not verified here."""
    mode = Bundle(workspace / "all-failed").targets()[-1].mode
    result = invoke(["sample", workspace / "all-failed", "--mode", mode, "-n", "2", "-o", tmp_path / "s.png"])
    assert result.exit_code == 0, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Warning: ") and "was not verified for this CPU" in lines[0]


def test_verify_refuses_another_model_and_leaves_the_bundle_alone(workspace, trained_model, tmp_path):
    retrained = tmp_path / "retrained.keras"
    trained_model.save(retrained)  # same weights, another file: the bundle records its source's sha256
    before = snapshot(workspace / "bundle")
    result = invoke(["verify", workspace / "bundle", "--model", retrained])
    assert_one_line_error(result, 2)
    assert "sha256 differs" in result.stderr
    assert snapshot(workspace / "bundle") == before


def test_missing_extra_names_the_pip_extra(monkeypatch, workspace):
    monkeypatch.setitem(sys.modules, "tf2onnx", None)  # as in a runtime-only install
    monkeypatch.setitem(sys.modules, "keras", None)
    result = invoke(["export", workspace / "run" / "model.keras", "--out", workspace / "new"])
    assert_one_line_error(result, 2)
    assert "pip install 'vae-edge[train]'" in result.stderr


def test_bench_without_matplotlib_writes_consistent_reports(bundle_copy, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    result = invoke(["bench", bundle_copy, "--only", "onnx/decoder/float32", "--batch-size", "1", "--threads", "1",
                     "--runs", "3", "--min-seconds", "0", "--warmup", "1"])
    assert result.exit_code == 0, result.output + result.stderr
    report = json.loads((bundle_copy / "bench.json").read_text())
    assert not (bundle_copy / "bench.png").exists()
    assert any("matplotlib" in note for note in report["notes"])
    assert "matplotlib" in (bundle_copy / "bench.md").read_text()


@pytest.mark.parametrize("out", ["samples.npy", "samples.png"])
def test_a_full_disk_keeps_the_previous_output(bundle_dir, tmp_path, monkeypatch, out):
    target = tmp_path / out
    assert invoke(["sample", bundle_dir, "-n", "4", "-o", target]).exit_code == 0
    before = target.read_bytes()

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(np, "save", disk_full)
    monkeypatch.setattr("PIL.Image.Image.save", disk_full)
    result = invoke(["sample", bundle_dir, "-n", "4", "--seed", "3", "-o", target])
    assert_one_line_error(result, 1)
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == [out]  # no partial file left beside it


def test_a_second_writer_of_the_same_folder_is_refused(tmp_path, workspace):
    out = tmp_path / "bundle"
    with exclusive_lock(out):  # another export holds the folder
        result = invoke(["export", workspace / "run" / "model.keras", "--format", "onnx", "--out", out])
    assert_one_line_error(result, 2)
    assert "another vae-edge process" in result.stderr and not out.exists()


def test_stale_staging_folders_are_swept(tmp_path):
    target = tmp_path / "bundle"
    stale = tmp_path / ".bundle.abc123.tmp"
    stale.mkdir()
    (stale / "half.tflite").write_bytes(b"\0")
    with atomic_directory(target) as staging:
        (staging / "done").write_text("ok")
    assert not stale.exists() and (target / "done").read_text() == "ok"


def test_sigterm_during_export_leaves_no_staging(tmp_path, trained_run):
    out = tmp_path / "bundle"
    process = subprocess.Popen([sys.executable, "-m", "vae_edge.cli.app", "export", str(trained_run / "model.keras"),
                                "--format", "tflite", "--out", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob(".bundle.*.tmp")) and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.2)
    assert list(tmp_path.glob(".bundle.*.tmp")), "the export never started staging"
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=60)
    assert process.returncode != 0
    assert not list(tmp_path.glob(".bundle.*.tmp")) and not out.exists()


def test_resume_checks_only_the_stages_that_finished(tmp_path):
    folder = RunFolder(tmp_path / "run")
    folder.train.mkdir(parents=True)
    folder.model.write_bytes(b"trained")  # train finished; export failed on its settings
    failed = RunConfig(train=TrainConfig(epochs=1), export=ExportOptions(calibration_samples=100000))
    folder.config.write_text(json.dumps(asdict(failed)))
    check_resumable(folder, RunConfig(train=TrainConfig(epochs=1), export=ExportOptions(calibration_samples=64)),
                    restart=False)  # accepted
    with pytest.raises(BadInputError, match="finished train stage"):
        check_resumable(folder, RunConfig(train=TrainConfig(epochs=2)), restart=False)


def test_resume_reads_a_run_folder_written_before_export_settings_were_one_object(tmp_path):
    folder = RunFolder(tmp_path / "run")
    folder.train.mkdir(parents=True)
    folder.model.write_bytes(b"trained")
    folder.bundle.mkdir(parents=True)
    (folder.bundle / "verify.json").write_text(json.dumps({"passed": True}))
    (folder.bundle / MANIFEST).write_text(json.dumps({"artifacts": {}}))
    old = asdict(RunConfig(train=TrainConfig(epochs=1, seed=3)))
    export = old.pop("export")
    old.update({key: export[key] for key in ("formats", "modes", "static_batch", "calibration_samples")})
    folder.config.write_text(json.dumps(old))
    assert folder.done("export")
    check_resumable(folder, RunConfig(train=TrainConfig(epochs=1, seed=3), export=ExportOptions(seed=3)),
                    restart=False)  # accepted: the old layout means the same settings
    with pytest.raises(BadInputError, match="finished export stage"):
        check_resumable(folder, RunConfig(train=TrainConfig(epochs=1, seed=3),
                                          export=ExportOptions(seed=3, static_batch=4)), restart=False)


def test_an_export_cut_short_counts_as_not_done(tmp_path):
    folder = RunFolder(tmp_path / "run")
    folder.bundle.mkdir(parents=True)
    (folder.bundle / "verify.json").write_text('{"passed": tr')
    assert not folder.done("export")


def test_runtime_api_edges_name_the_argument(bundle_dir):
    with pytest.raises(BadInputError, match="num_threads"):
        EdgeVAE.load(bundle_dir, num_threads=0)
    vae = EdgeVAE.load(bundle_dir)
    with pytest.raises(BadInputError, match=r"one image of shape \(28, 28, 1\) without the batch axis"):
        vae.encode(np.zeros((28, 28, 1), np.float32))
    with pytest.raises(BadInputError, match="GiB"):
        vae.sample(10**9)


def test_manifest_checks_name_the_problem(bundle_copy):
    manifest = json.loads((bundle_copy / "manifest.json").read_text())
    manifest["artifacts"][0]["mode"] = "int4"
    (bundle_copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BadInputError, match=r"artifacts\[0\] names an unknown format, mode or graph"):
        Bundle(bundle_copy)


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_unwritable_output_folder(bundle_dir, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    assert_one_line_error(invoke(["sample", bundle_dir, "-o", locked / "s.png"]), 2)


@pytest.mark.parametrize("kwargs, message", [
    ({"dtype": "float8"}, "unsupported dtype 'float8'"),
    ({"bogus": 1}, r"unknown VAE arguments \['bogus'\]"),
    ({"input_shape": (28, 28, 5)}, "5 channels"),
])
def test_model_api_edges_are_one_line_errors(kwargs, message):
    from vae_edge.model import VAE

    with pytest.raises(BadInputError, match=message):
        VAE.from_variant("micro", **kwargs)


def test_model_sample_and_predict_check_their_input():
    from vae_edge.model import VAE

    model = VAE.from_variant("micro", latent_dim=4)
    with pytest.raises(BadInputError, match="num_samples must be a positive integer"):
        model.sample(-1)
    with pytest.raises(BadInputError, match=r"do not fit a model of input shape \(28, 28, 1\)"):
        model.predict(np.zeros((2, 20, 20, 1), np.float32), verbose=0)


# --- without training: crafted model files, folders and installs ------------------------------------------------

def _tiny_onnx(path: Path, metadata: str | None = None, input_name: str = "image") -> Path:
    """A one-node ONNX graph (image -> z_mean), with `metadata` as its raw vae_edge entry."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Relu", [input_name], ["z_mean"])], "tiny",
                              [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, [None, 4])],
                              [helper.make_tensor_value_info("z_mean", TensorProto.FLOAT, [None, 4])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    if metadata is not None:
        prop = model.metadata_props.add()
        prop.key, prop.value = KEY, metadata
    onnx.save(model, str(path))
    return path


def _tflite_pointing_at(data: bytes, buffer: int) -> bytes:
    """The .tflite with its vae_edge metadata entry pointing at buffer `buffer`."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(data, 0)
    next(entry for entry in model.metadata if entry.name.decode() == KEY).buffer = buffer
    builder = flatbuffers.Builder(len(data))
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


GOOD_FIELDS = metadata_fields({"variant": "micro", "input_shape": [2, 2, 1], "latent_dim": 4}, "encoder", "float32",
                              [{"name": "image", "shape": [-1, 4], "dtype": "float32", "quantization": None}],
                              [{"name": "z_mean", "shape": [-1, 4], "dtype": "float32", "quantization": None}])
HOSTILE = "\x1b[2J\x1b[31m\nError: FAKE\r"  # clears the screen, recolours, and fakes a line of output
BROKEN_ONNX_METADATA = {  # file name: raw vae_edge metadata text
    "not-json.onnx": "{not json",
    "a-list.onnx": "[]",
    "empty-object.onnx": "{}",
    "inputs-null.onnx": json.dumps({**GOOD_FIELDS, "inputs": None}),
    "tensor-not-object.onnx": json.dumps({**GOOD_FIELDS, "outputs": [1]}),
    "tensor-without-name.onnx": json.dumps({**GOOD_FIELDS, "outputs": [{"shape": [-1, 4], "dtype": "float32"}]}),
    "shape-text.onnx": json.dumps({**GOOD_FIELDS, "image_shape": "28x28"}),
    "unknown-mode.onnx": json.dumps({**GOOD_FIELDS, "mode": "int4"}),
    "prior-null.onnx": json.dumps({**GOOD_FIELDS, "prior": None}),
    "nested-past-the-parser.onnx": "[" * 100_000 + "]" * 100_000,
}


@pytest.fixture(scope="module")
def crafted(tmp_path_factory):
    """Small model files with broken or hostile embedded metadata, a SavedModel, a fake bundle: no training."""
    import tensorflow as tf

    root = tmp_path_factory.mktemp("crafted")
    for name, text in BROKEN_ONNX_METADATA.items():
        _tiny_onnx(root / name, text)
    hostile = {**GOOD_FIELDS, "signature": f"encode{HOSTILE}", "class_names": [HOSTILE],
               "inputs": [{**GOOD_FIELDS["inputs"][0], "meaning": HOSTILE}]}
    _tiny_onnx(root / "hostile-metadata.onnx", json.dumps(hostile))
    _tiny_onnx(root / "hostile-tensor-name.onnx", json.dumps(GOOD_FIELDS), input_name=f"image{HOSTILE}")
    (root / "garbage.onnx").write_bytes(b"\x08\x07garbage" * 10)
    (root / "empty.tflite").write_bytes(b"")
    (root / f"name{HOSTILE[:9]}.onnx").write_bytes(b"junk")

    class Tiny(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32, name="image")])
        def encode(self, image):
            return {"z_mean": tf.nn.relu(image)}

    tiny = Tiny()
    tf.saved_model.save(tiny, str(root / "savedmodel"), signatures={"encode": tiny.encode})
    converter = tf.lite.TFLiteConverter.from_saved_model(str(root / "savedmodel"), signature_keys=["encode"])
    plain = converter.convert()
    (root / "no-graph.tflite").write_bytes(embed_tflite(plain, {k: v for k, v in GOOD_FIELDS.items() if k != "graph"}))
    (root / "a-list.tflite").write_bytes(embed_tflite(plain, []))
    (root / "hostile.tflite").write_bytes(embed_tflite(plain, hostile))
    (root / "missing-buffer.tflite").write_bytes(_tflite_pointing_at(embed_tflite(plain, GOOD_FIELDS), 10**6))
    (root / "truncated.tflite").write_bytes(embed_tflite(plain, GOOD_FIELDS)[:400])
    (root / "model.keras").write_bytes(b"not a model")  # for the install hints: refused before it is read
    bundle = root / "bundle"
    bundle.mkdir()
    model = {"variant": f"micro{HOSTILE}", "input_shape": [2, 2, 1], "latent_dim": 4, "reconstruction_loss": "bce"}
    (bundle / "manifest.json").write_text(json.dumps({
        "schema_version": 1, "model": model, "anomaly": {"threshold": 1.0}, "tools": {f"vae-edge{HOSTILE}": "1"},
        "artifacts": []}))
    return root


CRAFTED_INFO = [  # info on a crafted file or folder: one line naming the problem, exit 2
    *[(name, "metadata is not valid JSON" if name.startswith(("not-json", "nested")) else "metadata is malformed")
      for name in BROKEN_ONNX_METADATA],
    ("no-graph.tflite", "missing fields ['graph']"),
    ("a-list.tflite", "expected a JSON object"),
    ("missing-buffer.tflite", ""),  # LiteRT refuses it, or the metadata reader does: either way one line
    ("truncated.tflite", "LiteRT cannot load this file"),
    ("empty.tflite", "LiteRT cannot load this file"),
    ("garbage.onnx", "onnxruntime cannot load this file"),
    (f"name{HOSTILE[:9]}.onnx", "name\\x1b[2J\\x1b[31m.onnx"),
    ("model.keras", "expected a .tflite or .onnx or .ort file"),
    ("", "no manifest.json and no saved_model.pb"),  # a folder that is neither
    ("nowhere", "does not exist"),
]


@pytest.mark.parametrize("name, message", CRAFTED_INFO, ids=[name or "folder" for name, _ in CRAFTED_INFO])
def test_info_on_a_crafted_file_is_one_line(crafted, name, message):
    before = snapshot(crafted)
    result = invoke(["info", crafted / name])
    assert_one_line_error(result, 2)
    assert message in result.stderr and "\x1b" not in result.stderr
    assert snapshot(crafted) == before and litter(crafted) == []


def test_read_metadata_refuses_a_metadata_entry_pointing_nowhere(crafted):
    with pytest.raises(BadInputError, match="points at buffer 1000000, which does not exist"):
        read_metadata(crafted / "missing-buffer.tflite")


@pytest.mark.parametrize("name", ["hostile-metadata.onnx", "hostile-tensor-name.onnx", "hostile.tflite", "bundle"])
def test_info_escapes_control_characters_from_files(crafted, name):
    result = invoke(["info", crafted / name])
    assert result.exit_code == 0, result.output + result.stderr
    assert not set("\x1b\r") & set(result.output)
    assert "\\x1b[2J\\x1b[31m\\nError: FAKE\\r" in result.output  # shown, escaped, on the line it belongs to
    assert not any(line.startswith("Error: FAKE") for line in result.output.splitlines())


def test_info_describes_a_savedmodel_folder(crafted):
    result = invoke(["info", crafted / "savedmodel"])
    assert result.exit_code == 0, result.output + result.stderr
    lines = [line.strip() for line in result.output.splitlines()]
    assert "signature: encode" in lines
    assert "input   image: float32[Nx4]" in lines and "output  z_mean: float32[Nx4]" in lines


BLOCKED_FOR_TRAINING = ("keras", "tensorflow", "tf2onnx", "onnx", "sympy", "mlxtend", "matplotlib")  # a runtime-only install


@pytest.mark.parametrize("args, blocked, hint", [
    (["train", "--out", "{root}/new"], BLOCKED_FOR_TRAINING, "pip install 'vae-edge[train,cpu]'"),
    (["train", "--backend", "jax", "--out", "{root}/new"], (*BLOCKED_FOR_TRAINING, "jax"), "pip install 'vae-edge[train,jax]'"),
    (["run", "--out", "{root}/new"], BLOCKED_FOR_TRAINING, "pip install 'vae-edge[train,cpu]'"),
    (["export", "{root}/model.keras", "--out", "{root}/new"], BLOCKED_FOR_TRAINING, "pip install 'vae-edge[train,cpu]'"),
    (["evaluate", "{root}/model.keras"], BLOCKED_FOR_TRAINING, "pip install 'vae-edge[train,cpu]'"),
    (["train", "--out", "{root}/new"], ("tensorflow",), "pip install 'vae-edge[cpu]'"),  # [train] is there: not named
], ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_one_install_hint_names_every_extra_the_command_needs(crafted, monkeypatch, args, blocked, hint):
    for module in blocked:
        monkeypatch.setitem(sys.modules, module, None)
    before = snapshot(crafted)
    result = invoke([a.format(root=crafted) for a in args])
    assert_one_line_error(result, 2)
    assert hint in result.stderr
    assert snapshot(crafted) == before and not (crafted / "new").exists() and litter(crafted) == []


@pytest.mark.parametrize("args", [["train", "--out", "/proc/x"], ["run", "--out", "/proc/x"],
                                  ["train", "--out", "/proc/x/y"]])
def test_errors_name_the_users_path_not_internal_files(args):
    result = invoke(args)
    assert_one_line_error(result, 2)
    assert "/proc/x" in result.stderr and not INTERNAL_NAMES.search(result.stderr), result.stderr
    assert "; check the path" in result.stderr  # what it is, then what to do


def test_write_errors_carry_the_users_path(tmp_path):
    with pytest.raises(FileNotFoundError) as caught, atomic_file(Path("/proc/y.png")):
        pass
    assert caught.value.filename == "/proc/y.png"
    with pytest.raises(OSError) as caught, exclusive_lock(Path("/proc/x")):
        pass
    assert caught.value.filename == "/proc/x"
    (tmp_path / "taken").mkdir()  # a folder where the file goes: the rename fails, the partial file goes
    with pytest.raises(IsADirectoryError) as caught, atomic_file(tmp_path / "taken") as partial:
        partial.write_text("x")
    assert caught.value.filename == str(tmp_path / "taken") and litter(tmp_path) == []
