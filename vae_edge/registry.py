"""The toolkit's vocabulary, defined once: export formats, quantization modes, engines, graphs
and training choices, with everything the rest of the package needs to know about each.

Importable without TensorFlow, Keras or any engine. The CLI's choices, export planning and
dispatch, the runtime's backends, verification tolerances, bench ordering and colours and
the tests' parametrization all read these tables. Adding an export target is one converter
module under `vae_edge/export/` (it registers itself with `register_converter`), one
engine in `vae_edge/runtime/engines.py` if the format is new, and one entry here.
"""

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum


class Format(StrEnum):
    SAVEDMODEL = "savedmodel"
    TFLITE = "tflite"
    ONNX = "onnx"
    ORT = "ort"  # onnxruntime's mobile format, converted from the ONNX file of the same target


class Mode(StrEnum):
    FLOAT32 = "float32"
    FLOAT16 = "float16"
    DYNAMIC = "dynamic"  # dynamic-range: int8 weights, float activations
    INT8 = "int8"  # full integer inside, float input and output
    INT8_IO = "int8-io"  # full integer, int8 input and output too


class Engine(StrEnum):
    LITERT = "litert"
    ONNXRUNTIME = "onnxruntime"
    TENSORFLOW = "tensorflow"


class Graph(StrEnum):
    ENCODER = "encoder"
    DECODER = "decoder"


class Precision(StrEnum):
    FLOAT32 = "float32"
    MIXED_FLOAT16 = "mixed_float16"
    MIXED_BFLOAT16 = "mixed_bfloat16"


class Annealing(StrEnum):
    NONE = "none"
    LINEAR = "linear"
    CYCLICAL = "cyclical"


class ReconstructionLoss(StrEnum):
    BCE = "bce"  # Bernoulli likelihood of [0, 1] pixels: the decoder outputs probabilities
    MSE = "mse"  # Gaussian likelihood of fixed variance: the decoder outputs the mean


class Likelihood(StrEnum):
    """A model's likelihood as a user names it (`vae-edge export --likelihood`); the manifest and the
    scoring code use the `ReconstructionLoss` it maps to."""

    BERNOULLI = "bernoulli"
    GAUSSIAN = "gaussian"


LIKELIHOOD_LOSSES = {Likelihood.BERNOULLI: ReconstructionLoss.BCE, Likelihood.GAUSSIAN: ReconstructionLoss.MSE}


class DecoderOutput(StrEnum):
    """What a decoder's output is: probabilities (it ends in a sigmoid) or logits (the export adds the sigmoid)."""

    PROBABILITIES = "probabilities"
    LOGITS = "logits"


class LatentRole(StrEnum):
    """What each output of an encoder is; an encoder returns the first two, and optionally a sampled z."""

    MEAN = "mean"
    LOG_VAR = "log_var"
    SAMPLE = "sample"


class SourceKind(StrEnum):
    """Where the Keras graphs of a bundle came from, so verification and benchmarks can load them again."""

    VAE_EDGE = "vae-edge"  # a .keras written by `vae-edge train`
    SUBMODELS = "submodels"  # one .keras whose model exposes `encoder` and `decoder` sub-models
    ENCODER_DECODER = "encoder-decoder"  # two .keras files
    IN_MEMORY = "in-memory"  # Keras models handed over in Python: nothing to load again


class DecoderLayout(StrEnum):
    """Where the decoder's residual blocks run (`vae_edge.model.networks.build_decoder`)."""

    MIRROR = "mirror"  # at the encoder's scales; full resolution holds only the output conv
    FULL_RESOLUTION = "full-resolution"  # after every upsampling: the earlier layout, of files saved without the key


# The pip extra that brings each optional top-level module, for one-line "install vae-edge[X]" errors;
# a hint names extras in this order.
EXTRAS_OF_MODULES = {
    "keras": "train", "tf2onnx": "train", "onnx": "train", "sympy": "train", "mlxtend": "train", "matplotlib": "train",
    "tensorflow": "cpu", "ai_edge_litert": "litert", "flatbuffers": "litert", "onnxruntime": "onnx", "jax": "jax",
    "torch": "torch",
}
# The extra a module is of no use without: Keras needs a backend (TensorFlow's by default) and so
# does the TensorFlow-to-ONNX converter; a backend serves through Keras and the converters. A hint
# also names that extra if a module of it is missing, so one install gets the command going, not
# one install per retry (`vae-edge[train,cpu]`).
COMPANION_EXTRAS = {"keras": "cpu", "tf2onnx": "cpu", "tensorflow": "train", "jax": "train", "torch": "train"}
# PyPI's Linux torch wheel needs CUDA's several GB, so the hint also names PyTorch's CPU build.
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"


def _installed(module: str) -> bool:
    """Whether a top-level module can be imported, without importing it or asking import hooks."""
    import importlib.machinery
    import sys

    if module in sys.modules:
        return sys.modules[module] is not None
    return importlib.machinery.PathFinder.find_spec(module) is not None


def install_hint(module: str) -> str | None:
    """The command that installs `module` and the companion it needs (None for a module no extra provides)."""
    extra = EXTRAS_OF_MODULES.get(module)
    if extra is None:
        return None
    companion = COMPANION_EXTRAS.get(module)
    missing = companion and not all(_installed(name) for name, of in EXTRAS_OF_MODULES.items() if of == companion)
    order = list(dict.fromkeys(EXTRAS_OF_MODULES.values()))
    extras = sorted({extra, companion} if missing else {extra}, key=order.index)
    hint = f"pip install 'vae-edge[{','.join(extras)}]'"
    if module == "torch":
        first = f"pip install 'vae-edge[{companion}]' && " if missing else ""
        hint += f" (with CUDA), or for the CPU build: {first}pip install torch --index-url {TORCH_CPU_INDEX}"
    return hint


def names(*groups) -> list[str]:
    """The plain string names of enum members (and strings), e.g. for `click.Choice`, which would
    otherwise list an Enum by its member names."""
    return [str(item) for group in groups for item in group]


@dataclass(frozen=True)
class EngineInfo:
    module: str  # what must be importable to run it


ENGINES: dict[Engine, EngineInfo] = {
    Engine.LITERT: EngineInfo("ai_edge_litert"),
    Engine.ONNXRUNTIME: EngineInfo("onnxruntime"),
    Engine.TENSORFLOW: EngineInfo("tensorflow"),
}


@dataclass(frozen=True)
class ModeInfo:
    integer: bool  # judged in the model's own terms (PSNR, posterior, ELBO cost), not element by element
    calibrated: bool  # full-integer: activation ranges come from real calibration inputs
    tolerance: dict[str, float]  # default verification tolerance
    logits_out: bool = False  # integer output: a decoder that ends in a sigmoid returns its logits instead


# z_log_var by its effect on the ELBO (nats/image through the KL term), not by cosine, which is ill-conditioned
# for log-variances near 0: measured 0.007-0.05 nats on trained and barely trained models (verify/posterior.py).
_INTEGER_TOLERANCE = {"min_psnr_db": 30.0, "min_cosine": 0.99, "max_kl_change_nats": 0.1, "max_elbo_increase_pct": 2.0}
MODES: dict[Mode, ModeInfo] = {
    Mode.FLOAT32: ModeInfo(False, False, {"max_abs": 1e-4}),
    Mode.FLOAT16: ModeInfo(False, False, {"max_abs": 1e-2}),
    Mode.DYNAMIC: ModeInfo(True, False, _INTEGER_TOLERANCE),
    Mode.INT8: ModeInfo(True, True, _INTEGER_TOLERANCE),
    Mode.INT8_IO: ModeInfo(True, True, _INTEGER_TOLERANCE, logits_out=True),
}


@dataclass(frozen=True)
class FormatInfo:
    modes: tuple[Mode, ...]  # in the order tables list them
    engine: Engine  # what opens its files
    suffix: str  # of its files; "" for a folder holding every graph
    color: str  # in bench pictures
    runtime: bool  # EdgeVAE can run it (no TensorFlow on the device)
    fixed_shape: bool  # also written with every dimension fixed, for mobile accelerators
    metadata: bool = False  # the vae_edge fields are embedded in each file (an .ort inherits its .onnx file's)
    requires: "Format | None" = None  # converted from this format's file of the same target, so exported with it

    @property
    def folder(self) -> bool:
        return not self.suffix


FORMATS: dict[Format, FormatInfo] = {
    Format.SAVEDMODEL: FormatInfo((Mode.FLOAT32,), Engine.TENSORFLOW, "", "tab:orange", runtime=False, fixed_shape=False),
    Format.TFLITE: FormatInfo(
        (Mode.FLOAT32, Mode.FLOAT16, Mode.DYNAMIC, Mode.INT8, Mode.INT8_IO), Engine.LITERT, ".tflite", "tab:blue",
        runtime=True, fixed_shape=True, metadata=True,
    ),
    Format.ONNX: FormatInfo(
        (Mode.FLOAT32, Mode.INT8), Engine.ONNXRUNTIME, ".onnx", "tab:green", runtime=True, fixed_shape=True, metadata=True,
    ),
    Format.ORT: FormatInfo(
        (Mode.FLOAT32, Mode.INT8), Engine.ONNXRUNTIME, ".ort", "tab:olive", runtime=True, fixed_shape=True, requires=Format.ONNX,
    ),
}


class App(StrEnum):
    """What the export writes from a whole bundle rather than per graph."""

    WEB = "web"


@dataclass(frozen=True)
class AppInfo:
    requires: Format  # the format whose files the app runs (exported along with it)
    folder: str  # inside the bundle


APPS: dict[App, AppInfo] = {App.WEB: AppInfo(Format.ONNX, "web")}
ALL = "all"  # the CLI's word for every format and app

# Bench subjects that are not bundle formats: the Keras model, eager or traced.
KERAS = "keras"
KERAS_MODES = ("eager", "tf.function")
KERAS_COLOR = "tab:gray"
PIPELINE = "e2e"  # the encoder then the decoder of one format and mode, as a bench subject
BENCH_JSON = "bench.json"  # in the bundle: what `vae-edge bench` measured (the runtime reads it to pick its mode)


@dataclass(frozen=True)
class Target:
    """One export target: a format in one mode, with a dynamic batch or every dimension fixed
    (`batch`), which mobile accelerators need. Every graph of the model is written for it."""

    format: Format
    mode: Mode
    batch: int | None = None

    @property
    def key(self) -> str:
        """`tflite/int8`, or `tflite/int8@b1` for the fixed-shape variant with batch 1."""
        return f"{self.format}/{self.mode}{self._shape}"

    def artifact_key(self, graph: str) -> str:
        """`tflite/decoder/int8`, `tflite/decoder/int8@b1`."""
        return f"{self.format}/{graph}/{self.mode}{self._shape}"

    @property
    def _shape(self) -> str:
        return "" if self.batch is None else f"@b{self.batch}"


DEFAULT_STATIC_BATCH = 1  # the fixed-shape variants' batch unless `--static-batch` says otherwise
MAX_STATIC_BATCH = 256  # phones run batch 1 to a few dozen; larger fixed batches only cost memory at export


def targets(static_batch: int | None = DEFAULT_STATIC_BATCH) -> tuple[Target, ...]:
    """Every target in table order; fixed-shape variants (with `static_batch`) after each dynamic one."""
    batches = (None,) if static_batch is None else (None, static_batch)
    return tuple(
        Target(fmt, mode, batch)
        for fmt, info in FORMATS.items()
        for mode in info.modes
        for batch in batches
        if batch is None or info.fixed_shape
    )

RUNTIME_FORMATS: tuple[Format, ...] = tuple(fmt for fmt, info in FORMATS.items() if info.runtime)


def artifact_path(target: Target, graph: str) -> str:
    """Where an artifact lives in a bundle: `tflite/decoder.int8.tflite`, `tflite/decoder.int8.b1.tflite`;
    a folder format holds every graph in one folder named after it."""
    info = FORMATS[target.format]
    if info.folder:
        return str(target.format)
    batch = "" if target.batch is None else f".b{target.batch}"
    return f"{target.format}/{graph}.{target.mode}{batch}{info.suffix}"


def format_of_suffix(suffix: str) -> Format | None:
    """The format whose files end in `suffix` (".tflite"), or None."""
    return next((fmt for fmt, info in FORMATS.items() if info.suffix and info.suffix == suffix), None)


# A converter writes one target's file for one graph; see vae_edge/export/job.py for its argument.
# An app writer gets the finished (verified) bundle folder and the app's folder inside it.
Converter = Callable[..., object]
CONVERTERS: dict[Format, Converter] = {}
APP_WRITERS: dict[App, Converter] = {}
WRITER_MODULES = {**{fmt: f"vae_edge.export.{fmt}" for fmt in Format}, App.WEB: "vae_edge.web.app"}  # each registers on import


def register_converter(fmt: Format) -> Callable[[Converter], Converter]:
    """Decorator a converter module uses to claim its format."""

    def register(function: Converter) -> Converter:
        CONVERTERS[fmt] = function
        return function

    return register


def register_app(app: App) -> Callable[[Converter], Converter]:
    """Decorator an app module uses to claim its app."""

    def register(function: Converter) -> Converter:
        APP_WRITERS[app] = function
        return function

    return register
