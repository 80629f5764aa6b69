import keras
import numpy as np
import pytest

from vae_edge import elbo
from vae_edge.errors import BadInputError
from vae_edge.model import PRESETS, VAE, Sampling
from vae_edge.model.annealing import kl_weight_at
from vae_edge.registry import DecoderLayout, Precision


@pytest.mark.parametrize("variant", list(PRESETS))
def test_every_variant_gives_the_four_outputs_with_their_shapes(variant):
    model = VAE.from_variant(variant, input_shape=(16, 16, 1))
    latent = PRESETS[variant]["latent_dim"]
    out = model(np.random.rand(2, 16, 16, 1).astype("float32"))
    assert {k: tuple(v.shape) for k, v in out.items()} == {
        "reconstruction": (2, 16, 16, 1),
        "z_mean": (2, latent),
        "z_log_var": (2, latent),
        "z": (2, latent),
    }
    recon = keras.ops.convert_to_numpy(out["reconstruction"])
    assert recon.min() >= 0.0 and recon.max() <= 1.0


@pytest.mark.parametrize("shape", [(16, 16, 3), (28, 28, 1), (20, 12, 3)])
def test_rgb_and_odd_sizes_reconstruct_at_the_input_shape(shape):
    model = VAE.from_variant("medium", input_shape=shape, latent_dim=4)
    assert model.decode(np.zeros((3, 4))).shape == (3, *shape)


def test_shape_too_small_for_the_depth_is_a_clear_error():
    with pytest.raises(BadInputError, match="too small for 4 downsampling stages"):
        VAE.from_variant("xlarge", input_shape=(8, 8, 1))


def test_unknown_variant_lists_the_valid_ones():
    with pytest.raises(BadInputError, match="micro, small, medium, large, xlarge"):
        VAE.from_variant("huge")


@pytest.mark.parametrize(
    "argument, listed", [("reconstruction_loss", "bce, mse"), ("dtype", "float32, mixed_float16, mixed_bfloat16")]
)
def test_unknown_loss_or_precision_lists_the_registry_choices(argument, listed):
    with pytest.raises(BadInputError, match=listed):
        VAE.from_variant("micro", input_shape=(16, 16, 1), **{argument: "float64" if argument == "dtype" else "l1"})


def test_config_round_trips():
    model = VAE.from_variant("micro", input_shape=(16, 16, 3), latent_dim=5, kl_loss_weight=0.5, free_bits=0.1)
    clone = VAE.from_config(model.get_config())
    assert clone.get_config() == model.get_config()
    assert clone.count_params() == model.count_params()


def _full_resolution_convs(decoder) -> int:
    return sum(isinstance(layer, keras.layers.Conv2D) and layer.output.shape[1] == 16 for layer in decoder.layers)


def test_the_mirrored_decoder_keeps_full_resolution_to_the_output_conv():
    mirror = VAE.from_variant("small", input_shape=(16, 16, 1))
    old = VAE.from_variant("small", input_shape=(16, 16, 1), decoder_layout=DecoderLayout.FULL_RESOLUTION.value)
    assert mirror.decoder_layout == DecoderLayout.MIRROR
    assert _full_resolution_convs(mirror.decoder) == 1  # to_pixels only, as the encoder has only its stem there
    assert _full_resolution_convs(old.decoder) == 4  # a conv and a two-conv residual block before to_pixels
    residual = [layer.name for layer in mirror.decoder.layers if isinstance(layer, keras.layers.Add)]
    assert residual == ["dec1_res0_add", "dec0_res0_add"]  # one block per encoder stage, in reverse


def test_a_keras_file_saved_before_the_decoder_layout_loads_in_its_own_layout(tmp_path):
    """Files without `decoder_layout` in their config were written with blocks up to full resolution."""
    import json
    import zipfile

    old = VAE.from_variant("micro", input_shape=(16, 16, 1), decoder_layout=DecoderLayout.FULL_RESOLUTION.value)
    z = np.random.default_rng(0).normal(size=(2, old.latent_dim)).astype("float32")
    old.decoder.set_weights([w + 0.01 * i for i, w in enumerate(old.decoder.get_weights())])
    saved, stripped = tmp_path / "saved.keras", tmp_path / "before.keras"
    old.save(saved)
    with zipfile.ZipFile(saved) as source, zipfile.ZipFile(stripped, "w") as target:
        for item in source.infolist():
            data = source.read(item)
            if item.filename == "config.json":
                config = json.loads(data)
                assert config["config"].pop("decoder_layout") == "full-resolution"
                data = json.dumps(config).encode()
            target.writestr(item, data)
    loaded = keras.models.load_model(stripped)
    assert loaded.decoder_layout == DecoderLayout.FULL_RESOLUTION
    np.testing.assert_array_equal(loaded.decode(z), old.decode(z))


def test_an_unknown_decoder_layout_lists_the_choices():
    with pytest.raises(BadInputError, match="mirror, full-resolution"):
        VAE.from_variant("micro", input_shape=(16, 16, 1), decoder_layout="sideways")


@pytest.mark.slow
def test_keras_file_round_trip_gives_identical_outputs(trained_model, digits, tmp_path):
    path = tmp_path / "m.keras"
    trained_model.save(path)
    loaded = keras.models.load_model(path)  # no custom_objects needed
    assert isinstance(loaded, VAE)
    assert loaded.get_config() == trained_model.get_config()
    x = digits.test[:8]
    for a, b in zip(loaded.encode(x), trained_model.encode(x)):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(loaded.sample(4, seed=1), trained_model.sample(4, seed=1))


def test_seeded_sampling_is_reproducible_and_noise_is_fresh_each_call():
    model = VAE.from_variant("micro", input_shape=(16, 16, 1), latent_dim=4)
    np.testing.assert_array_equal(model.sample(3, seed=7), model.sample(3, seed=7))
    assert not np.array_equal(model.sample(3, seed=7), model.sample(3, seed=8))
    stats = [np.zeros((2, 4), "float32"), np.zeros((2, 4), "float32")]
    first, second = Sampling(seed=3), Sampling(seed=3)
    z1 = keras.ops.convert_to_numpy(first(stats))
    np.testing.assert_array_equal(z1, keras.ops.convert_to_numpy(second(stats)))
    assert not np.array_equal(z1, keras.ops.convert_to_numpy(first(stats)))


def test_sampling_draws_in_its_compute_dtype():
    layer = Sampling(seed=0, dtype="mixed_bfloat16")
    z = layer([np.zeros((2, 3), "float32"), np.zeros((2, 3), "float32")])
    assert keras.backend.standardize_dtype(z.dtype) == "bfloat16"


@pytest.mark.parametrize("kind", ["bce", "mse"])
def test_training_loss_equals_the_numpy_elbo(kind, rng):
    model = VAE.from_variant("micro", input_shape=(16, 16, 1), latent_dim=4, reconstruction_loss=kind)
    x = rng.random((4, 16, 16, 1)).astype("float32")
    y_pred = {k: keras.ops.convert_to_numpy(v) for k, v in model(x).items()}
    loss = float(model.compute_loss(x, None, y_pred))
    expected = np.mean(
        elbo.reconstruction_nll(x, y_pred["reconstruction"], kind) + elbo.gaussian_kl(y_pred["z_mean"], y_pred["z_log_var"])
    )
    assert loss == pytest.approx(expected, rel=1e-5)


def test_free_bits_floor_the_optimised_kl(rng):
    x = rng.random((4, 16, 16, 1)).astype("float32")
    plain = VAE.from_variant("micro", input_shape=(16, 16, 1), latent_dim=4, seed=0)
    floored = VAE.from_config({**plain.get_config(), "free_bits": 5.0})
    floored.set_weights(plain.get_weights())
    y_pred = {k: keras.ops.convert_to_numpy(v) for k, v in plain(x).items()}
    assert float(floored.compute_loss(x, None, y_pred)) > float(plain.compute_loss(x, None, y_pred))
    # evaluation reports the true objective, without the floor
    assert float(floored.compute_loss(x, None, y_pred, training=False)) == pytest.approx(
        float(plain.compute_loss(x, None, y_pred))
    )


@pytest.mark.slow
def test_validation_uses_the_full_kl_weight_during_annealing(digits):
    from vae_edge.model.annealing import KLAnnealing

    model = VAE.from_variant("micro", input_shape=(28, 28, 1), latent_dim=4, seed=0)
    model.compile(optimizer="adam")
    history = model.fit(
        digits.train[:64],
        validation_data=(digits.val[:32],),
        epochs=1,
        batch_size=32,
        verbose=0,
        callbacks=[KLAnnealing("linear", warmup_steps=100)],
    ).history
    assert history["kl_weight"][0] < 0.05 and history["val_kl_weight"][0] == 1.0


def test_kl_annealing_schedules():
    assert kl_weight_at(0, 1.0, "linear", 100) == 0.0
    assert kl_weight_at(50, 2.0, "linear", 100) == pytest.approx(1.0)
    assert kl_weight_at(500, 1.0, "linear", 100) == 1.0
    assert kl_weight_at(125, 1.0, "cyclical", 100) == pytest.approx(0.5)
    assert kl_weight_at(180, 1.0, "cyclical", 100) == 1.0
    assert kl_weight_at(3, 0.7, "none", 100) == 0.7


@pytest.mark.slow
@pytest.mark.parametrize("precision", list(Precision))
def test_a_few_steps_lower_the_loss_under_each_precision_policy(precision, digits, tmp_path):
    keras.utils.set_random_seed(0)
    model = VAE.from_variant("micro", input_shape=(28, 28, 1), latent_dim=4, dtype=str(precision))
    model.compile(optimizer=keras.optimizers.Adam(2e-3))
    x = digits.train[:128]
    before = model.evaluate(x, batch_size=64, verbose=0, return_dict=True)["loss"]
    model.fit(x, epochs=3, batch_size=32, verbose=0)
    after = model.evaluate(x, batch_size=64, verbose=0, return_dict=True)["loss"]
    assert after < before
    assert all(v.dtype == "float32" for v in model.weights)
    assert all(v.dtype == "float32" for v in model(x[:2]).values())
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer) == (precision == "mixed_float16")
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert loaded.dtype_policy.name == precision
    np.testing.assert_array_equal(loaded.encode(x[:4])[0], model.encode(x[:4])[0])


UPSAMPLINGS = [((7, 7), (14, 14)), ((4, 4), (7, 7)), ((15, 8), (29, 16)), ((16, 9), (31, 17)), ((1, 2), (2, 3))]


@pytest.mark.parametrize("in_hw, out_hw", UPSAMPLINGS)
def test_nearest_upsampling_gives_the_pixels_of_tensorflows_nearest_resize(in_hw, out_hw):
    from vae_edge.model.layers import NearestUpsampling

    x = np.random.default_rng(0).random((2, *in_hw, 3), dtype=np.float32)
    expected = keras.layers.Resizing(*out_hw, interpolation="nearest")(x)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(NearestUpsampling(*out_hw)(x)), expected)


def test_nearest_upsampling_refuses_more_than_twice_the_input():
    from vae_edge.model.layers import nearest_rows

    with pytest.raises(ValueError, match="takes 4 rows to between 5 and 8, not 9"):
        nearest_rows(4, 9)


def test_soft_range_is_near_identity_inside_and_bounded_with_a_gradient_outside():
    from vae_edge.model.layers import SoftRange

    layer = SoftRange(-14.0, 6.0)
    x = keras.ops.convert_to_tensor(np.array([-1e6, -40.0, -4.0, -3.0, 0.0, 1e6], dtype=np.float32))
    y = keras.ops.convert_to_numpy(layer(x))
    assert np.all((y >= -14.0) & (y <= 6.0)), y
    assert abs(y[2] - -4.0) < 1e-6  # the centre of the range maps to itself
    assert abs(y[3] - -3.0) < 0.01 and -0.3 < y[4] < 0.0  # nearly linear around the log-variances a VAE uses
    import tensorflow as tf

    with tf.GradientTape() as tape:
        raw = tf.constant([30.0, 0.0])
        tape.watch(raw)
        out = layer(raw)
    slope = tape.gradient(out, raw).numpy()
    assert 0.0 < slope[0] < 0.01 and slope[1] > 0.8  # beyond the range training still feels a pull back
    with pytest.raises(ValueError, match="low < high"):
        SoftRange(1.0, 1.0)


def test_encoder_log_variance_stays_in_range_whatever_its_dense_layer_says():
    """Unusual images once sent the log-variance to 20-60 and exp() overflowed; it is bounded now."""
    from vae_edge.model.networks import LOG_VAR_RANGE

    model = VAE.from_variant("micro", input_shape=(16, 16, 3), seed=0)
    dense = model.encoder.get_layer("z_log_var_dense")
    kernel, bias = dense.get_weights()
    signs = np.where(np.arange(kernel.shape[1]) % 2, -1.0, 1.0).astype(np.float32)
    dense.set_weights([1e3 * signs * np.ones_like(kernel), np.zeros_like(bias)])  # raw outputs of +-thousands
    z_mean, z_log_var = model.encode(np.random.default_rng(0).random((4, 16, 16, 3), dtype=np.float32))
    low, high = LOG_VAR_RANGE
    assert np.all(np.isfinite(z_log_var)) and z_log_var.min() >= low and z_log_var.max() <= high
    assert z_log_var.max() > high - 0.1 and z_log_var.min() < low + 0.1  # both ends reached, neither passed


def test_conditional_graphs_take_a_named_one_hot_label_and_round_trip(tmp_path):
    model = VAE.from_variant("micro", latent_dim=4, num_classes=3, class_names=["ant", "bee", "cat"])
    assert [t.name for t in model.encoder.inputs] == ["image", "label"]
    assert [t.name for t in model.decoder.inputs] == ["z", "label"]
    z = np.random.default_rng(0).normal(size=(6, 4)).astype("float32")
    by_name, by_index = model.decode(z, ["ant", "bee", "cat"] * 2), model.decode(z, np.array([0, 1, 2] * 2))
    np.testing.assert_array_equal(by_name, by_index)
    assert not np.allclose(model.decode(z, label=0), model.decode(z, label=2))  # the label steers the decoder
    model.save(tmp_path / "c.keras")
    loaded = keras.models.load_model(tmp_path / "c.keras")
    assert loaded.class_names == ["ant", "bee", "cat"] and loaded.num_classes == 3
    np.testing.assert_array_equal(loaded.sample(5, seed=2, label="bee"), model.sample(5, seed=2, label=1))


@pytest.mark.parametrize("call, message", [
    (lambda m: m.sample(2), "this model is conditional: give a class with --label or label="),
    (lambda m: m.sample(2, label=3), r"label 3 is not a class of this model; use an index 0..2 or a name: ant, bee, cat"),
    (lambda m: m.sample(2, label="owl"), "label 'owl' is not a class"),
    (lambda m: m.sample(2, labels=[0]), r"labels: expected 2 \(one per row\), got 1"),
    (lambda m: m.sample(2, label=0, labels=[0, 1]), "either label .* or labels"),
    (lambda m: m.encode(np.zeros((2, 28, 28, 1)), np.array([0, 5])), "labels must be class indices 0..2, found 0..5"),
])
def test_conditional_label_mistakes_are_one_clear_error(call, message):
    model = VAE.from_variant("micro", latent_dim=4, num_classes=3, class_names=["ant", "bee", "cat"])
    with pytest.raises(BadInputError, match=message):
        call(model)


def test_unconditional_model_refuses_a_label_and_bad_class_counts_are_refused():
    with pytest.raises(BadInputError, match="unconditional .*drop the label"):
        VAE.from_variant("micro", latent_dim=4).sample(2, label=1)
    with pytest.raises(BadInputError, match="num_classes must be 0 .* or at least 2, got 1"):
        VAE.from_variant("micro", num_classes=1)
    with pytest.raises(BadInputError, match="class_names must be 2 distinct names"):
        VAE.from_variant("micro", num_classes=2, class_names=["a", "a"])
