"""Tolerances per mode (defaults from the registry), and how one output is judged against them.

Float modes must match the Keras model element by element (max absolute error). Integer
modes cannot, so they are judged in the model's own terms: PSNR of images against the
Keras output, cosine similarity of latent means, how much the log-variances change each
image's KL term, and how much the test ELBO gets worse.
"""

import math

from vae_edge.elbo import MAX_PSNR_DB
from vae_edge.errors import BadInputError
from vae_edge.registry import MODES
from vae_edge.verify.results import ErrorStats

# What each tolerance can be: a bound outside these can never be met, or always is.
RANGES = {"max_abs": (0.0, math.inf), "min_psnr_db": (0.0, MAX_PSNR_DB), "min_cosine": (-1.0, 1.0),
          "max_kl_change_nats": (0.0, math.inf), "max_elbo_increase_pct": (0.0, math.inf)}


def resolve(overrides: dict | None) -> dict[str, dict[str, float]]:
    """Defaults updated by `{"mode": {"key": value}}` or `{"mode.key": value}` overrides."""
    tolerances = {str(mode): dict(info.tolerance) for mode, info in MODES.items()}
    for key, value in (overrides or {}).items():
        if isinstance(value, dict):
            items = [(key, k, v) for k, v in value.items()]
        else:
            mode, _, name = key.partition(".")
            items = [(mode, name, value)]
        for mode, name, number in items:
            if mode not in tolerances or name not in tolerances[mode]:
                valid = ", ".join(f"{m}.{k}" for m, ks in tolerances.items() for k in ks)
                raise BadInputError(f"unknown tolerance {mode}.{name}; choose from {valid}")
            low, high = RANGES[name]
            if not (isinstance(number, (int, float)) and math.isfinite(number) and low <= number <= high):
                raise BadInputError(f"tolerance {mode}.{name} must be a finite number from {low:g} to {high:g}, "
                                    f"got {number!r}")
            tolerances[mode][name] = float(number)
    return tolerances


def judge(stats: ErrorStats, tolerance: dict) -> tuple[bool, str]:
    """(passed, the criterion as text) for one output's statistics."""
    if not stats.shape_ok:
        return False, f"shape {stats.actual_shape} != {stats.reference_shape}"
    if "max_abs" in tolerance:
        return stats.max_abs <= tolerance["max_abs"], f"max_abs <= {tolerance['max_abs']:g}"
    if stats.psnr_db is not None:
        return stats.psnr_db >= tolerance["min_psnr_db"], f"PSNR >= {tolerance['min_psnr_db']:g} dB"
    if stats.kl_change_nats is not None:
        limit = tolerance["max_kl_change_nats"]
        return stats.kl_change_nats <= limit, f"KL change <= {limit:g} nats"
    return stats.cosine >= tolerance["min_cosine"], f"cosine >= {tolerance['min_cosine']:g}"


def judge_elbo(increase_pct: float, tolerance: dict) -> tuple[bool, str]:
    limit = tolerance.get("max_elbo_increase_pct")
    if limit is None:
        return True, "-"
    return increase_pct <= limit, f"ELBO cost <= {limit:g}%"
