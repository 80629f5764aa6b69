"""`EdgeVAE`: an export bundle as a VAE an app can use, with numpy and one inference engine.

This is the reference the Kotlin and Swift apps mirror, so it stays plain: every input is
checked here, before it reaches an engine, and fails with a `BadInputError` that names what
was expected. Images are float arrays in [0, 1] or uint8 pixels 0..255, channels last.
"""

from __future__ import annotations

import json
import math
import numbers
import warnings
from collections.abc import Sequence

import numpy as np

from vae_edge.bundle import Bundle, cells_of
from vae_edge.cpu import CpuClass, cpu_class, cpu_identity
from vae_edge.elbo import anomaly_scores
from vae_edge.errors import BadInputError
from vae_edge.labels import Label, label_feed, labels_for
from vae_edge.prior import SEED_LIMIT, prior_latents
from vae_edge.quantization import saturates
from vae_edge.registry import BENCH_JSON, FORMATS, MODES, PIPELINE, RUNTIME_FORMATS, Format, Graph, Mode, Target
from vae_edge.runtime.engines import InferenceEngine, installed, open_artifact, require
from vae_edge.signatures import IMAGE, RECONSTRUCTION, Z_LOG_VAR, Z_MEAN, Z

INTERPOLATIONS = ("linear", "slerp")
MAX_RESULT_BYTES = 2 * 2**30  # one call's images in memory; more is refused before anything is allocated
MAX_TEMPERATURE = 100.0  # the prior's std times this: far beyond any code a decoder was trained on


class UnverifiedModeWarning(UserWarning):
    """A mode asked for by name runs although it was not verified for the CPU at hand."""


def default_backend(bundle: Bundle) -> Format:
    """The first runtime format (LiteRT: what phones run) that is installed and in the bundle, else onnxruntime."""
    exported = {target.format for target in bundle.targets()}
    for fmt in RUNTIME_FORMATS:
        if fmt in exported and installed(FORMATS[fmt].engine):
            return fmt
    return Format.ONNX


def default_mode(bundle: Bundle, backend: Format, here: CpuClass | None = None) -> Mode:
    """The mode of `backend` to run when none is asked for: one verified for this CPU (`verified_here`).

    The fastest of them end to end at batch 1, where the bundle's `bench.json` was measured on this
    CPU (same model and vector extensions: int8 pays off with VNNI and not without); otherwise the
    most compact, ties to the mode listed first in the registry. A bundle exported without
    verification runs float32 where it has it; one whose every mode failed here is refused.
    Decided from files, not by timing at load, so the same bundle always gives the same images.
    """
    here = here or cpu_class()
    modes = FORMATS[backend].modes
    candidates = [t for t in bundle.targets() if t.format == backend and t.batch is None]
    if "verification" not in bundle.manifest:  # exported with --no-verify: float32 if it has it
        exported = {t.mode for t in candidates}
        return next((m for m in (Mode.FLOAT32, *modes) if m in exported), Mode.FLOAT32)
    verified = [t for t in candidates if verified_here(bundle, t, here)]
    if not verified:
        raise BadInputError(f"{bundle.folder}: no {backend} mode passed verification for this CPU ({here}); see its "
                            "verify.md, or pass --mode to run one anyway")
    latency = measured_latency(bundle)
    timed = [t for t in verified if t.key in latency]
    if timed:
        return min(timed, key=lambda t: (latency[t.key], modes.index(t.mode))).mode
    sizes = {t.mode: sum(a.size_bytes for a in bundle.pipeline(t).values()) for t in verified}
    return min(sizes, key=lambda m: (sizes[m], modes.index(m)))


def verified_here(bundle: Bundle, target: Target, here: CpuClass) -> bool:
    """Whether `target` passed verification for a CPU of class `here`: its verdict on a CPU of that class
    where it was verified on one (the exporting machine, or an emulated CPU: `vae-edge verify --cpu`), else
    the exporting machine's verdict, unless its integer kernels are known to differ on `here` (ONNX int8
    files made for VNNI saturate on AVX2)."""
    verification = bundle.manifest.get("verification", {})
    for record in (verification, *verification.get("cpus", {}).values()):
        if record.get("cpu_class") == here and target.key in record.get("pipelines", {}):
            return bool(record["pipelines"][target.key]["passed"])
    return bundle.verified(target) and not quantized_for_another_cpu(bundle, target, here)


def quantized_for_another_cpu(bundle: Bundle, target: Target, here: CpuClass) -> bool:
    """Whether the target's integer files were quantized for a CPU class whose kernels `here` lacks (ONNX
    int8 for VNNI, run on AVX2): they run, less accurately than verified, so they are not a default."""
    recorded = bundle.manifest.get("quantization", {}).get("onnx_int8")
    onnx_family = target.format == Format.ONNX or FORMATS[target.format].requires == Format.ONNX
    return bool(recorded) and onnx_family and MODES[target.mode].calibrated and saturates(recorded["settings"], here)


def measured_latency(bundle: Bundle) -> dict[str, float]:
    """p50 ms end to end at batch 1 per target key, from the bundle's bench.json when it was measured on
    this CPU class (at its highest thread count); {} otherwise."""
    path = bundle.folder / BENCH_JSON
    try:
        report = json.loads(path.read_text())
        machine = report["machine"]
        if {key: machine[key] for key in ("cpu", "vector_extensions")} != cpu_identity():
            return {}
        cells = [c for c in cells_of(report) if c.graph == PIPELINE and c.batch == 1]
    except (OSError, ValueError, KeyError, TypeError):
        return {}
    most = max((c.threads for c in cells), default=None)
    return {c.key.replace(f"/{PIPELINE}/", "/"): c.p50_ms for c in cells if c.threads == most}


class EdgeVAE:
    """Sample, encode, decode, reconstruct, interpolate and score images with an exported VAE.

    Load with `EdgeVAE.load(folder)`. Methods take and return numpy arrays, accept any
    batch size, and may be called from many threads at once. `threshold` is the anomaly
    score above which an image counts as an anomaly (the 99th percentile of the held-out
    images' scores at export).

    A conditional bundle (`class_names` not empty) needs a class with every call: `label=`
    (an index or a name) for all rows, or `labels=` with one per row.
    """

    def __init__(self, bundle: Bundle, backend: Format, mode: Mode, engines: dict[Graph, list[InferenceEngine]]):
        self.bundle, self.backend, self.mode = bundle, backend, mode
        self.engines = engines  # per graph: the dynamic-batch engine and/or fixed-shape ones
        model = bundle.model
        self.input_shape = tuple(int(d) for d in model["input_shape"])
        self.latent_dim = int(model["latent_dim"])
        self.reconstruction_loss = model["reconstruction_loss"]
        self.class_names: tuple[str, ...] = tuple(model.get("class_names") or ())
        # This pipeline's own threshold where verification measured one: quantized scores shift a little.
        target = Target(backend, mode)
        pipeline = bundle.manifest.get("verification", {}).get("pipelines", {}).get(target.key, {})
        self.threshold = float(pipeline.get("anomaly_threshold", bundle.manifest["anomaly"]["threshold"]))

    @classmethod
    def load(cls, folder, backend: str | None = None, mode: str | None = None, num_threads: int | None = None) -> EdgeVAE:
        """Open a bundle's graphs, each checked against the manifest's sha256.

        Without `backend`, LiteRT if installed else onnxruntime; without `mode`, the fastest (or most
        compact) mode verified for this CPU (`default_mode`). An explicit mode that was not verified for
        this CPU still runs, with an `UnverifiedModeWarning` that says so. Fixed-shape variants of the
        mode are opened too and run the batches they fit.
        """
        bundle = Bundle(folder)
        backend = backend or default_backend(bundle)
        if backend not in RUNTIME_FORMATS:
            raise BadInputError(f"unknown backend {backend!r}; choose one of {', '.join(RUNTIME_FORMATS)}")
        backend = Format(backend)
        require(FORMATS[backend].engine)
        if num_threads is not None and (not _is_int(num_threads) or num_threads < 1):
            raise BadInputError(f"num_threads must be a positive integer or None, got {num_threads!r}")
        mode = mode or default_mode(bundle, backend)
        if mode not in FORMATS[backend].modes:
            raise BadInputError(f"unknown {backend} mode {mode!r}; choose one of {', '.join(FORMATS[backend].modes)}")
        mode = Mode(mode)
        targets = [t for t in bundle.targets() if (t.format, t.mode) == (backend, mode)]
        if not targets:
            bundle.find(Target(backend, mode), Graph.ENCODER)  # raises, naming what the bundle has
        here = cpu_class()
        if "verification" in bundle.manifest and not verified_here(bundle, Target(backend, mode), here):
            warnings.warn(f"{backend}/{mode} of {bundle.folder} was not verified for this CPU ({here}); its results may "
                          "differ from the Keras model's by more than verify.md says", UnverifiedModeWarning, stacklevel=2)
        engines = {graph: [open_artifact(bundle, bundle.find(t, graph), num_threads) for t in targets] for graph in Graph}
        return cls(bundle, backend, mode, engines)

    def __repr__(self) -> str:
        return f"EdgeVAE({str(self.bundle.folder)!r}, backend={str(self.backend)!r}, mode={str(self.mode)!r})"

    def sample(self, n: int, seed: int | None = None, temperature: float = 1.0, *, label: Label | None = None,
               labels: Sequence[Label] | None = None) -> np.ndarray:
        """`n` new images from z ~ N(0, temperature² I), drawn with the portable prior (`vae_edge.prior`):
        a seed gives the same z here, in Keras' `VAE.sample`, in the web app and in any app's port."""
        n = self._check_count(n, "n")
        if seed is not None and (not _is_int(seed) or not 0 <= seed < SEED_LIMIT):
            raise BadInputError(f"seed must be None or an integer in [0, 2^32), got {seed!r}")
        if (not isinstance(temperature, numbers.Real) or isinstance(temperature, bool)
                or not 0 <= temperature <= MAX_TEMPERATURE):
            raise BadInputError(f"temperature must be a number from 0 to {MAX_TEMPERATURE:g} (1 is the prior), "
                                f"got {temperature!r}")
        classes = self._labels(n, label, labels)
        return self._decode(prior_latents(n, self.latent_dim, seed, float(temperature)), classes)

    def decode(self, z, *, label: Label | None = None, labels: Sequence[Label] | None = None) -> np.ndarray:
        """Latent vectors (N, latent_dim) -> images (N, H, W, C) float32 in [0, 1]."""
        z = self.check_latents(z)
        return self._decode(z, self._labels(len(z), label, labels))

    def encode(self, x, *, label: Label | None = None, labels: Sequence[Label] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Images -> (z_mean, z_log_var), each float32 (N, latent_dim)."""
        x = self.check_images(x)
        return self._encode(x, self._labels(len(x), label, labels))

    def reconstruct(self, x, *, label: Label | None = None, labels: Sequence[Label] | None = None) -> np.ndarray:
        """Images -> their reconstructions, decoded from the posterior mean (deterministic)."""
        x = self.check_images(x)
        classes = self._labels(len(x), label, labels)
        return self._decode(self._encode(x, classes)[0], classes)

    def interpolate(self, x_a, x_b, steps: int = 8, method: str = "linear", *, label: Label | None = None) -> np.ndarray:
        """`steps` images morphing from `x_a` to `x_b` (both ends included) through latent space.

        "slerp" follows the great circle between the two codes, which keeps intermediate codes
        at the norm the prior expects; "linear" is the straight line.
        """
        steps = self._check_count(steps, "steps")
        if steps < 2:
            raise BadInputError(f"steps must be at least 2 (the two ends), got {steps}")
        if method not in INTERPOLATIONS:
            raise BadInputError(f"unknown interpolation {method!r}; choose one of {', '.join(INTERPOLATIONS)}")
        ends = np.concatenate([self._single_image(x_a, "x_a"), self._single_image(x_b, "x_b")])
        classes = self._labels(2, label)
        z_a, z_b = self._encode(ends, classes)[0].astype(np.float64)
        t = np.linspace(0.0, 1.0, steps)[:, np.newaxis]
        omega = np.arccos(np.clip(np.dot(z_a, z_b) / (np.linalg.norm(z_a) * np.linalg.norm(z_b) + 1e-12), -1.0, 1.0))
        if method == "slerp" and np.sin(omega) > 1e-6:
            z = (np.sin((1 - t) * omega) * z_a + np.sin(t * omega) * z_b) / np.sin(omega)
        else:  # linear, or slerp between (anti)parallel codes where it is undefined
            z = (1 - t) * z_a + t * z_b
        return self._decode(z.astype(np.float32), None if classes is None else classes[:1].repeat(steps))

    def anomaly_score(self, x, *, label: Label | None = None, labels: Sequence[Label] | None = None) -> np.ndarray:
        """Negative ELBO per image (nats) with the decoder at the posterior mean: higher is stranger."""
        x = self.check_images(x)
        classes = self._labels(len(x), label, labels)
        z_mean, z_log_var = self._encode(x, classes)
        return anomaly_scores(x, z_mean, z_log_var, self._decode(z_mean, classes), self.reconstruction_loss)

    def is_anomaly(self, x, *, label: Label | None = None, labels: Sequence[Label] | None = None) -> np.ndarray:
        """True per image whose anomaly score is above the bundle's `threshold`."""
        return self.anomaly_score(x, label=label, labels=labels) > self.threshold

    def _labels(self, count: int, label: Label | None = None, labels: Sequence[Label] | None = None) -> np.ndarray | None:
        """The class index of each of `count` rows (None for an unconditional bundle), checked."""
        return labels_for(count, self.class_names, label, labels)

    def check_images(self, x) -> np.ndarray:
        """Images as float32 (N, H, W, C) in [0, 1], or a BadInputError naming what was expected.

        Accepted: float arrays in [0, 1], or uint8 pixels 0..255. (N, H, W) is fine for
        one-channel models. A single image needs a batch axis: `x[None]`.
        """
        expected = f"images of shape (N, {', '.join(map(str, self.input_shape))})"
        x = _numeric(x, expected)
        if x.shape == self.input_shape:
            raise BadInputError(f"expected {expected}, got one image of shape {x.shape} without the batch axis; pass x[None]")
        given = x.shape
        if x.ndim == 3 and self.input_shape[-1] == 1:
            x = x[..., np.newaxis]
        if x.ndim != 4 or x.shape[1:] != self.input_shape:
            raise BadInputError(f"expected {expected}, got shape {given}")
        if len(x) == 0:
            raise BadInputError(f"expected {expected} with N >= 1, got an empty batch")
        if x.dtype == np.uint8:
            return x.astype(np.float32) / 255.0
        if not np.issubdtype(x.dtype, np.floating):
            raise BadInputError(f"expected float pixels in [0, 1] or uint8 pixels 0..255, got dtype {x.dtype}")
        _check_finite(x, "images")
        if x.min() < 0.0 or x.max() > 1.0:
            raise BadInputError(
                f"float pixels must be in [0, 1], found {x.min():.4g}..{x.max():.4g} "
                "(divide 0..255 pixels by 255, or pass them as uint8)"
            )
        return x.astype(np.float32)

    def check_latents(self, z) -> np.ndarray:
        """Latent vectors as float32 (N, latent_dim), or a BadInputError naming what was expected."""
        expected = f"latent vectors of shape (N, {self.latent_dim})"
        z = _numeric(z, expected)
        if z.ndim != 2 or z.shape[1] != self.latent_dim:
            raise BadInputError(f"expected {expected}, got shape {z.shape}")
        if len(z) == 0:
            raise BadInputError(f"expected {expected} with N >= 1, got an empty batch")
        _check_finite(z, "latent vectors")
        return z.astype(np.float32)

    def _check_count(self, count, name: str) -> int:
        """A positive number of images that fits in memory (`MAX_RESULT_BYTES`)."""
        count = _positive_int(count, name)
        per_image = 4 * math.prod(self.input_shape)
        if count * per_image > MAX_RESULT_BYTES:
            raise BadInputError(f"{name}={count} asks for {count * per_image / 2**30:.1f} GiB of images; "
                                f"ask for at most {MAX_RESULT_BYTES // per_image} per call and repeat")
        return count

    def _single_image(self, x, name: str) -> np.ndarray:
        x = _numeric(x, f"one image of shape ({', '.join(map(str, self.input_shape))})")
        if x.shape == self.input_shape or (self.input_shape[-1] == 1 and x.shape == self.input_shape[:2]):
            x = x[np.newaxis]
        x = self.check_images(x)
        if len(x) != 1:
            raise BadInputError(f"{name}: expected one image, got a batch of {len(x)}")
        return x

    def _run(self, graph: Graph, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """On a fixed-shape engine when the batch is a multiple of its batch, else on the dynamic one."""
        rows = len(next(iter(feeds.values())))
        engines = self.engines[graph]
        fixed = [e for e in engines if e.batch and rows % e.batch == 0]
        engine = fixed[0] if fixed else next((e for e in engines if e.batch is None), engines[0])
        return engine.run(feeds)

    def _with_label(self, feeds: dict[str, np.ndarray], classes: np.ndarray | None) -> dict[str, np.ndarray]:
        return {**feeds, **label_feed(classes, len(self.class_names))}

    def _encode(self, x: np.ndarray, classes: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        out = self._run(Graph.ENCODER, self._with_label({IMAGE: x}, classes))
        return out[Z_MEAN], out[Z_LOG_VAR]

    def _decode(self, z: np.ndarray, classes: np.ndarray | None = None) -> np.ndarray:
        images = self._run(Graph.DECODER, self._with_label({Z: z}, classes))[RECONSTRUCTION]
        if not np.all(np.isfinite(images)):
            raise BadInputError(f"the decoder returned NaN or Inf for latents up to {np.abs(z).max():.3g} in size, far "
                                "outside the prior N(0, I) it was trained on; keep z (or the temperature) near 1")
        return images


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _positive_int(value, name: str) -> int:
    if not _is_int(value) or value <= 0:
        raise BadInputError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _numeric(array, expected: str) -> np.ndarray:
    try:
        array = np.asarray(array)
    except (ValueError, TypeError) as error:  # ragged nested lists
        raise BadInputError(f"expected {expected} as a numeric array ({error})") from None
    if array.dtype == np.bool_ or not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
        raise BadInputError(f"expected {expected} as a real-valued numeric array, got dtype {array.dtype}")
    return array


def _check_finite(array: np.ndarray, what: str) -> None:
    if not np.all(np.isfinite(array)):
        raise BadInputError(f"{what} contain NaN or Inf values")
