"""How far an exported encoder's log-variances move the posterior, in the posterior's own terms.

Cosine similarity judges z_log_var badly: it is ill-conditioned when the values sit near zero,
as an untrained or barely trained encoder's do (log-variances within +-0.1: an int8 step of
0.078, the fixed output step of the SoftRange's TANH, gave a cosine of 0.989 and failed a
pipeline that cost +0.007 % ELBO), and it barely notices an offset on large values. What
matters is the posterior N(mu, exp(log_var)): a log-variance error d scales the posterior's
standard deviation by exp(d / 2) whatever the log-variance is, and changes the KL term of
the ELBO by 0.5 (exp(log_var + d) - exp(log_var) - d) per dimension, whatever the mean is.
Both statistics below are therefore well conditioned at any log-variance. Pure numpy.

Measured (500-1000 held-out digits, `small` trained 1, 8 and 14 epochs): TFLite int8 with its
float head moves each image's KL term by 0.007-0.02 nats on average, int8-io (TANH's fixed
step) by 0.03-0.05 nats; the largest posterior std error was 1-8 % (max over all images and
dimensions, so one outlier sets it). A tolerance on `kl_change_nats` of 0.1 nats/image judges
z_log_var by what it does to the ELBO; `std_ratio_error` says how far the worst posterior moved.
"""

import numpy as np


def std_ratio_error(reference_log_var: np.ndarray, log_var: np.ndarray) -> float:
    """max |exp(log_var / 2) / exp(reference_log_var / 2) - 1|: the largest relative error of a posterior
    standard deviation, over every image and latent dimension."""
    reference, actual = _checked(reference_log_var, log_var)
    return float(np.max(np.abs(np.expm1(0.5 * (actual - reference))))) if reference.size else 0.0


def kl_change_nats(reference_log_var: np.ndarray, log_var: np.ndarray) -> float:
    """Mean over images of |KL(q || p) - KL(q_ref || p)| (nats/image, summed over latent dimensions) when only the
    log-variances differ: what the log-variance error alone does to each image's ELBO through its KL term."""
    reference, actual = _checked(reference_log_var, log_var)
    if not reference.size:
        return 0.0
    change = 0.5 * (np.exp(actual) - np.exp(reference) - (actual - reference))
    return float(np.mean(np.abs(change.reshape(len(change), -1).sum(axis=1))))


def _checked(reference_log_var, log_var) -> tuple[np.ndarray, np.ndarray]:
    reference, actual = np.asarray(reference_log_var, np.float64), np.asarray(log_var, np.float64)
    if reference.shape != actual.shape:
        raise ValueError(f"log-variances of shape {actual.shape} cannot be judged against {reference.shape}")
    return reference, actual
