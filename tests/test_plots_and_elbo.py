import math

import numpy as np
import pytest
from PIL import Image

from vae_edge import elbo, image_grid, prior
from vae_edge.elbo import evaluate_pipeline
from vae_edge.train import pictures


def test_image_grid_tiles_with_padding():
    images = np.zeros((5, 4, 3, 1), np.float32)
    grid = image_grid.image_grid(images, columns=3, pad=1)
    assert grid.shape == (2 * 5 + 1, 3 * 4 + 1, 1) and grid.dtype == np.uint8
    assert grid[0, 0, 0] == 255 and grid[1, 1, 0] == 0  # white border, black image


def test_latent_manifold_decodes_a_regular_grid(tmp_path):
    seen = []

    def decode(z):
        seen.append(z)
        return np.full((len(z), 6, 6, 1), 0.5, np.float32)

    pictures.save_latent_manifold(decode, tmp_path / "m.png", steps=5)
    assert seen[0].shape == (25, 2) and seen[0].min() == -2.5 and seen[0].max() == 2.5
    with Image.open(tmp_path / "m.png") as picture:
        assert picture.size == ((5 * 7 + 1) * 2, (5 * 7 + 1) * 2)


def test_training_curves_png(tmp_path):
    history = {"loss": [3.0, 2.0], "val_loss": [3.5, 2.5], "kl_loss": [1.0, 1.2], "kl_weight": [0.5, 1.0]}
    pictures.save_training_curves(history, tmp_path / "c.png")
    with Image.open(tmp_path / "c.png") as picture:
        assert picture.width > 600


def test_kl_is_zero_at_the_prior_and_positive_elsewhere():
    assert elbo.gaussian_kl(np.zeros((2, 3)), np.zeros((2, 3))) == pytest.approx([0.0, 0.0])
    assert elbo.gaussian_kl(np.ones((1, 3)), np.zeros((1, 3)))[0] == pytest.approx(1.5)


def _portable_normals(seed: int, count: int, temperature: float = 1.0) -> list[float]:
    """The generator exactly as `vae_edge.prior`'s docstring specifies it, in plain Python integers and
    math (as a port to another language would write it), independent of the package's numpy code."""
    mask = 2**32 - 1

    def mix32(x: int) -> int:
        x ^= x >> 16
        x = (x * 0x7FEB352D) & mask
        x ^= x >> 15
        x = (x * 0x846CA68B) & mask
        return x ^ (x >> 16)

    def uniform(k: int) -> float:
        return ((mix32(mix32(seed) ^ mix32((k + 0x9E3779B9) & mask)) >> 8) + 0.5) / 2**24

    normals = []
    for pair in range((count + 1) // 2):
        radius = math.sqrt(-2 * math.log(uniform(2 * pair)))
        angle = 2 * math.pi * uniform(2 * pair + 1)
        normals += [radius * math.cos(angle), radius * math.sin(angle)]
    return [n * temperature for n in normals[:count]]


@pytest.mark.parametrize("seed", [0, 1, 42, 2**32 - 1])
def test_prior_latents_follow_the_documented_portable_generator(seed):
    z = prior.prior_latents(3, 5, seed=seed, temperature=0.5)  # 15 normals: an odd count drops the last sine
    assert z.shape == (3, 5) and z.dtype == np.float32
    np.testing.assert_allclose(z.ravel(), _portable_normals(seed, 15, 0.5), atol=1e-6, rtol=0)
    np.testing.assert_allclose(prior.reference_vectors()[seed], _portable_normals(seed, 8), atol=1e-6, rtol=0)


def test_prior_latents_are_seeded_standard_normal_and_scaled_by_temperature():
    a = prior.prior_latents(1000, 4, seed=3)
    np.testing.assert_array_equal(a, prior.prior_latents(1000, 4, seed=3))
    assert not np.array_equal(a, prior.prior_latents(1000, 4, seed=4))
    np.testing.assert_allclose(prior.prior_latents(1000, 4, seed=3, temperature=0.5), a * 0.5, rtol=1e-6)
    assert abs(a.mean()) < 0.05 and abs(a.std() - 1.0) < 0.05
    within = [np.mean(np.abs(a) < k) for k in (1, 2)]  # normal, not only of unit variance: 68.3% and 95.4%
    assert within == pytest.approx([0.6827, 0.9545], abs=0.02)
    with pytest.raises(ValueError, match=r"\[0, 2\^32\)"):
        prior.prior_latents(1, 4, seed=2**32)


# A VAE small enough to integrate exactly: one latent dimension, 4x4 binary images, a logistic decoder.
DECODER_W = np.linspace(-2.0, 2.0, 16)
DECODER_B = np.linspace(0.5, -0.5, 16)
LOG_VAR = -1.0


def _toy_encode(x):
    """A deliberately imperfect posterior: its mean follows the ink, its variance is fixed."""
    mean = (x.reshape(len(x), -1) @ DECODER_W / 8.0)[:, None]
    return mean.astype(np.float32), np.full_like(mean, LOG_VAR, dtype=np.float32)


def _toy_decode(z):
    return (1 / (1 + np.exp(-(np.asarray(z, np.float64) * DECODER_W + DECODER_B)))).reshape(len(z), 4, 4, 1)


def _exact_terms(images):
    """Per image, by quadrature over z on a fine grid: -log p(x), and E_q[-log p(x|z)]."""
    grid = np.linspace(-8, 8, 2001)
    step = grid[1] - grid[0]
    probabilities = 1 / (1 + np.exp(-(grid[:, None] * DECODER_W + DECODER_B)))  # (grid, pixels)
    flat = images.reshape(len(images), -1)
    log_likelihood = flat @ np.log(probabilities).T + (1 - flat) @ np.log1p(-probabilities).T  # (images, grid)
    log_prior = -0.5 * (grid**2 + np.log(2 * np.pi))
    joint = log_likelihood + log_prior
    peak = joint.max(axis=1, keepdims=True)
    nll = -(peak[:, 0] + np.log(np.sum(np.exp(joint - peak), axis=1) * step))
    mean = _toy_encode(images)[0]
    var = np.exp(LOG_VAR)
    posterior = np.exp(-0.5 * (grid - mean) ** 2 / var) / np.sqrt(2 * np.pi * var)
    expected_nll = -np.sum(posterior * log_likelihood, axis=1) * step
    return nll, expected_nll, mean[:, 0]


def test_elbo_terms_and_the_importance_weighted_bound_match_exact_integration():
    rng = np.random.default_rng(0)
    images = (rng.random((1000, 4, 4, 1)) < _toy_decode(rng.standard_normal((1000, 1)))).astype(np.float32)
    nll, expected_nll, mean = _exact_terms(images)
    kl = 0.5 * (mean**2 + np.exp(LOG_VAR) - 1 - LOG_VAR)  # KL(N(m, s^2) || N(0, 1)), from the textbook
    scores = evaluate_pipeline(_toy_encode, _toy_decode, images, importance_samples=64, seed=0)
    assert scores["kl_loss"] == pytest.approx(kl.mean(), rel=1e-6)
    assert scores["reconstruction_loss"] == pytest.approx(expected_nll.mean(), rel=0.02)  # one sample per image
    assert scores["negative_elbo"] == pytest.approx(expected_nll.mean() + kl.mean(), rel=0.02)
    gap = expected_nll.mean() + kl.mean() - nll.mean()  # KL(q || p(z|x)): the ELBO's looseness
    assert gap > 0.1
    assert nll.mean() - 0.05 * gap < scores["iw_nll"] < scores["negative_elbo"] - 0.5 * gap  # much tighter, still a bound
    assert scores["active_units"] == 1 and scores["latent_dim"] == 1


def test_active_units_count_latents_whose_mean_varies_across_images():
    spread = np.array([1.0, 0.05, 0.0])  # variance across images 1.0, 0.0025 (under the 0.01 threshold), 0

    def encode(x):
        signal = np.where(np.arange(len(x)) % 2 == 0, 1.0, -1.0)[:, None]
        return (signal * spread).astype(np.float32), np.zeros((len(x), 3), np.float32)

    scores = evaluate_pipeline(encode, lambda z: np.full((len(z), 2, 2, 1), 0.5), np.zeros((10, 2, 2, 1), np.float32))
    assert scores["active_units"] == 1 and scores["latent_dim"] == 3
