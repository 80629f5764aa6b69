"""`vae-edge bench`: statistics, FLOPs counting, planning, and a tiny end-to-end run."""

import json
from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest

from vae_edge.bench.flops import count_flops
from vae_edge.bench.harness import baseline_source, derive, plan_subjects, planned_keys
from vae_edge.bench.stats import summarize
from vae_edge.bench.worker import timed_runs
from vae_edge.bundle import Bundle, Cell, ModelSource
from vae_edge.errors import BadInputError
from vae_edge.registry import DEFAULT_STATIC_BATCH, KERAS, KERAS_MODES, PIPELINE, Format, Graph, Mode, SourceKind, Target


def test_summarize_exact_on_a_synthetic_series(rng):
    latencies_s = rng.permutation(np.arange(1, 101)) / 1e3  # 1..100 ms, shuffled
    stats = summarize(latencies_s, batch_size=4)
    assert stats["runs"] == 100
    assert stats["mean_ms"] == pytest.approx(50.5)
    assert stats["std_ms"] == pytest.approx(np.sqrt((100**2 - 1) / 12))  # population std of 1..n
    assert stats["p50_ms"] == pytest.approx(50.5)
    assert stats["p90_ms"] == pytest.approx(90.1)
    assert stats["p99_ms"] == pytest.approx(99.01)
    assert (stats["min_ms"], stats["max_ms"]) == pytest.approx((1.0, 100.0))
    assert stats["images_per_s"] == pytest.approx(4 / 0.0505)


def test_summarize_refuses_an_empty_series():
    with pytest.raises(ValueError):
        summarize([], batch_size=1)


def test_timed_runs_counts_warmup_runs_and_the_time_cap():
    calls = []
    latencies = timed_runs(lambda: calls.append(1), warmup=2, runs=5, min_seconds=0, max_seconds=60)
    assert (len(latencies), len(calls)) == (5, 7)
    assert len(timed_runs(lambda: None, warmup=0, runs=1000, min_seconds=0, max_seconds=0)) == 1


def _tiny_onnx(path):
    """x[N,2,8,8] -> grouped Conv(4 filters 3x3, group 2, pad 1) -> Flatten -> Gemm(256x10) -> MatMul(10x3)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weights = {
        "w": np.ones((4, 1, 3, 3), np.float32),
        "g": np.ones((256, 10), np.float32),
        "m": np.ones((10, 3), np.float32),
    }
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], group=2, pads=[1, 1, 1, 1]),
        helper.make_node("Flatten", ["c"], ["f"]),
        helper.make_node("Gemm", ["f", "g"], ["h"]),
        helper.make_node("MatMul", ["h", "m"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes, "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])],
        [numpy_helper.from_array(v, k) for k, v in weights.items()],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def test_count_flops_matches_the_formulas_on_a_tiny_graph(tmp_path):
    counts = count_flops(_tiny_onnx(tmp_path / "tiny.onnx"))
    conv = 2 * (2 // 2) * 3 * 3 * 4 * 8 * 8  # 2 * Cin/group * kh * kw * Cout * Hout * Wout
    assert counts["by_op"] == {"Conv": conv, "Gemm": 2 * 1 * 256 * 10, "MatMul": 2 * 1 * 10 * 3}
    assert counts["flops"] == conv + 5120 + 60
    assert counts["uncounted_ops"] == {"Flatten": 1}


def test_count_flops_of_the_bundle_graphs(bundle_dir):
    bundle = Bundle(bundle_dir)
    for graph in Graph:
        counts = count_flops(bundle.path_of(bundle.find(Target(Format.ONNX, Mode.FLOAT32), graph)))
        assert counts["flops"] > 0 and counts["by_op"]["Conv"] > counts["flops"] / 2
        fixed = count_flops(bundle.path_of(bundle.find(Target(Format.ONNX, Mode.FLOAT32, DEFAULT_STATIC_BATCH), graph)))
        assert fixed["flops"] == counts["flops"]  # per image, whatever the file's batch (its MatMul may be a Gemm)


def test_plan_subjects_covers_artifacts_pipelines_and_keras(bundle_dir):
    bundle = Bundle(bundle_dir)
    stand_in = next(bundle_dir.rglob("*.tflite"))  # any existing file stands in for the model
    keys = [s["key"] for s in plan_subjects(bundle, ModelSource(SourceKind.VAE_EDGE, (str(stand_in),)))]
    pipelines = {t.artifact_key(PIPELINE) for t in bundle.targets()}
    keras = {f"{KERAS}/{graph}/{mode}" for graph in (*Graph, PIPELINE) for mode in KERAS_MODES}
    assert len(keys) == len(set(keys)) and set(keys) == {a.key for a in bundle.artifacts} | pipelines | keras
    assert sorted(keys) == sorted(planned_keys(bundle.targets()))  # what `run` plans before the bundle exists
    assert keys[0].startswith(f"{KERAS}/")
    int8 = Target(Format.TFLITE, Mode.INT8)
    only = plan_subjects(bundle, None, (f"{int8.format}/*/{int8.mode}",))
    assert [s["key"] for s in only] == [int8.artifact_key(graph) for graph in (*Graph, PIPELINE)]
    fixed = Target(Format.TFLITE, Mode.INT8, DEFAULT_STATIC_BATCH)
    only = plan_subjects(bundle, None, (f"{fixed.format}/*/{fixed.mode}@*",))
    assert [(s["key"], s["static_batch"]) for s in only] == [(fixed.artifact_key(g), fixed.batch) for g in (*Graph, PIPELINE)]
    with pytest.raises(BadInputError, match="'keras/\\*' matches nothing"):
        plan_subjects(bundle, None, (f"{int8.format}/*/{int8.mode}", f"{KERAS}/*"))  # no Keras model: no Keras subjects


def test_derive_speedups_and_flop_rates():
    def cell(key: str, p50_ms: float, threads: int = 1) -> Cell:
        fmt, graph, mode = key.split("/")
        timing = dict(runs=10, mean_ms=p50_ms, std_ms=0.0, p50_ms=p50_ms, p90_ms=p50_ms, p99_ms=p50_ms, min_ms=p50_ms,
                      max_ms=p50_ms, load_s=0.1, first_s=0.01, rss_before_load_mib=50.0, peak_rss_mib=60.0)
        return Cell(key=key, format=fmt, graph=graph, mode=mode, size_bytes=1, batch=1, threads=threads,
                    images_per_s=100.0, **timing)

    cells = [cell("keras/decoder/eager", 10.0), cell("keras/decoder/tf.function", 4.0), cell("tflite/decoder/int8", 2.0),
             cell("onnx/decoder/float32", 1.0, threads=2)]
    ceilings = {"1": {str(Mode.INT8): {"litert": 20.0}, str(Mode.FLOAT32): {"litert": 1.0}}}  # an int8 cell: int8 kernels
    derive(cells, {Graph.DECODER: {"flops": 5e7}}, {"1": {"measured_gflops": 10.0, "theoretical_gflops": None}}, ceilings)
    tflite, onnx = cells[2], cells[3]
    assert (tflite.speedup_vs_keras_eager, tflite.speedup_vs_keras_tf_function) == (5.0, 2.0)
    assert tflite.gflops_per_s == pytest.approx(5.0)
    assert tflite.fraction_of_measured_peak == pytest.approx(0.5)
    assert tflite.fraction_of_own_ceiling == pytest.approx(0.25)
    assert tflite.fraction_of_theoretical_peak is None
    assert onnx.speedup_vs_keras_eager is None and onnx.fraction_of_measured_peak is None
    assert onnx.fraction_of_own_ceiling is None  # no ceiling measured at 2 threads


def test_cli_benchmarks_a_bundle_and_writes_the_report(bundle_copy):
    from click.testing import CliRunner

    from vae_edge.cli.bench import bench

    subjects = [Target(Format.TFLITE, Mode.INT8).artifact_key(Graph.DECODER),
                Target(Format.TFLITE, Mode.INT8, DEFAULT_STATIC_BATCH).artifact_key(Graph.DECODER),  # batch 2 in chunks
                Target(Format.ONNX, Mode.FLOAT32).artifact_key(PIPELINE)]
    keras = [f"{KERAS}/{Graph.DECODER}/{mode}" for mode in KERAS_MODES]
    args = [str(bundle_copy), "--runs", "3", "--warmup", "1", "--min-seconds", "0", "--batch-size", "1",
            "--batch-size", "2", "--threads", "1", *(f"--only={key}" for key in subjects), f"--only={KERAS}/{Graph.DECODER}/*"]
    result = CliRunner().invoke(bench, args)
    assert result.exit_code == 0, result.output
    assert subjects[0] in result.output and "× eager" in result.output
    report = json.loads((bundle_copy / "bench.json").read_text())
    assert {"machine", "settings", "flops", "cells", "failures", "notes"} <= set(report)
    assert report["failures"] == [] and report["flops"][PIPELINE]["flops"] > 0
    assert {"cpu", "usable_cores", "versions", "fp32_peak"} <= set(report["machine"])
    assert {(c["key"], c["batch"]) for c in report["cells"]} == {(key, batch) for key in subjects + keras for batch in (1, 2)}
    fields = {"load_s", "first_s", "runs", "mean_ms", "std_ms", "p50_ms", "p90_ms", "p99_ms", "min_ms", "max_ms",
              "images_per_s", "peak_rss_mib", "size_bytes", "gflops_per_s", "fraction_of_measured_peak",
              "speedup_vs_keras_eager", "speedup_vs_keras_tf_function"}
    for cell in report["cells"]:
        assert fields <= set(cell) and cell["runs"] == 3 and cell["min_ms"] <= cell["p50_ms"] <= cell["p99_ms"] <= cell["max_ms"]
        assert cell["images_per_s"] == pytest.approx(cell["batch"] * 1e3 / cell["mean_ms"])
    int8 = next(c for c in report["cells"] if c["key"] == subjects[0])
    assert int8["speedup_vs_keras_eager"] > 0 and int8["gflops_per_s"] > 0
    markdown = (bundle_copy / "bench.md").read_text()
    assert "## Batch 2, 1 thread(s)" in markdown and "bench.png" in markdown
    assert (bundle_copy / "bench.png").stat().st_size > 0


def test_cli_refuses_a_filter_that_matches_nothing(bundle_dir):
    from click.testing import CliRunner

    from vae_edge.cli.bench import bench

    result = CliRunner().invoke(bench, [str(bundle_dir), "--only", "nothing/*"])
    assert isinstance(result.exception, BadInputError) and "'nothing/*' matches nothing" in str(result.exception)


def test_a_baseline_given_with_model_is_read_as_the_export_read_its_model(tmp_path):
    model_file = tmp_path / "copy.keras"
    model_file.write_bytes(b"a copy of the model")
    recorded = ModelSource(SourceKind.ENCODER_DECODER, ("/gone/enc.keras", "/gone/dec.keras"), ("a", "b"),
                           ("my_layers",), likelihood="gaussian", decoder_output="mean", encoder_outputs=("mu", "lv"))
    bundle = SimpleNamespace(model={"source": recorded.as_dict()})
    notes: list[str] = []
    source = baseline_source(bundle, model_file, ("my_layers",), notes)
    assert source == ModelSource(SourceKind.SUBMODELS, (str(model_file.resolve()),), (), ("my_layers",),
                                 "gaussian", "mean", ("mu", "lv")) and not notes
    assert baseline_source(bundle, model_file, (), notes) is None  # its layers' module not named
    assert notes == ["no Keras baseline: the model's layers need --custom-objects my_layers"]


def test_a_model_file_changed_since_the_export_is_no_baseline_and_is_hashed_once(tmp_path):
    model_file = tmp_path / "model.keras"
    model_file.write_bytes(b"retrained")
    recorded = ModelSource(SourceKind.VAE_EDGE, (str(model_file),), ("0" * 64,))
    notes: list[str] = []
    assert baseline_source(SimpleNamespace(model={"source": recorded.as_dict()}), None, (), notes) is None
    assert len(notes) == 1 and "model.keras: not the model the bundle was exported from" in notes[0]
    unchanged = recorded.with_digests()
    source = baseline_source(SimpleNamespace(model={"source": unchanged.as_dict()}), None, (), notes)
    assert source == replace(unchanged, sha256=()) and len(notes) == 1  # checked here, not again in every worker
