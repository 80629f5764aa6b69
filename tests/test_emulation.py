"""CPU targets under qemu user-mode emulation (`vae_edge.verify.emulation`): the profiles, the
one-line errors, and (slow) the emulated CPUs: their libraries find that CPU, run that CPU's
kernels (dot products on a Cortex-A76 and not on an A53; AVX2 and no AVX-512 under Haswell), and
give the host's float32 results within 1e-5 and, where no kernel saturates, its int8 bits.

The slow tests set the environments up once in the cache (`$VAE_EDGE_CACHE`, default
~/.cache/vae-edge) and skip where that is impossible (no qemu-user-static, no network), except
under CI=true, whose .ci/run installs qemu-user-static: there they fail. No timing is asserted.
"""

import os
import subprocess
import sys

import numpy as np
import pytest
from environment import unavailable

from vae_edge.cpu import CpuClass, cpu_class, cpu_features
from vae_edge.errors import BadInputError
from vae_edge.verify import emulation
from vae_edge.verify.emulation import TARGETS, Arch, Environment

K = 64  # the MatMulInteger probe's depth: K/2 pairs of 255 x 127, each over int16's 32767
EXACT, SATURATED = 255 * 127 * K, 32767 * (K // 2)  # int32 accumulation; VPMADDUBSW's saturated pair sums
SATURATING = {CpuClass.AVX2, CpuClass.AVX512}  # U8S8 through VPMADDUBSW (vae_edge.quantization)
FLOAT_TOLERANCE = 1e-5
# An int8 output that differs by more than this took another integer path (one step of a [0, 1] output is 1/255); within
# FLOAT_TOLERANCE, only its float operations (dequantization, a float head) rounded differently.
INTEGER_GAP = 1e-3


def one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert "\n" not in message
    return message


# ---- fast: the table, the errors, the pieces that need no emulator --------------------------------------------------


@pytest.mark.parametrize("name", TARGETS)
def test_each_target_plants_a_cpuinfo_of_the_class_it_stands_for(name, tmp_path):
    target = TARGETS[name]
    planted = tmp_path / "cpuinfo"
    planted.write_text(target.cpuinfo)
    assert target.name == name
    assert cpu_class(cpu_features(planted)) == target.cpu_class
    assert target.qemu == f"qemu-{target.arch}-static"
    assert not target.numpy_has & target.numpy_lacks


def test_the_targets_cover_arm_with_and_without_dot_products_and_x86_without_avx512():
    assert {target.cpu_class for target in TARGETS.values()} == {CpuClass.ARM64, CpuClass.ARM64_DOTPROD, CpuClass.AVX2}
    # The core's part number (MIDR) is what pytorch/cpuinfo, inside onnxruntime and XNNPACK, reads to pick core-tuned kernels.
    assert "CPU part\t: 0xd03" in TARGETS["cortex-a53"].cpuinfo and "CPU part\t: 0xd0b" in TARGETS["cortex-a76"].cpuinfo
    assert "AVX512F" in TARGETS["haswell"].numpy_lacks


def test_an_unknown_target_names_the_known_ones():
    with pytest.raises(BadInputError) as error:
        emulation.prepare("cortex-a99")
    assert all(name in one_line(error) for name in TARGETS)


@pytest.mark.parametrize("name, words", [("cortex-a53", "ARM64 emulation"), ("haswell", "x86-64 emulation")])
def test_a_missing_qemu_is_one_line_naming_the_package_and_the_command(name, words, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("VAE_EDGE_CACHE", str(tmp_path / "cache"))
    for call in (lambda: emulation.prepare(name), lambda: emulation.run_python(name, ["-c", "pass"])):
        with pytest.raises(BadInputError) as error:
            call()
        message = one_line(error)
        assert message.startswith(words) and "needs qemu-user-static" in message
        assert "apt-get install -y qemu-user-static" in message
    assert not (tmp_path / "cache").exists()


def fake_tools(folder, **scripts):
    """Executables named after the keyword (underscores for dashes) running the shell line given."""
    folder.mkdir()
    for name, line in scripts.items():
        tool = folder / name.replace("_", "-")
        tool.write_text(f"#!/bin/sh\n{line}\n")
        tool.chmod(0o755)
    return folder


def test_without_apt_the_arm64_python_is_explained(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(fake_tools(tmp_path / "bin", qemu_aarch64_static="exit 0")))
    monkeypatch.setenv("VAE_EDGE_CACHE", str(tmp_path / "cache"))
    with pytest.raises(BadInputError) as error:
        emulation.prepare("cortex-a76")
    assert "needs apt-get and dpkg-deb" in one_line(error) and "run it on Debian" in one_line(error)


def test_a_failed_download_is_one_line_and_leaves_no_half_made_cache(tmp_path, monkeypatch):
    failure = "echo 'E: Failed to fetch http://deb.debian.org/debian/dists/bookworm/main/binary-arm64/Packages 404' >&2; exit 100"
    monkeypatch.setenv("PATH", str(fake_tools(tmp_path / "bin", qemu_aarch64_static="exit 0", apt_get=failure,
                                              dpkg_deb="exit 0")))
    monkeypatch.setenv("VAE_EDGE_CACHE", str(tmp_path / "cache"))
    with pytest.raises(BadInputError) as error:
        emulation.prepare("cortex-a53")
    assert "apt-get update (arm64) failed (E: Failed to fetch" in one_line(error) and "check the network" in one_line(error)
    left = sorted(path.name for path in (tmp_path / "cache" / "emulation").iterdir())
    assert [name for name in left if not name.endswith(".lock")] == []  # no sysroot, no staging folder


def test_the_emulated_process_gets_this_vae_edge_and_none_of_the_host_python(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", "/host/x86/site-packages")
    monkeypatch.setenv("LD_PRELOAD", "/host/libjemalloc.so")
    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)
    target = TARGETS["cortex-a53"]
    environment = Environment(target, tmp_path / "qemu", tmp_path / "root", tmp_path / "python3.11",
                              (tmp_path / "packages", tmp_path / "site"), {}, (), 0.0)
    env = environment.environ({"EXTRA": "1", "TF_CPP_MIN_LOG_LEVEL": "0"})
    assert env["PYTHONPATH"] == os.pathsep.join([str(tmp_path / "packages"), str(tmp_path / "site")])
    assert "LD_PRELOAD" not in env and env["PYTHONNOUSERSITE"] == "1" and env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert env["EXTRA"] == "1" and env["TF_CPP_MIN_LOG_LEVEL"] == "0" and environment.environ()["TF_CPP_MIN_LOG_LEVEL"] == "2"
    assert environment.command(["-m", "x"]) == [str(tmp_path / "qemu"), "-cpu", "cortex-a53", "-L", str(tmp_path / "root"),
                                                str(tmp_path / "python3.11"), "-m", "x"]


@pytest.mark.parametrize("line, arch, name", [
    ("0x5506af8e58:  6f84e010  .byte    0x10, 0xe0, 0x84, 0x6f", Arch.AARCH64, "udot"),  # udot v16.4s, v0.16b, v4.4b[0]
    ("0x5506af8e58:  4e829420  .byte    0x20, 0x94, 0x82, 0x4e", Arch.AARCH64, "sdot"),  # sdot v0.4s, v1.16b, v2.16b
    ("0x5506af8e50:  4ea88471  add      v17.4s, v3.4s, v8.4s", Arch.AARCH64, "add"),
    ("0x550081be40:  d503201f  nop      ", Arch.AARCH64, "nop"),
    ("0x400d4bd0d9:  c4 e2 3d 04 e4           vpmaddubsw %ymm4, %ymm8, %ymm4", Arch.X86_64, "vpmaddubsw ymm"),
    ("0x400d4bd0de:  62 f2 7d 48 50 c1        vpdpbusd %zmm1, %zmm0, %zmm0", Arch.X86_64, "vpdpbusd zmm"),
    ("0x400d4bd0e2:  48 8b 45 f8              movq -8(%rbp), %rax", Arch.X86_64, "movq"),
])
def test_instructions_are_named_from_qemus_log(line, arch, name):
    assert emulation.instruction_name(line, arch) == name


# ---- slow: the emulated CPUs themselves ------------------------------------------------------------------------------



# Run on the host and under each target: every tiny model on its input, outputs into an .npz.
RUN_MODELS = """
import sys
from pathlib import Path

import numpy as np
import onnxruntime

from vae_edge.runtime import open_engine

folder, out = Path(sys.argv[1]), sys.argv[2]
results = {}
for path in sorted(folder.glob("*.tflite")) + sorted(folder.glob("*.onnx")):
    if path.stem == "matmulinteger":
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        results[path.name] = session.run(None, {"a": np.load(folder / "a.npy")})[0]
    else:
        engine = open_engine(path)
        results[path.name] = engine.run({engine.inputs[0]["name"]: np.load(folder / "x.npy")})[engine.outputs[0]["name"]]
np.savez(out, **results)
"""


def build_models(folder) -> None:
    """Two convolutions as float32 and int8 TFLite (Keras, tf.lite) and ONNX (onnx.helper; QDQ per-channel U8S8 and
    S8S8 with full-range weights, by onnxruntime.quantization), and a MatMulInteger whose uint8 x int8 pairs overflow int16."""
    import onnx
    import tensorflow as tf
    from onnx import TensorProto, helper, numpy_helper
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    rng = np.random.default_rng(0)
    x = rng.random((4, 16, 16, 3), dtype=np.float32)
    np.save(folder / "x.npy", x)
    np.save(folder / "a.npy", np.full((1, K), 255, np.uint8))
    w1 = (rng.standard_normal((16, 3, 3, 3)) * 0.3).astype(np.float32)
    w2 = (rng.standard_normal((8, 16, 3, 3)) * 0.2).astype(np.float32)
    graph = helper.make_graph([
        helper.make_node("Transpose", ["x"], ["nchw"], perm=[0, 3, 1, 2]),
        helper.make_node("Conv", ["nchw", "w1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2"], ["y"], pads=[1, 1, 1, 1], strides=[2, 2]),
    ], "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 16, 16, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 8, 8, 8])],
        [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(w2, "w2")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, folder / "float32.onnx")

    class Calibration(CalibrationDataReader):
        def __init__(self):
            self.feeds = iter([{"x": x[i : i + 1]} for i in range(len(x))])

        def get_next(self):
            return next(self.feeds, None)

    for name, activations in (("u8s8", QuantType.QUInt8), ("s8s8", QuantType.QInt8)):
        quantize_static(folder / "float32.onnx", folder / f"{name}.onnx", Calibration(), quant_format=QuantFormat.QDQ,
                        activation_type=activations, weight_type=QuantType.QInt8, per_channel=True)
    probe = helper.make_graph([helper.make_node("MatMulInteger", ["a", "w"], ["y"])], "matmulinteger",
                              [helper.make_tensor_value_info("a", TensorProto.UINT8, [1, K])],
                              [helper.make_tensor_value_info("y", TensorProto.INT32, [1, 8])],
                              [numpy_helper.from_array(np.full((K, 8), 127, np.int8), "w")])
    model = helper.make_model(probe, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, folder / "matmulinteger.onnx")

    tf.keras.utils.set_random_seed(0)
    inputs = tf.keras.Input((16, 16, 3))
    hidden = tf.keras.layers.Conv2D(16, 3, padding="same", activation="relu")(inputs)
    keras_model = tf.keras.Model(inputs, tf.keras.layers.Conv2D(8, 3, strides=2, padding="same")(hidden))
    (folder / "float32.tflite").write_bytes(tf.lite.TFLiteConverter.from_keras_model(keras_model).convert())
    converter = tf.lite.TFLiteConverter.from_keras_model(keras_model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([x[i : i + 1]] for i in range(len(x)))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    (folder / "int8.tflite").write_bytes(converter.convert())
    (folder / "run_models.py").write_text(RUN_MODELS)


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory):
    pytest.importorskip("tensorflow")
    pytest.importorskip("onnx")
    folder = tmp_path_factory.mktemp("emulation-models")
    build_models(folder)
    return folder


def outputs(result: subprocess.CompletedProcess, path) -> dict[str, np.ndarray]:
    assert result.returncode == 0, result.stderr[-2000:]
    with np.load(path) as saved:
        return dict(saved)


@pytest.fixture(scope="session")
def host_outputs(tiny_models):
    out = tiny_models / "host.npz"
    return outputs(subprocess.run([sys.executable, tiny_models / "run_models.py", tiny_models, out],
                                  capture_output=True, text=True), out)


def gap(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float64) - b).max())


def differences(emulated: dict, host: dict) -> str:
    """Per output: the largest difference from the host and the share of values that differ."""
    lines = []
    for name in sorted(host):
        gap = np.abs(emulated[name].astype(np.float64) - host[name])
        lines.append(f"{name}: max |emulated - host| {gap.max():.3g} on {np.mean(gap > 0):.1%} of values")
    return "; ".join(lines)


@pytest.mark.slow
@pytest.mark.parametrize("name", TARGETS)
def test_the_emulated_libraries_find_the_target_cpu(name, environments):
    target, probe = TARGETS[name], environments(name).probe
    assert probe["machine"] == target.arch and probe["cpu_class"] == target.cpu_class
    assert target.numpy_has <= set(probe["numpy_features"]) and not target.numpy_lacks & set(probe["numpy_features"])
    assert probe["versions"] == emulation.host_versions()


@pytest.mark.slow
@pytest.mark.parametrize("name", TARGETS)
def test_tiny_models_give_the_hosts_float32_and_where_nothing_saturates_its_int8_bits(name, environments, tiny_models,
                                                                                       host_outputs, tmp_path):
    target = TARGETS[name]
    out = tmp_path / f"{name}.npz"
    emulated = outputs(environments(name).run([tiny_models / "run_models.py", tiny_models, out]), out)
    print(f"{name} against this {cpu_class()} host: {differences(emulated, host_outputs)}")
    for model in ("float32.onnx", "float32.tflite"):
        np.testing.assert_allclose(emulated[model], host_outputs[model], rtol=0, atol=FLOAT_TOLERANCE, err_msg=model)
    # XNNPACK's int8 kernels accumulate exactly in int32 on every one of these CPUs.
    assert gap(emulated["int8.tflite"], host_outputs["int8.tflite"]) <= FLOAT_TOLERANCE
    # MLAS' U8S8 kernels on AVX2 (VPMADDUBSW) saturate int16 pair sums; with VNNI and on ARM they do not.
    saturating = target.cpu_class in SATURATING
    assert (emulated["matmulinteger.onnx"] == (SATURATED if saturating else EXACT)).all(), emulated["matmulinteger.onnx"]
    # Full-range QDQ int8 (S8S8 too, shifted to U8S8 on x86) gives the host's integers when both saturate or neither does.
    for model in ("u8s8.onnx", "s8s8.onnx"):
        same = saturating == (cpu_class() in SATURATING)
        difference = gap(emulated[model], host_outputs[model])
        assert (difference <= FLOAT_TOLERANCE) if same else (difference > INTEGER_GAP), f"{model}: {difference:.3g}"


# What each target's int8 runs must (> 0) and must not (== 0) execute, by `emulation.instruction_name`.
KERNEL_EVIDENCE = {
    "cortex-a53": {"sdot": 0, "udot": 0, "smull": 1},  # NEON widening multiplies, no ARMv8.2 dot products
    "cortex-a76": {"sdot": 1, "udot": 1},  # MLAS and XNNPACK's dot-product kernels (U8S8 runs UDOT, S8S8 SDOT)
    "haswell": {"vpmaddubsw ymm": 1, "zmm": 0, "vpdpbusd": 0},  # AVX2's U8S8 kernel; no AVX-512, no VNNI
}


@pytest.mark.slow
@pytest.mark.parametrize("name", TARGETS)
def test_each_target_runs_its_own_kernels(name, environments, tiny_models, tmp_path):
    result, counts = emulation.executed_instructions(environments(name), [tiny_models / "run_models.py", tiny_models,
                                                                          tmp_path / "out.npz"])
    assert result.returncode == 0, result.stderr[-2000:]
    found = {key: sum(n for instruction, n in counts.items() if instruction == key or key in instruction.split())
             for key in KERNEL_EVIDENCE[name]}
    print(f"{name}: translated instructions {found}")
    for key, expected in KERNEL_EVIDENCE[name].items():
        assert (found[key] > 0) == bool(expected), (key, found)


SAMPLE = """
import sys
import numpy as np
from vae_edge.runtime import EdgeVAE

pairs = [pair.split("/") for pair in sys.argv[3:]]
np.savez(sys.argv[2], **{f"{b}_{m}": EdgeVAE.load(sys.argv[1], backend=b, mode=m).sample(8, seed=3) for b, m in pairs})
"""


@pytest.mark.slow
@pytest.mark.parametrize("name", TARGETS)
def test_edge_vae_samples_like_the_host(name, environments, bundle_dir, tmp_path):
    from vae_edge.bundle import Bundle
    from vae_edge.quantization import saturates

    target = TARGETS[name]
    environment = environments(name)
    pipelines = ["tflite/float32", "tflite/int8", "tflite/int8-io", "onnx/float32", "onnx/int8"]
    script = tmp_path / "sample.py"
    script.write_text(SAMPLE)
    host = outputs(subprocess.run([sys.executable, script, bundle_dir, tmp_path / "host.npz", *pipelines],
                                  capture_output=True, text=True), tmp_path / "host.npz")
    emulated = outputs(environment.run([script, bundle_dir, tmp_path / "emulated.npz", *pipelines]), tmp_path / "emulated.npz")
    print(f"{name} against this {cpu_class()} host: {differences(emulated, host)}")
    for key in ("tflite_float32", "onnx_float32"):
        np.testing.assert_allclose(emulated[key], host[key], rtol=0, atol=FLOAT_TOLERANCE, err_msg=key)
    np.testing.assert_array_equal(emulated["tflite_int8-io"], host["tflite_int8-io"])  # integers all the way
    assert gap(emulated["tflite_int8"], host["tflite_int8"]) <= FLOAT_TOLERANCE  # the same integers, a float head
    # `vae_edge.quantization.saturates` says which CPU classes lose accuracy with the file's settings; emulation checks it.
    settings = Bundle(bundle_dir).manifest["quantization"]["onnx_int8"]["settings"]
    difference = gap(emulated["onnx_int8"], host["onnx_int8"])
    if saturates(settings, target.cpu_class) == saturates(settings, cpu_class()):
        assert difference <= FLOAT_TOLERANCE, settings
    else:
        assert difference > INTEGER_GAP, settings


@pytest.mark.slow
def test_prepare_sets_up_once_in_a_fresh_cache_and_then_reuses_it(tmp_path, monkeypatch):
    monkeypatch.setenv("VAE_EDGE_CACHE", str(tmp_path))
    messages = []
    try:
        first = emulation.prepare("cortex-a53", log=messages.append)
    except BadInputError as error:
        unavailable(str(error), ".ci/run installs qemu-user-static")
    cache = tmp_path / "emulation"
    manifests = {path: path.stat().st_mtime_ns for path in cache.glob("*/manifest.json")}
    assert len(manifests) == 3 and len(messages) == 3  # sysroot, wheels, target: each made once, each said once
    assert not list(cache.glob(".*.tmp")) and not list(cache.glob(".*.old"))  # every folder renamed into place
    assert first.size_bytes > 50e6  # an arm64 Python and three native libraries (about 260 MB)
    again = emulation.prepare("cortex-a53", log=messages.append)
    assert len(messages) == 3 and again.probe == first.probe
    assert {path: path.stat().st_mtime_ns for path in cache.glob("*/manifest.json")} == manifests
    result = emulation.run_python("cortex-a53", ["-c", "import platform, vae_edge.cpu; print(platform.machine(), "
                                                        "vae_edge.cpu.cpu_class())"])
    assert result.stdout.split() == ["aarch64", "arm64"], result.stderr


def test_an_emulator_that_does_not_give_the_targets_features_is_refused():
    """What an older qemu does: its TCG emulated no AVX2 before 7.2, so the libraries would fall back to SSE kernels."""
    versions = {"numpy": "2", "ai-edge-litert": "2", "onnxruntime": "1"}
    probe = {"cpu_class": "avx2", "numpy_features": ["SSE", "SSE2", "SSE42"], "versions": versions}
    with pytest.raises(BadInputError) as error:
        emulation._check_probe(TARGETS["haswell"], probe, versions, "qemu-x86_64 version 6.2.0")
    assert "numpy detects []" in one_line(error) and "a newer qemu-user-static" in one_line(error)
    emulation._check_probe(TARGETS["haswell"], {**probe, "numpy_features": ["AVX2", "FMA3", "SSE42"]}, versions, "qemu")
