"""The VAE's probabilistic terms in plain numpy.

Training computes the same terms with `keras.ops` (see `vae_edge.model.vae`); this copy
serves evaluation, export verification and the TensorFlow-free runtime, which must all
agree with training to the last digit. `tests/test_model.py` checks that they do.
All terms are per image, in nats.
"""

import numpy as np

from vae_edge.registry import ReconstructionLoss

BCE_EPSILON = 1e-7  # the clip Keras' binary_crossentropy uses; keeps log() finite


def reconstruction_nll(x: np.ndarray, reconstruction: np.ndarray, kind: str = ReconstructionLoss.BCE) -> np.ndarray:
    """Negative log-likelihood of images `x` under the decoder's output, summed over pixels.

    "bce" is the Bernoulli likelihood (binary cross-entropy). "mse" is the sum of squared
    errors: a Gaussian likelihood with variance 1/2 without its normalising constant, so its
    "nats" compare between models and exports but not with published Gaussian likelihoods.
    """
    x = np.asarray(x, dtype=np.float64)
    r = np.asarray(reconstruction, dtype=np.float64)
    axes = tuple(range(1, x.ndim))
    if kind == ReconstructionLoss.BCE:
        r = np.clip(r, BCE_EPSILON, 1.0 - BCE_EPSILON)
        return -np.sum(x * np.log(r) + (1.0 - x) * np.log1p(-r), axis=axes)
    if kind == ReconstructionLoss.MSE:
        return np.sum(np.square(x - r), axis=axes)
    raise ValueError(f"unknown reconstruction loss {kind!r}; choose one of {', '.join(ReconstructionLoss)}")


def gaussian_kl(z_mean: np.ndarray, z_log_var: np.ndarray) -> np.ndarray:
    """KL(q(z|x) || N(0, I)) per image, summed over latent dimensions."""
    m = np.asarray(z_mean, dtype=np.float64)
    lv = np.asarray(z_log_var, dtype=np.float64)
    return -0.5 * np.sum(1.0 + lv - np.square(m) - np.exp(lv), axis=-1)


def reparameterize(z_mean: np.ndarray, z_log_var: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Draw z ~ q(z|x) with the reparameterization trick."""
    eps = rng.standard_normal(np.shape(z_mean)).astype(np.float32)
    return (z_mean + np.exp(0.5 * z_log_var) * eps).astype(np.float32)


def psnr(reference: np.ndarray, estimate: np.ndarray, peak: float = 1.0) -> np.ndarray:
    """Peak signal-to-noise ratio per image in dB (inf where the images are identical)."""
    ref = np.asarray(reference, dtype=np.float64)
    est = np.asarray(estimate, dtype=np.float64)
    mse = np.mean(np.square(ref - est), axis=tuple(range(1, ref.ndim)))
    with np.errstate(divide="ignore"):
        return 10.0 * np.log10(peak**2 / mse)


def log_normal(z: np.ndarray, mean: np.ndarray, log_var: np.ndarray) -> np.ndarray:
    """log N(z; mean, exp(log_var)) summed over the last axis."""
    return -0.5 * np.sum(
        np.log(2.0 * np.pi) + log_var + np.square(z - mean) / np.exp(log_var), axis=-1
    )


ANOMALY_QUANTILE = 0.99  # the threshold flags 1% of in-distribution images: a common false-alarm budget


def anomaly_threshold(scores: np.ndarray) -> float:
    """The score above which an image counts as an anomaly, from held-out in-distribution scores."""
    return float(np.quantile(scores, ANOMALY_QUANTILE))


def anomaly_scores(x, z_mean, z_log_var, reconstruction, kind: str = ReconstructionLoss.BCE) -> np.ndarray:
    """Negative ELBO per image with the decoder at the posterior mean: deterministic, so an
    image gets the same score on every call; `reconstruction` must be decode(z_mean)."""
    return reconstruction_nll(x, reconstruction, kind) + gaussian_kl(z_mean, z_log_var)
