"""The portable seeded prior: the same z ~ N(0, I) for the same seed in any language.

numpy's PCG64 and ziggurat normals cannot be reproduced by an app without numpy, so the
runtime, Keras' `VAE.sample` and the web app all draw z with this small generator, whose
every step is an operation on 32-bit unsigned integers or an IEEE-754 double
(`ALGORITHM` below, also printed in each bundle's README).

`seed` is an integer in [0, 2^32); `k` counts uniforms from 0 (so at most 2^31 normals a
seed). Any language with 32-bit integer arithmetic and double-precision `log`, `sqrt`,
`cos` and `sin` reproduces it: JavaScript with `Math.imul` and `>>> 0`, Kotlin with `Int`
and `ushr`, Swift with `&*` on `UInt32`. Different C libraries may round `log`/`cos` one
double ulp apart, so ports agree with this reference to float32 rounding (|diff| <= 1e-6).
`reference_vectors()` below lets a port test itself.
"""

import secrets

import numpy as np

ALGORITHM = """\
    mix32(x):  x ^= x >> 16;  x = (x * 0x7FEB352D) mod 2^32
               x ^= x >> 15;  x = (x * 0x846CA68B) mod 2^32
               x ^= x >> 16;  return x
    bits(seed, k) = mix32(mix32(seed) ^ mix32((k + 0x9E3779B9) mod 2^32))
    uniform(seed, k) = ((bits(seed, k) >> 8) + 0.5) / 2^24          # in (0, 1), exact in float32
    for pair p = 0, 1, 2, ...:
        u1 = uniform(seed, 2p),  u2 = uniform(seed, 2p + 1)
        r = sqrt(-2 ln u1)                                          # in double precision
        normal[2p] = r cos(2 pi u2),  normal[2p + 1] = r sin(2 pi u2)   # Box-Muller
    z[n, d] = float32(normal[n * latent_dim + d] * temperature)     # row-major, product in double"""
SEED_LIMIT = 2**32
_GOLDEN = 0x9E3779B9
_M1, _M2 = 0x7FEB352D, 0x846CA68B


def _mix32(x: np.ndarray) -> np.ndarray:
    """The lowbias32 integer hash (Chris Wellons), on uint32 arrays (multiplication wraps mod 2^32)."""
    x = x ^ (x >> np.uint32(16))
    x = x * np.uint32(_M1)
    x = x ^ (x >> np.uint32(15))
    x = x * np.uint32(_M2)
    return x ^ (x >> np.uint32(16))


def uniforms(seed: int, count: int) -> np.ndarray:
    """The first `count` uniforms in (0, 1) of `seed`, as float64 (each exact in float32)."""
    check_seed(seed)
    with np.errstate(over="ignore"):
        key = _mix32(np.uint32(seed))
        counters = np.arange(count, dtype=np.uint32) + np.uint32(_GOLDEN)
        bits = _mix32(key ^ _mix32(counters))
    return ((bits >> np.uint32(8)).astype(np.float64) + 0.5) / 2.0**24


def standard_normals(seed: int, count: int) -> np.ndarray:
    """The first `count` N(0, 1) draws of `seed` (Box-Muller over consecutive uniform pairs), float64."""
    pairs = (count + 1) // 2
    u = uniforms(seed, 2 * pairs).reshape(pairs, 2)
    radius = np.sqrt(-2.0 * np.log(u[:, 0]))
    angle = 2.0 * np.pi * u[:, 1]
    return np.stack([radius * np.cos(angle), radius * np.sin(angle)], axis=1).reshape(-1)[:count]


def check_seed(seed) -> int:
    """`seed` as an int in [0, 2^32), or a ValueError naming the range."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < SEED_LIMIT:
        raise ValueError(f"seed must be an integer in [0, 2^32), got {seed!r}")
    return int(seed)


def random_seed() -> int:
    """A fresh seed from the OS, for `seed=None`."""
    return secrets.randbelow(SEED_LIMIT)


def prior_latents(num_samples: int, latent_dim: int, seed: int | None = None, temperature: float = 1.0) -> np.ndarray:
    """z ~ N(0, temperature² I) of shape (num_samples, latent_dim), float32, from the portable generator."""
    seed = random_seed() if seed is None else seed
    normals = standard_normals(seed, num_samples * latent_dim).reshape(num_samples, latent_dim)
    return (normals * float(temperature)).astype(np.float32)


# seed -> the first 8 values of z (latent_dim >= 8, temperature 1), as float32 printed with 9 digits.
REFERENCE_SEEDS = (0, 1, 42, 2**32 - 1)


def reference_vectors(count: int = 8) -> dict[int, list[float]]:
    """The vectors a port checks itself against (also printed in each bundle's README)."""
    return {seed: [float(f"{v:.9g}") for v in prior_latents(1, count, seed)[0]] for seed in REFERENCE_SEEDS}
