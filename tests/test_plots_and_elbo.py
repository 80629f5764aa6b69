import numpy as np
import pytest
from PIL import Image

from vae_edge import elbo, plots
from vae_edge.evaluation import evaluate_pipeline


def test_image_grid_tiles_with_padding():
    images = np.zeros((5, 4, 3, 1), np.float32)
    grid = plots.image_grid(images, columns=3, pad=1)
    assert grid.shape == (2 * 5 + 1, 3 * 4 + 1, 1) and grid.dtype == np.uint8
    assert grid[0, 0, 0] == 255 and grid[1, 1, 0] == 0  # white border, black image


def test_latent_manifold_decodes_a_regular_grid(tmp_path):
    seen = []

    def decode(z):
        seen.append(z)
        return np.full((len(z), 6, 6, 1), 0.5, np.float32)

    plots.save_latent_manifold(decode, tmp_path / "m.png", steps=5)
    assert seen[0].shape == (25, 2) and seen[0].min() == -2.5 and seen[0].max() == 2.5
    with Image.open(tmp_path / "m.png") as picture:
        assert picture.size == ((5 * 7 + 1) * 2, (5 * 7 + 1) * 2)


def test_training_curves_png(tmp_path):
    history = {"loss": [3.0, 2.0], "val_loss": [3.5, 2.5], "kl_loss": [1.0, 1.2], "kl_weight": [0.5, 1.0]}
    plots.save_training_curves(history, tmp_path / "c.png")
    with Image.open(tmp_path / "c.png") as picture:
        assert picture.width > 600


def test_kl_is_zero_at_the_prior_and_positive_elsewhere():
    assert elbo.gaussian_kl(np.zeros((2, 3)), np.zeros((2, 3))) == pytest.approx([0.0, 0.0])
    assert elbo.gaussian_kl(np.ones((1, 3)), np.zeros((1, 3)))[0] == pytest.approx(1.5)


def test_prior_latents_are_seeded_and_scaled_by_temperature():
    a = elbo.prior_latents(1000, 4, seed=3)
    np.testing.assert_array_equal(a, elbo.prior_latents(1000, 4, seed=3))
    np.testing.assert_allclose(elbo.prior_latents(1000, 4, seed=3, temperature=0.5), a * 0.5, rtol=1e-6)
    assert a.dtype == np.float32 and abs(a.std() - 1.0) < 0.05


def test_importance_weighted_bound_is_tighter_than_the_elbo():
    rng = np.random.default_rng(0)
    images = (rng.random((64, 4, 4, 1)) > 0.5).astype(np.float32)
    weights = rng.normal(size=(3, 16)).astype(np.float32)

    def encode(x):
        flat = x.reshape(len(x), -1)
        return flat[:, :3] - 0.5, np.full((len(x), 3), -1.0, np.float32)

    def decode(z):
        return (1 / (1 + np.exp(-(z @ weights)))).reshape(len(z), 4, 4, 1)

    scores = evaluate_pipeline(encode, decode, images, importance_samples=200, seed=0)
    assert scores["iw_nll"] < scores["negative_elbo"]
    assert scores["negative_elbo"] == pytest.approx(scores["reconstruction_loss"] + scores["kl_loss"])
