"""Error statistics of one output against its reference, in the spirit of Polygraphy's comparator."""

from enum import StrEnum

import numpy as np

from vae_edge.elbo import MAX_PSNR_DB, psnr
from vae_edge.signatures import RECONSTRUCTION, Z_LOG_VAR
from vae_edge.verify.posterior import kl_change_nats, std_ratio_error
from vae_edge.verify.results import ErrorStats


class OutputKind(StrEnum):
    """How an output is judged beside its absolute errors."""

    IMAGE = "image"  # PSNR
    LATENT = "latent"  # cosine similarity (z_mean)
    LOG_VAR = "log_var"  # what it does to the posterior: the KL change and the std error (see verify.posterior)


def kind_of(output: str) -> OutputKind:
    return {RECONSTRUCTION: OutputKind.IMAGE, Z_LOG_VAR: OutputKind.LOG_VAR}.get(output, OutputKind.LATENT)


def compare(reference: np.ndarray, actual: np.ndarray, kind: OutputKind) -> ErrorStats:
    """Absolute error statistics; PSNR for images, cosine similarity for latent means, and for log-variances
    the change of the KL term and of the posterior's standard deviation."""
    reference = np.asarray(reference, np.float64)
    actual = np.asarray(actual, np.float64)
    shapes = list(reference.shape), list(actual.shape)
    if reference.shape != actual.shape:
        return ErrorStats(False, *shapes)
    error = np.abs(actual - reference)
    stats = ErrorStats(True, *shapes, max_abs=float(error.max()), mean_abs=float(error.mean()),
                       p99_abs=float(np.quantile(error, 0.99)))
    if kind == OutputKind.IMAGE:
        stats.psnr_db = float(np.mean(np.minimum(psnr(reference, actual), MAX_PSNR_DB)))
    elif kind == OutputKind.LOG_VAR:
        stats.kl_change_nats, stats.std_ratio_error = kl_change_nats(reference, actual), std_ratio_error(reference, actual)
    else:
        dot = np.sum(reference * actual, axis=-1)
        norms = np.linalg.norm(reference, axis=-1) * np.linalg.norm(actual, axis=-1)
        stats.cosine = float(np.mean(dot / np.maximum(norms, 1e-12)))
    return stats
