"""Model quality in the model's own terms: ELBO, importance-weighted NLL, PSNR, active units.

Works on any pair of `encode`/`decode` callables (numpy in, numpy out), so the same code
scores the Keras model, every exported pipeline in verification, and the runtime.
"""

from collections.abc import Callable

import numpy as np

from vae_edge.elbo import (
    gaussian_kl,
    log_normal,
    psnr,
    reconstruction_nll,
    reparameterize,
)
from vae_edge.registry import ReconstructionLoss

Encode = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]
Decode = Callable[[np.ndarray], np.ndarray]
MAX_PSNR_DB = 200.0  # caps identical images (infinite PSNR) so results stay valid JSON
ACTIVE_UNIT_THRESHOLD = 0.01  # Burda et al. (2016): Cov_x(E_q[z]) above this counts as active


def evaluate_pipeline(
    encode: Encode,
    decode: Decode,
    images: np.ndarray,
    *,
    reconstruction_loss: str = ReconstructionLoss.BCE,
    importance_samples: int = 0,
    seed: int = 0,
) -> dict[str, float]:
    """Test ELBO terms (nats/image), reconstruction PSNR of the posterior mean, active units,
    and with `importance_samples` = k > 0 the k-sample importance-weighted NLL bound."""
    rng = np.random.default_rng(seed)
    z_mean, z_log_var = encode(images)
    reconstruction = decode(reparameterize(z_mean, z_log_var, rng))
    nll = reconstruction_nll(images, reconstruction, reconstruction_loss)
    kl = gaussian_kl(z_mean, z_log_var)
    result = {
        "images": int(len(images)),
        "negative_elbo": float(np.mean(nll + kl)),
        "reconstruction_loss": float(np.mean(nll)),
        "kl_loss": float(np.mean(kl)),
        "psnr_db": float(np.mean(np.minimum(psnr(images, decode(z_mean)), MAX_PSNR_DB))),
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


def evaluate_model(model, images: np.ndarray, importance_samples: int = 0, seed: int = 0) -> dict[str, float]:
    """Score a Keras VAE (anything with `encode`, `decode` and `reconstruction_loss`) on `images`."""
    return evaluate_pipeline(
        model.encode, model.decode, images,
        reconstruction_loss=model.reconstruction_loss, importance_samples=importance_samples, seed=seed,
    )
