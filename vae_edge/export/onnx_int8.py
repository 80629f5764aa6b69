"""ONNX int8 quantization settings chosen for the CPU the model will run on, and the quantizer.

onnxruntime (MLAS) runs quantized convolutions and matrix products on x86 with one of three
integer kernels, picked by the signedness of activations (A) and weights (W):

- U8S8 on AVX2 / AVX-512 without VNNI: `VPMADDUBSW` multiplies uint8 by int8 and adds pairs
  into a saturating int16, so full-range 8-bit weights can overflow; `reduce_range` (7-bit
  weights) avoids it. With VNNI, `VPDPBUSD` accumulates in int32 and never saturates.
- U8U8: widens to int16 first (`VPMADDWD`): no saturation, about half the U8S8 throughput.
- S8S8 in QDQ form: on x86 the session's `QDQS8ToU8Transformer` shifts activations to uint8, so
  it saturates like full-range U8S8 (and here it left 4 of 7 convolutions in float); in
  QOperator form it hits slow generic kernels.
  On ARM (and x86 with AVX-VNNI-INT8) int8 x int8 dot products are native.

See onnxruntime's "Quantize ONNX models" guide (data type selection; reduce_range and
per-channel FAQ) and `onnxruntime_session_options_config_keys.h` (`session.x64quantprecision`).
`CANDIDATES` holds every combination measured by `benchmarks/onnx_int8_settings.py`;
`choose_settings` holds the conclusions.
"""

import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, fields
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from vae_edge.cpu import CPUINFO, flags
from vae_edge.errors import BadInputError, ExportError, MissingFileError, first_line
from vae_edge.logs import python_stdout_silenced

if TYPE_CHECKING:
    import onnx

AUTO = "auto"  # choose for the CPU of the machine that exports
COMPUTE_OPS = frozenset({"Conv", "ConvTranspose", "Gemm", "MatMul"})
Feed = Mapping[str, np.ndarray]  # one calibration batch: graph input name -> array
Feeds = Callable[[], Iterable[Feed]] | Iterable[Feed]


class QuantFormat(StrEnum):
    QDQ = "qdq"  # QuantizeLinear/DequantizeLinear pairs around float ops; the session fuses them
    QOPERATOR = "qoperator"  # QLinearConv, QLinearMatMul... written out explicitly


class IntType(StrEnum):
    UINT8 = "uint8"
    INT8 = "int8"


class Calibration(StrEnum):
    MINMAX = "minmax"
    ENTROPY = "entropy"
    PERCENTILE = "percentile"


class CpuClass(StrEnum):
    """What decides which integer kernels onnxruntime can use fast."""

    VNNI = "vnni"  # avx512_vnni or avx_vnni: VPDPBUSD, no saturation
    AVX512 = "avx512"  # avx512f without VNNI: VPMADDUBSW, saturates like AVX2
    AVX2 = "avx2"  # VPMADDUBSW
    OTHER = "other"  # ARM (dot-product instructions) or older x86


@dataclass(frozen=True)
class Settings:
    """One way to quantize: recorded in the manifest as `as_dict()`, rebuilt with `from_dict`."""

    format: QuantFormat = QuantFormat.QDQ
    activations: IntType = IntType.UINT8
    weights: IntType = IntType.INT8
    reduce_range: bool = False  # 7-bit weights, against VPMADDUBSW saturation
    per_channel: bool = True  # one weight scale per output channel
    calibration: Calibration = Calibration.MINMAX
    # The ops between the last Conv/Gemm/MatMul and each graph output (the decoder's Sigmoid) run in float:
    # a sigmoid quantized to 1/255 steps rounds dim pixels' probabilities to 0, which the Bernoulli likelihood
    # charges at -log(BCE_EPSILON) nats per pixel.
    float_head: bool = True

    @property
    def name(self) -> str:
        """Short label, e.g. `qdq-u8s8r-pc-minmax` (`-qhead` when the head is quantized too)."""
        short = {IntType.UINT8: "u8", IntType.INT8: "s8"}
        types = short[self.activations] + short[self.weights]
        parts = [self.format, types + ("r" if self.reduce_range else ""), "pc" if self.per_channel else "pt", self.calibration]
        return "-".join(parts + ([] if self.float_head else ["qhead"]))

    def as_dict(self) -> dict[str, str | bool]:
        """JSON-ready (enum members are strings)."""
        return {key: str(value) if isinstance(value, StrEnum) else value for key, value in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: Mapping) -> "Settings":
        """The inverse of `as_dict`; unknown keys or values are a BadInputError."""
        known = {field.name: field.type for field in fields(cls)}
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise BadInputError(f"unknown ONNX int8 setting(s) {unknown}; known: {sorted(known)}")
        try:
            values = {key: known[key](value) if isinstance(known[key], type) and issubclass(known[key], StrEnum) else value
                      for key, value in data.items()}
        except ValueError as error:
            raise BadInputError(f"bad ONNX int8 setting: {first_line(error)}") from None
        return cls(**values)


def _candidates() -> dict[str, Settings]:
    """Every data type for both formats (per-channel and per-tensor, MinMax), then the other calibrations of the
    per-channel QDQ settings."""
    types = [(IntType.UINT8, IntType.UINT8, False), (IntType.UINT8, IntType.INT8, False),
             (IntType.UINT8, IntType.INT8, True), (IntType.INT8, IntType.INT8, False)]
    found = [Settings(fmt, a, w, rr, pc) for fmt in QuantFormat for a, w, rr in types for pc in (True, False)]
    found += [Settings(QuantFormat.QDQ, a, w, rr, True, cal)
              for a, w, rr in types for cal in Calibration if cal != Calibration.MINMAX]
    found += [Settings(QuantFormat.QDQ, IntType.UINT8, IntType.UINT8, float_head=False),  # what export used before
              Settings(QuantFormat.QDQ, IntType.UINT8, IntType.INT8, True, calibration=Calibration.PERCENTILE, float_head=False)]
    return {settings.name: settings for settings in found}


CANDIDATES: dict[str, Settings] = _candidates()

_PERCENTILE = Calibration.PERCENTILE
CHOICES: dict[CpuClass, Settings] = {
    CpuClass.VNNI: Settings(QuantFormat.QDQ, IntType.UINT8, IntType.INT8, False, True, _PERCENTILE),
    CpuClass.AVX512: Settings(QuantFormat.QDQ, IntType.UINT8, IntType.INT8, True, True, _PERCENTILE),
    CpuClass.AVX2: Settings(QuantFormat.QDQ, IntType.UINT8, IntType.INT8, True, True, _PERCENTILE),
    CpuClass.OTHER: Settings(QuantFormat.QDQ, IntType.INT8, IntType.INT8, False, True, _PERCENTILE),
}


def features_of(flags: Iterable[str]) -> set[str]:
    """The features that matter here ("vnni", "avx512f", "avx2") among a CPU's flags."""
    flags = set(flags)
    found = flags & {"avx512f", "avx2"}
    if flags & {"avx512_vnni", "avx_vnni"}:
        found.add("vnni")
    return found


def cpu_features(cpuinfo: Path = CPUINFO) -> set[str]:
    """`features_of` this machine's first processor in /proc/cpuinfo; empty off Linux."""
    return features_of(flags(cpuinfo))


def saturates_here(settings: Mapping) -> bool:
    """Whether a file quantized with these settings (a manifest's `as_dict()`) saturates on this CPU:
    full-range int8 weights are for VNNI, and AVX2/AVX-512 without VNNI lose accuracy running them."""
    recorded = Settings.from_dict(settings)
    wide = recorded.weights == IntType.INT8 and not recorded.reduce_range and recorded.activations == IntType.UINT8
    return wide and cpu_class(cpu_features()) in (CpuClass.AVX2, CpuClass.AVX512)


def cpu_class(features: set[str]) -> CpuClass:
    """The CPU class of a set of `features_of` flags."""
    if "vnni" in features:
        return CpuClass.VNNI
    if "avx512f" in features:
        return CpuClass.AVX512
    if "avx2" in features:
        return CpuClass.AVX2
    return CpuClass.OTHER


def choose_settings(target: str = AUTO) -> Settings:
    """The settings for a CPU class ("vnni", "avx512", "avx2", "other"), or "auto" for this machine's.

    Every class gets QDQ, per-channel weights, Percentile calibration and a float head. Measured
    on `small` on a 2-core AVX2 EPYC (benchmarks/onnx_int8_settings.py, 1000 held-out digits):
    QDQ and QOperator run the same fused kernels at the same speed, per-tensor weights cost
    ELBO (+0.6 to +0.9% against +0.1 to +0.3% per-channel), Percentile (99.999%) halves MinMax's
    ELBO cost (Entropy gave MinMax's ranges exactly), and the float head takes the ELBO cost
    from +3.5% to +0.1%. What differs per class is the data type:

    - avx2, avx512 (no VNNI): U8S8 with reduce_range. The only accurate candidates faster than
      float32 here; 7-bit weights keep `VPMADDUBSW` pair sums inside int16. Full-range U8S8
      (and S8S8, which the session runs as U8S8) saturate: latent errors 0.33 against 0.05.
      U8U8 is accurate but not faster than float32; S8S8 leaves convolutions in float (QDQ)
      or hits generic kernels (QOperator) and is 1.5 to 17x slower.
    - vnni: U8S8 with full 8-bit weights. MLAS' VNNI GEMM and ConvSym kernels exist only for
      U8S8 (U8U8 keeps the widening kernel) and `VPDPBUSD` accumulates in int32, so there is
      no saturation and reduce_range would only cost precision. Unmeasured (no VNNI machine):
      from onnxruntime's guide and MLAS' dispatch (platform.cpp). Such a file run on an AVX2
      CPU saturates; export for the CPU the model will run on.
    - other (ARM, older x86): S8S8, onnxruntime's documented default, with native int8 dot
      products on ARM. Unmeasured.
    """
    return CHOICES[target_class(target)]


def target_class(target: str = AUTO) -> CpuClass:
    """The CPU class named by `target` ("auto": this machine's)."""
    try:
        return cpu_class(cpu_features()) if target == AUTO else CpuClass(target)
    except ValueError:
        raise BadInputError(f"unknown CPU target {target!r}; use auto or one of {', '.join(CpuClass)}") from None


def head_nodes(model: "onnx.ModelProto") -> list[str]:
    """Names of the nodes between the last Conv/Gemm/MatMul and each graph output (walking back from the outputs)."""
    producers = {output: node for node in model.graph.node for output in node.output}
    names: list[str] = []
    pending = [output.name for output in model.graph.output]
    while pending:
        node = producers.get(pending.pop())
        if node is None or node.op_type in COMPUTE_OPS or node.name in names:
            continue
        names.append(node.name)
        pending.extend(node.input)
    return names


def _batches(feeds: Feeds) -> Iterator[Feed]:
    return iter(feeds() if callable(feeds) else feeds)


def _checked(feeds: Feeds, input_names: list[str]) -> list[dict[str, np.ndarray]]:
    """The calibration batches as float32, each naming exactly the graph's inputs."""
    batches = []
    for index, feed in enumerate(_batches(feeds)):
        if set(feed) != set(input_names):
            raise BadInputError(
                f"calibration batch {index} has inputs {sorted(feed)} but the graph takes {sorted(input_names)}; "
                "give one dict per batch keyed by the graph's input names"
            )
        batches.append({name: np.asarray(feed[name], dtype=np.float32) for name in input_names})
    if not batches:
        raise BadInputError("no calibration batches: give at least one dict of graph input name -> array")
    return batches


def quantize(float_path: str | Path, out_path: str | Path, feeds: Feeds, settings: Settings | None = None) -> Path:
    """Static int8 quantization of a float32 ONNX graph, calibrated on `feeds`.

    `feeds` is a list of calibration batches (dict: input name -> array) or a function returning
    an iterable of them (read once). `settings` defaults to `choose_settings()`. The file appears
    at `out_path` only when complete.
    """
    import onnx
    import onnxruntime
    from onnxruntime import quantization as q
    from onnxruntime.quantization.shape_inference import quant_pre_process

    float_path, out_path = Path(float_path), Path(out_path)
    if not float_path.is_file():
        raise MissingFileError(f"{float_path} does not exist; export the float32 ONNX graph first")
    settings = settings or choose_settings()
    graph = onnx.load(str(float_path), load_external_data=False).graph
    initializers = {tensor.name for tensor in graph.initializer}
    batches = _checked(feeds, [tensor.name for tensor in graph.input if tensor.name not in initializers])

    class Reader(q.CalibrationDataReader):
        def __init__(self):
            self.remaining = iter(batches)

        def get_next(self):
            return next(self.remaining, None)

        def rewind(self):
            self.remaining = iter(batches)

    types = {IntType.UINT8: q.QuantType.QUInt8, IntType.INT8: q.QuantType.QInt8}
    methods = {Calibration.MINMAX: q.CalibrationMethod.MinMax, Calibration.ENTROPY: q.CalibrationMethod.Entropy,
               Calibration.PERCENTILE: q.CalibrationMethod.Percentile}
    formats = {QuantFormat.QDQ: q.QuantFormat.QDQ, QuantFormat.QOPERATOR: q.QuantFormat.QOperator}
    onnxruntime.set_default_logger_severity(3)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".onnx-int8-", dir=out_path.parent))
    try:
        prepared = scratch / "prepared.onnx"
        quant_pre_process(str(float_path), str(prepared))
        excluded = head_nodes(onnx.load(str(prepared))) if settings.float_head else []
        with python_stdout_silenced():
            q.quantize_static(str(prepared), str(scratch / "quantized.onnx"), Reader(), quant_format=formats[settings.format],
                              per_channel=settings.per_channel, reduce_range=settings.reduce_range,
                              activation_type=types[settings.activations], weight_type=types[settings.weights],
                              calibrate_method=methods[settings.calibration], nodes_to_exclude=excluded)
        os.replace(scratch / "quantized.onnx", out_path)
    except Exception as error:
        raise ExportError(f"ONNX int8 quantization ({settings.name}) of {float_path.name} failed: {first_line(error)}") from None
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return out_path
