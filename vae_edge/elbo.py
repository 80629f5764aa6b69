"""The VAE's probabilistic terms in plain numpy, and the scores of a pipeline built from them.

Training computes the same terms with `keras.ops` (see `vae_edge.model.vae`); this copy
serves evaluation, export verification and the TensorFlow-free runtime, which must all
agree with training to the last digit. `tests/test_model.py` checks that they do.
All terms are per image, in nats. `evaluate_pipeline` works on any pair of `encode`/`decode`
callables (numpy in, numpy out), so the same code scores the Keras model, every exported
pipeline in verification (on this CPU or an emulated one), and the runtime.
"""

from collections.abc import Callable

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


Encode = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]
Decode = Callable[[np.ndarray], np.ndarray]
MAX_PSNR_DB = 200.0  # caps identical images (infinite PSNR) so results stay valid JSON
ACTIVE_UNIT_THRESHOLD = 0.01  # Burda et al. (2016): Cov_x(E_q[z]) above this counts as active


def sampled_elbo_terms(images: np.ndarray, z_mean: np.ndarray, z_log_var: np.ndarray, decode: Decode,
                       reconstruction_loss: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Per image: the reconstruction NLL at one z ~ q(z|x) drawn from `rng`, and the KL; their sum is the
    one-sample negative ELBO. Row i's noise is the same whatever the batch (numpy draws in row order)."""
    reconstruction = decode(reparameterize(z_mean, z_log_var, rng))
    return reconstruction_nll(images, reconstruction, reconstruction_loss), gaussian_kl(z_mean, z_log_var)


def elbo_scores(images: np.ndarray, nll: np.ndarray, kl: np.ndarray, reconstruction: np.ndarray,
                classes: np.ndarray | None = None, class_names=()) -> dict:
    """Mean ELBO terms (nats/image) and the PSNR of the posterior-mean `reconstruction`; with the images'
    `classes`, also `per_class`: each class's image count and negative ELBO."""
    per_image = nll + kl
    result = {
        "images": int(len(images)),
        "negative_elbo": float(np.mean(per_image)),
        "reconstruction_loss": float(np.mean(nll)),
        "kl_loss": float(np.mean(kl)),
        "psnr_db": float(np.mean(np.minimum(psnr(images, reconstruction), MAX_PSNR_DB))),
    }
    if classes is not None:
        result["per_class"] = {
            name: {"images": int(np.sum(classes == k)), "negative_elbo": float(np.mean(per_image[classes == k]))}
            for k, name in enumerate(class_names) if np.any(classes == k)
        }
    return result


def evaluate_pipeline(
    encode: Encode,
    decode: Decode,
    images: np.ndarray,
    *,
    reconstruction_loss: str = ReconstructionLoss.BCE,
    importance_samples: int = 0,
    seed: int = 0,
    classes: np.ndarray | None = None,
    class_names=(),
) -> dict:
    """Test ELBO terms (nats/image), reconstruction PSNR of the posterior mean, active units,
    and with `importance_samples` = k > 0 the k-sample importance-weighted NLL bound; with the
    images' `classes`, also `per_class`: each class's image count and negative ELBO, from the
    same draws as the overall figure."""
    rng = np.random.default_rng(seed)
    z_mean, z_log_var = encode(images)
    nll, kl = sampled_elbo_terms(images, z_mean, z_log_var, decode, reconstruction_loss, rng)
    result = {
        **elbo_scores(images, nll, kl, decode(z_mean), classes, class_names),
        "active_units": int(np.sum(np.var(z_mean, axis=0) > ACTIVE_UNIT_THRESHOLD)),
        "latent_dim": int(z_mean.shape[-1]),
    }
    if importance_samples > 0:
        result["iw_nll"] = importance_weighted_nll(
            decode, images, z_mean, z_log_var, importance_samples, reconstruction_loss, rng
        )
        result["importance_samples"] = importance_samples
    return result


def importance_weighted_nll(decode, images, z_mean, z_log_var, k: int, reconstruction_loss: str, rng) -> float:
    """-log p(x) ≈ -log mean_k p(x|z_k) p(z_k) / q(z_k|x) (Burda et al., 2016), nats/image."""
    log_weights = np.empty((len(images), k))
    for i in range(k):
        z = reparameterize(z_mean, z_log_var, rng)
        log_likelihood = -reconstruction_nll(images, decode(z), reconstruction_loss)
        log_weights[:, i] = log_likelihood + log_normal(z, 0.0, 0.0) - log_normal(z, z_mean, z_log_var)
    peak = log_weights.max(axis=1, keepdims=True)  # log-sum-exp, shifted for stability
    log_mean = peak[:, 0] + np.log(np.mean(np.exp(log_weights - peak), axis=1))
    return float(-np.mean(log_mean))


def conditioned(encode, decode, labels: np.ndarray | None) -> tuple[Encode, Decode]:
    """`encode`/`decode` of a conditional model bound to the labels of the images being scored, so
    the scoring code above stays the same for both kinds (every call is one row per image)."""
    if labels is None:
        return encode, decode
    return (lambda x: encode(x, labels)), (lambda z: decode(z, labels))
