"""Error statistics of one output against its reference, in the spirit of Polygraphy's comparator."""

import numpy as np

from vae_edge.elbo import MAX_PSNR_DB, psnr
from vae_edge.verify.results import ErrorStats


def compare(reference: np.ndarray, actual: np.ndarray, kind: str) -> ErrorStats:
    """Absolute error statistics; PSNR for images (`kind` "image"), cosine similarity for latents."""
    reference = np.asarray(reference, np.float64)
    actual = np.asarray(actual, np.float64)
    shapes = list(reference.shape), list(actual.shape)
    if reference.shape != actual.shape:
        return ErrorStats(False, *shapes)
    error = np.abs(actual - reference)
    stats = ErrorStats(True, *shapes, max_abs=float(error.max()), mean_abs=float(error.mean()),
                       p99_abs=float(np.quantile(error, 0.99)))
    if kind == "image":
        stats.psnr_db = float(np.mean(np.minimum(psnr(reference, actual), MAX_PSNR_DB)))
    else:
        dot = np.sum(reference * actual, axis=-1)
        norms = np.linalg.norm(reference, axis=-1) * np.linalg.norm(actual, axis=-1)
        stats.cosine = float(np.mean(dot / np.maximum(norms, 1e-12)))
    return stats
