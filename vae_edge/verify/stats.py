"""Error statistics of one output against its reference, in the spirit of Polygraphy's report."""

import numpy as np

from vae_edge.elbo import psnr


def compare(reference: np.ndarray, actual: np.ndarray, kind: str) -> dict:
    """Absolute and relative error statistics; PSNR for images, cosine similarity for latents.

    `min_atol` is the smallest absolute tolerance that would have passed (the max error).
    """
    reference = np.asarray(reference, np.float64)
    actual = np.asarray(actual, np.float64)
    if reference.shape != actual.shape:
        return {"shape_ok": False, "reference_shape": list(reference.shape), "actual_shape": list(actual.shape)}
    error = np.abs(actual - reference)
    stats = {
        "shape_ok": True,
        "max_abs": float(error.max()),
        "mean_abs": float(error.mean()),
        "median_abs": float(np.median(error)),
        "p99_abs": float(np.quantile(error, 0.99)),
        "max_rel": float(np.max(error / np.maximum(np.abs(reference), 1e-3))),
        "min_atol": float(error.max()),
    }
    if kind == "image":
        stats["psnr_db"] = float(np.mean(np.minimum(psnr(reference, actual), 200.0)))
    else:
        dot = np.sum(reference * actual, axis=-1)
        norms = np.linalg.norm(reference, axis=-1) * np.linalg.norm(actual, axis=-1)
        stats["cosine"] = float(np.mean(dot / np.maximum(norms, 1e-12)))
    return stats
