"""TFLite's integer modes keep the model's accuracy, the per-layer diagnosis of integer
files, and the posterior statistics that judge z_log_var.

`small` after one epoch on 1,000 digits is the issue's model: its decoder has learnt the dark
background (logits near -16), whose probabilities a quantized sigmoid (steps of 1/256) rounds to
0, and the Bernoulli likelihood charged that +10.9 % ELBO (+25 % here). TensorFlow, Keras and
the engines are imported inside the tests that need them.
"""

import json
from types import SimpleNamespace

import numpy as np
import pytest

from vae_edge.verify.posterior import kl_change_nats, std_ratio_error

ONE_EPOCH = dict(variant="small", epochs=1, max_samples=1000, seed=0)
CALIBRATION_ROWS = 64  # batch-1 rows (export uses 256; the cliff shows with any number)
LOGITS, DECODE_LOGITS = "reconstruction_logits", "decode_logits"


def write_signatures(vae, path):
    """A SavedModel with `encode`, `decode` and `decode_logits` (the decoder without its sigmoid), as export names them."""
    import keras
    import tensorflow as tf

    image = tf.TensorSpec((None, *vae.image_shape), tf.float32, name="image")
    z = tf.TensorSpec((None, vae.latent_dim), tf.float32, name="z")
    logits = keras.Model(vae.decoder.inputs, vae.decoder.get_layer("to_pixels").output)
    archive = keras.export.ExportArchive()
    for name, network, spec, outputs in [("encode", vae.encoder, image, ["z_mean", "z_log_var"]),
                                         ("decode", vae.decoder, z, ["reconstruction"]),
                                         (DECODE_LOGITS, logits, z, [LOGITS])]:
        archive.track(network)
        archive.add_endpoint(name, endpoint(network, spec, outputs, tf))
    archive.write_out(str(path), verbose=False)
    return path


def endpoint(network, spec, outputs, tf):
    @tf.function(input_signature=[spec])
    def call(x):
        result = network(x, training=False)
        return dict(zip(outputs, result if isinstance(result, (list, tuple)) else [result]))

    return call


@pytest.fixture(scope="module")
def one_epoch(tmp_path_factory):
    """The issue's model, its SavedModel and batch-1 calibration rows per signature (as export makes them)."""
    from vae_edge.data import load_dataset
    from vae_edge.elbo import reparameterize
    from vae_edge.model.loading import load_vae
    from vae_edge.train import TrainConfig, train

    folder = tmp_path_factory.mktemp("one-epoch")
    run_dir = train(TrainConfig(**ONE_EPOCH), folder / "run", verbose=0).run_dir
    vae = load_vae(run_dir / "model.keras")
    data = load_dataset("mnist-5k", max_samples=ONE_EPOCH["max_samples"], seed=0)  # the run's own splits
    x = data.train[:CALIBRATION_ROWS]
    z = reparameterize(*vae.encode(x), np.random.default_rng(0))
    rows = {"encode": [{"image": x[i:i + 1]} for i in range(len(x))], "decode": [{"z": z[i:i + 1]} for i in range(len(z))]}
    rows[DECODE_LOGITS] = rows["decode"]
    return SimpleNamespace(vae=vae, run_dir=run_dir, savedmodel=write_signatures(vae, folder / "savedmodel"), rows=rows,
                           heldout=np.concatenate([data.test, data.val]))  # 200 digits it did not train on


def convert(one_epoch, signature, mode):
    from vae_edge.export.tflite import to_tflite

    return to_tflite(one_epoch.savedmodel, signature, mode, lambda: one_epoch.rows[signature])


def graph(content: bytes):
    """(ops, tensors, output indices) of a .tflite model as LiteRT reads it."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=content)
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
    return interpreter._get_ops_details(), tensors, [d["index"] for d in interpreter.get_output_details()]


def head_ops(ops, outputs) -> list[dict]:
    """The ops between the last compute op and the outputs (walking back), DEQUANTIZE included."""
    from vae_edge.export.tflite import COMPUTE_OPS

    producers = {t: op for op in ops for t in op["outputs"]}
    found, pending = [], list(outputs)
    while pending:
        op = producers.get(pending.pop())
        if op is None or op["op_name"] in COMPUTE_OPS or op in found:
            continue
        found.append(op)
        pending += [t for t in op["inputs"] if t >= 0]
    return found


def delegated_ops(content: bytes) -> list[str]:
    """The names of the ops XNNPACK (LiteRT's default delegate) took over: those inside a DELEGATE node's partition."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=content)
    interpreter.allocate_tensors()
    wrapper = interpreter._interpreter
    nodes = [(wrapper.NodeName(i), list(wrapper.NodeInputs(i)), list(wrapper.NodeOutputs(i))) for i in range(wrapper.NumNodes())]
    producers = {t: i for i, (name, _, outputs) in enumerate(nodes) if name != "DELEGATE" for t in outputs}
    inside: set[int] = set()
    for name, inputs, outputs in nodes:
        pending = list(outputs) if name == "DELEGATE" else []
        while pending:
            tensor = pending.pop()
            if tensor in inputs or tensor not in producers or producers[tensor] in inside:
                continue
            inside.add(producers[tensor])
            pending += nodes[producers[tensor]][1]
    return [nodes[i][0] for i in sorted(inside)]


@pytest.mark.slow
@pytest.mark.parametrize("signature", ["encode", "decode"])
def test_int8_runs_its_head_in_float_and_its_body_in_int8(one_epoch, signature):
    from vae_edge.export.tflite import COMPUTE_OPS
    from vae_edge.registry import Mode

    content = convert(one_epoch, signature, Mode.INT8)
    ops, tensors, outputs = graph(content)
    head = head_ops(ops, outputs)
    assert {op["op_name"] for op in head} >= ({"LOGISTIC"} if signature == "decode" else {"TANH"})
    for op in head:  # the sigmoid and the SoftRange compute on floats: their outputs are float32
        assert all(tensors[t]["dtype"] == np.float32 for t in op["outputs"]), op["op_name"]
    compute = [op for op in ops if op["op_name"] in COMPUTE_OPS]
    assert compute and all(tensors[op["outputs"][0]]["dtype"] == np.int8 for op in compute)
    assert all(tensors[t]["dtype"] == np.float32 for t in outputs)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["int8", "int8-io"])
def test_integer_files_use_builtin_ops_that_xnnpack_runs(one_epoch, mode):
    from vae_edge.export.tflite import COMPUTE_OPS
    from vae_edge.registry import Mode

    signatures = ["encode", "decode"] if mode == Mode.INT8 else ["encode", DECODE_LOGITS]
    for signature in signatures:
        content = convert(one_epoch, signature, Mode(mode))
        ops = [op["op_name"] for op in graph(content)[0]]
        assert not [op for op in ops if op.startswith("Flex") or op in ("CUSTOM", "DELEGATE")]
        delegated = delegated_ops(content)
        assert sorted(op for op in ops if op in COMPUTE_OPS) == sorted(op for op in delegated if op in COMPUTE_OPS)


@pytest.mark.slow
def test_int8_io_decoder_of_logits_is_integer_from_end_to_end(one_epoch):
    from vae_edge.registry import Mode

    content = convert(one_epoch, DECODE_LOGITS, Mode.INT8_IO)
    ops, tensors, outputs = graph(content)
    (output,) = outputs
    assert tensors[output]["dtype"] == np.int8 and tensors[output]["quantization"][0] > 0
    assert not [op["op_name"] for op in ops if op["op_name"] in ("QUANTIZE", "DEQUANTIZE", "LOGISTIC")]
    floats = [t["name"] for t in tensors.values() if t["dtype"] == np.float32]
    assert not floats, floats


def elbo_cost_pct(one_epoch, encoder: bytes, decoder: bytes, logits: bool = False) -> float:
    """The pipeline's test -ELBO against Keras', in % (the same posterior draws)."""
    from ai_edge_litert.interpreter import Interpreter

    from vae_edge.elbo import evaluate_pipeline

    def runner(content, signature):
        return Interpreter(model_content=content).get_signature_runner(signature)

    def as_input(x, details):
        if details["dtype"] != np.int8:
            return x.astype(np.float32)
        scale, zero = details["quantization"]
        return np.clip(np.round(x / scale + zero), -128, 127).astype(np.int8)

    def as_output(y, details):
        if details["dtype"] != np.int8:
            return y
        scale, zero = details["quantization"]
        return (y.astype(np.float32) - zero) * scale

    def run(content, signature, x):
        call = runner(content, signature)
        (input_name, details), = call.get_input_details().items()
        outputs = call.get_output_details()
        rows = [call(**{input_name: as_input(x[i:i + 1], details)}) for i in range(len(x))]
        return {key: np.concatenate([as_output(r[key], outputs[key]) for r in rows]) for key in outputs}

    def encode(x):
        out = run(encoder, "encode", x)
        return out["z_mean"], out["z_log_var"]

    def decode(z):
        if logits:
            return 1.0 / (1.0 + np.exp(-run(decoder, DECODE_LOGITS, z)[LOGITS]))
        return run(decoder, "decode", z)["reconstruction"]

    x, vae = one_epoch.heldout, one_epoch.vae
    reference = evaluate_pipeline(vae.encode, vae.decode, x, seed=0)["negative_elbo"]
    return 100.0 * (evaluate_pipeline(encode, decode, x, seed=0)["negative_elbo"] / reference - 1.0)


@pytest.mark.slow
def test_barely_trained_model_keeps_its_elbo_in_int8_and_int8_io(one_epoch):
    """The issue's +10.9 %: the converter's defaults (the sigmoid's output quantized) cost far more than the
    2 % tolerance on this model; the float head and the integer logits stay under 0.5 %."""
    from vae_edge.export.tflite import new_converter, quiet
    from vae_edge.registry import Mode

    with quiet():
        defaults = {s: new_converter(one_epoch.savedmodel, s, Mode.INT8, lambda s=s: one_epoch.rows[s]).convert()
                    for s in ("encode", "decode")}
    assert elbo_cost_pct(one_epoch, defaults["encode"], defaults["decode"]) > 5.0
    int8 = elbo_cost_pct(one_epoch, convert(one_epoch, "encode", Mode.INT8), convert(one_epoch, "decode", Mode.INT8))
    int8_io = elbo_cost_pct(one_epoch, convert(one_epoch, "encode", Mode.INT8_IO),
                            convert(one_epoch, DECODE_LOGITS, Mode.INT8_IO), logits=True)
    assert abs(int8) < 0.5 and abs(int8_io) < 0.5, (int8, int8_io)


@pytest.mark.slow
def test_the_barely_trained_model_exports_with_default_settings_every_mode_passing(one_epoch, tmp_path):
    """The issue's case end to end: `vae-edge export MODEL` (every format, mode and fixed shape) writes the whole
    bundle and every target passes verification, integer ones included."""
    from click.testing import CliRunner

    from vae_edge.bundle import Bundle
    from vae_edge.cli import main
    from vae_edge.registry import targets

    done = CliRunner().invoke(main, ["export", str(one_epoch.run_dir / "model.keras"), "--out", str(tmp_path / "b")])
    assert done.exit_code == 0, done.output
    bundle = Bundle(tmp_path / "b")
    assert {t.key for t in bundle.targets()} == {t.key for t in targets()} and "rejected" not in bundle.manifest
    assert all(p["passed"] for p in bundle.manifest["verification"]["pipelines"].values())


@pytest.mark.slow
def test_tflite_layer_errors_name_each_quantized_tensor_and_the_float_head(one_epoch):
    from vae_edge.export.diagnosis import tflite_layer_errors
    from vae_edge.registry import Mode

    rows = tflite_layer_errors(one_epoch.savedmodel, "decode", Mode.INT8, lambda: one_epoch.rows["decode"], batches=4)
    *body, head = rows
    assert (head.op, head.tensor, head.local_sqnr_db) == ("LOGISTIC", "reconstruction", None)
    assert 10.0 < head.accumulated_sqnr_db < 200.0
    convolutions = [r for r in body if r.op == "CONV_2D"]
    assert convolutions and all(20.0 < r.local_sqnr_db < 100.0 and r.accumulated_sqnr_db < 100.0 for r in convolutions)
    assert all(r.scale > 0 and -128 <= r.zero_point <= 127 for r in body)
    assert json.loads(json.dumps([r.to_json() for r in rows]))[-1]["tensor"] == "reconstruction"

    encoder = tflite_layer_errors(one_epoch.savedmodel, "encode", Mode.INT8_IO, lambda: one_epoch.rows["encode"], batches=4)
    tanh = [r for r in encoder if r.op == "TANH"]
    assert tanh and tanh[0].scale == pytest.approx(1 / 128)  # the fixed output step of an int8 TANH
    assert {r.tensor for r in encoder} >= {"z_mean", "z_log_var"}


@pytest.mark.slow
def test_onnx_layer_errors_compare_qdq_tensors_with_the_float_graph(one_epoch, tmp_path):
    import onnx
    import tensorflow as tf
    import tf2onnx

    from vae_edge.export.diagnosis import onnx_layer_errors
    from vae_edge.export.onnx_int8 import quantize

    spec = tf.TensorSpec((None, one_epoch.vae.latent_dim), tf.float32, name="z")
    decode = endpoint(one_epoch.vae.decoder, spec, ["reconstruction"], tf)
    model, _ = tf2onnx.convert.from_function(decode, input_signature=[spec])
    onnx.save(model, str(tmp_path / "decoder.float32.onnx"))
    quantize(tmp_path / "decoder.float32.onnx", tmp_path / "decoder.int8.onnx", one_epoch.rows["decode"])
    rows = onnx_layer_errors(tmp_path / "decoder.float32.onnx", tmp_path / "decoder.int8.onnx", one_epoch.rows["decode"],
                             batches=4)
    *quantized, head = rows
    assert (head.tensor, head.local_sqnr_db) == ("reconstruction", None)  # the float head's output
    assert 10.0 < head.accumulated_sqnr_db < 200.0
    assert all(r.local_sqnr_db is not None and r.scale > 0 for r in quantized)
    convolutions = [r for r in quantized if r.op == "Conv" and r.accumulated_sqnr_db is not None]
    assert convolutions and all(20.0 < r.local_sqnr_db < 100.0 and r.accumulated_sqnr_db < 100.0 for r in convolutions)


def test_tflite_layer_errors_refuse_modes_without_calibration():
    from vae_edge.errors import BadInputError
    from vae_edge.export.diagnosis import tflite_layer_errors
    from vae_edge.registry import Mode

    with pytest.raises(BadInputError, match="full-integer"):
        tflite_layer_errors("unused", "decode", Mode.DYNAMIC, list)


# -- posterior statistics (pure numpy) ----------------------------------------------------------------


def test_std_ratio_error_depends_on_the_error_only_not_on_the_log_variance():
    offset = np.full((3, 4), 0.1)
    for level in (0.0, -8.0, 4.0):
        reference = np.full((3, 4), level)
        assert std_ratio_error(reference, reference + offset) == pytest.approx(np.expm1(0.05))
    assert std_ratio_error(np.zeros((2, 2)), np.zeros((2, 2))) == 0.0


def test_kl_change_is_the_change_of_the_elbo_kl_term_whatever_the_mean():
    from vae_edge.elbo import gaussian_kl

    rng = np.random.default_rng(0)
    reference = rng.normal(-3.0, 1.0, (16, 8))
    moved = reference + rng.normal(0.0, 0.05, (16, 8))
    for mean in (np.zeros((16, 8)), rng.normal(0.0, 2.0, (16, 8))):
        expected = np.mean(np.abs(gaussian_kl(mean, moved) - gaussian_kl(mean, reference)))
        assert kl_change_nats(reference, moved) == pytest.approx(expected)


def test_posterior_statistics_pass_what_cosine_fails_and_catch_what_matters():
    """An untrained encoder's log-variances within +-0.1, cut to TANH's int8 step (0.078): cosine 0.99 fails
    them, yet no posterior std moves by 2 % and the KL term by a hundredth of a nat; a collapsed z_log_var
    (every value 0 for a posterior with log-variances near -5) moves the KL term by nats."""
    rng = np.random.default_rng(0)
    reference = rng.uniform(-0.1, 0.1, (256, 16))
    stepped = np.round(reference / 0.078) * 0.078
    cosine = np.sum(reference * stepped) / np.linalg.norm(reference) / np.linalg.norm(stepped)
    assert cosine < 0.99
    assert std_ratio_error(reference, stepped) < 0.02 and kl_change_nats(reference, stepped) < 0.01
    trained = rng.uniform(-6.0, -4.0, (256, 16))
    assert kl_change_nats(trained, np.zeros_like(trained)) > 10.0


def test_posterior_statistics_refuse_mismatched_shapes():
    with pytest.raises(ValueError, match="shape"):
        std_ratio_error(np.zeros((2, 3)), np.zeros((3, 2)))
    with pytest.raises(ValueError, match="shape"):
        kl_change_nats(np.zeros((2, 3)), np.zeros((2, 4)))
