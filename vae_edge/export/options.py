"""What an export writes and how it checks it: one options object for the CLI, `vae-edge run` and Python."""

from dataclasses import dataclass, field

from vae_edge.quantization import AUTO
from vae_edge.registry import ALL, DEFAULT_STATIC_BATCH

DEFAULT_CALIBRATION_SAMPLES = 256  # or the whole training split when it is smaller
MIN_CALIBRATION_SAMPLES = 16


@dataclass
class ExportOptions:
    """Every choice of an export; the defaults are what `vae-edge export MODEL` does."""

    formats: tuple[str, ...] = (ALL,)  # formats and apps by name (`vae_edge.registry`), or "all"
    modes: tuple[str, ...] = ()  # () is every mode of each format
    static_batch: int | None = DEFAULT_STATIC_BATCH  # batch of the fixed-shape files; None writes none
    onnx_int8_target: str = AUTO  # the CPU class ONNX int8 files are quantized for ("auto": this machine's)
    calibration_samples: int | None = None  # None: DEFAULT_CALIBRATION_SAMPLES, or all when fewer
    opset: int | None = None  # ONNX opset; None: the newest tf2onnx writes
    seed: int = 0  # of the verification's latents and noise, and of the decoder's calibration draws
    verify: bool = True  # verify every artifact against the Keras graphs before the bundle goes into place
    tolerances: dict[str, float] = field(default_factory=dict)  # {"int8.min_psnr_db": 35.0}: overrides per mode
    cpus: tuple[str, ...] = ()  # emulated CPU targets to verify on too ("cortex-a53", "haswell"): see verify.emulation
