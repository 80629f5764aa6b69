"""How ONNX int8 files are quantized for the CPU they will run on: the settings, recorded in each
bundle's manifest, the choice per CPU class, and which CPUs a file's settings saturate on.

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
`vae_edge.export.onnx_int8` quantizes with them; its `CANDIDATES` holds every combination measured by
`benchmarks/onnx_int8_settings.py`, and `choose_settings` here holds the conclusions.
"""

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from enum import StrEnum

from vae_edge.cpu import CpuClass, cpu_class
from vae_edge.errors import BadInputError, first_line

AUTO = "auto"  # choose for the CPU of the machine that exports


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


_PERCENTILE = Calibration.PERCENTILE
CHOICES: dict[CpuClass, Settings] = {
    CpuClass.VNNI: Settings(QuantFormat.QDQ, IntType.UINT8, IntType.INT8, False, True, _PERCENTILE),
    CpuClass.AVX512: Settings(QuantFormat.QDQ, IntType.UINT8, IntType.INT8, True, True, _PERCENTILE),
    CpuClass.AVX2: Settings(QuantFormat.QDQ, IntType.UINT8, IntType.INT8, True, True, _PERCENTILE),
    **{arm: Settings(QuantFormat.QDQ, IntType.INT8, IntType.INT8, False, True, _PERCENTILE)
       for arm in (CpuClass.ARM64_DOTPROD, CpuClass.ARM64, CpuClass.OTHER)},
}


def choose_settings(target: str = AUTO) -> Settings:
    """The settings for a CPU class (`CpuClass`: "vnni", "avx2", "arm64-dotprod"...), or "auto" for this machine's.

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
      no saturation. Measured on a 2-core AVX-512 VNNI Xeon (the 14-epoch `small`, 500
      held-out digits, the rewritten graphs of `vae_edge.export.onnx_int8`;
      benchmarks/results/onnx_int8_vnni*.md): ELBO cost +0.010%, 1.08x (decoder) and 1.15x
      (encoder) of LiteRT int8's latency at batch 1; reduce_range ran at the same speed for
      +0.019%, MinMax +0.023%, per-tensor weights +0.20%, U8U8 2x slower, and S8S8 left 2 of 7
      decoder and 5 of 7 encoder convolutions in float (2.6 to 6x slower). Such a file run on
      an AVX2 CPU saturates; export for the CPU the model will run on.
    - arm64-dotprod, arm64, other (older x86): S8S8, onnxruntime's documented default, with native
      int8 dot products on ARM. Unmeasured for speed.
    """
    return CHOICES[target_class(target)]


def target_class(target: str = AUTO) -> CpuClass:
    """The CPU class named by `target` ("auto": this machine's)."""
    try:
        return cpu_class() if target == AUTO else CpuClass(target)
    except ValueError:
        raise BadInputError(f"unknown CPU target {target!r}; use auto or one of {', '.join(CpuClass)}") from None


def saturates(settings: Mapping, here: CpuClass) -> bool:
    """Whether a file quantized with these settings (a manifest's `as_dict()`) saturates on a CPU of class
    `here`: full-range int8 weights are for VNNI or ARM, and AVX2/AVX-512 without VNNI lose accuracy running
    them, with uint8 activations (U8S8) or int8 ones (S8S8, which the session runs as U8S8 on x86)."""
    recorded = Settings.from_dict(settings)
    wide = recorded.weights == IntType.INT8 and not recorded.reduce_range
    return wide and here in (CpuClass.AVX2, CpuClass.AVX512)
