"""ONNX files in ORT format, for onnxruntime-mobile and reduced (minimal) onnxruntime builds.

An app that ships onnxruntime-android / onnxruntime-objc can load a `.onnx` file, but the ORT
format loads faster, needs no protobuf, and is the only format a minimal build (the smallest
binary) reads. Converted with onnxruntime's own tool (`onnxruntime.tools.
convert_onnx_models_to_ort`), which also writes the reduced-operator config: the ops and opsets
the model needs, which is what `build.sh --include_ops_by_config` takes to build a minimal
onnxruntime with only those kernels. It is kept beside the `.ort` file.

Optimization style: `Fixed` (default) stores the graph optimized at level "all" for the CPU
execution provider, which is what the CPU EP runs fastest; `Runtime` stores only
EP-independent optimizations plus the rest as replayable records, which is onnxruntime's
recommendation when NNAPI or CoreML should take the nodes. Either way the result runs in the
full onnxruntime package too (`InferenceSession("decoder.float32.ort")`); a `Runtime` file
replays its records only with the session config entry
`session.enable_saved_runtime_optimizations` = "1".
"""

import contextlib
import io
import os
import shutil
import tempfile
from pathlib import Path

from vae_edge.errors import ExportError, MissingFileError, first_line
from vae_edge.export.job import ExportJob
from vae_edge.logs import quiet_logger
from vae_edge.registry import Format, Target, artifact_path, register_converter
from vae_edge.runtime.engines import ORT_OPERATORS_CONFIG


def convert_to_ort(onnx_path: Path, out_path: Path, runtime_optimizations: bool = False) -> tuple[Path, Path]:
    """Write `onnx_path` as an ORT-format model at `out_path`, and its reduced-operator config beside it.

    Returns (ort_path, config_path); the config is `out_path` with `.required_operators.config`
    in place of `.ort`. Both are written to a temporary folder and moved into place.
    """
    from onnxruntime.tools.convert_onnx_models_to_ort import OptimizationStyle, convert_onnx_models_to_ort

    quiet_logger("ort_format_model.utils")  # "Created config in <scratch path>" per file, at INFO
    onnx_path, out_path = Path(onnx_path), Path(out_path)
    if not onnx_path.is_file():
        raise MissingFileError(f"{onnx_path} does not exist; pass an .onnx file to convert")
    config_path = out_path.with_suffix(ORT_OPERATORS_CONFIG)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    style = OptimizationStyle.Runtime if runtime_optimizations else OptimizationStyle.Fixed
    scratch = Path(tempfile.mkdtemp(prefix=".ort-", dir=out_path.parent))
    try:
        source = scratch / "source" / onnx_path.name  # the tool converts every .onnx of a folder; give it one
        source.parent.mkdir()
        shutil.copyfile(onnx_path, source)
        with contextlib.redirect_stdout(io.StringIO()):  # it prints a progress line per step
            convert_onnx_models_to_ort(source, output_dir=scratch / "out", optimization_styles=[style], target_platform="arm")
        (converted,) = (scratch / "out").glob("*.ort")
        (config,) = (scratch / "out").glob("*.config")
        # the tool names its scratch paths in the config's header; name the source file instead
        lines = [line for line in config.read_text().splitlines() if not line.startswith("# - ")]
        config.write_text("\n".join([lines[0], f"# - {onnx_path.name}", *lines[1:]]) + "\n")
        os.replace(config, config_path)
        os.replace(converted, out_path)
    except (ValueError, RuntimeError) as error:  # onnxruntime's Fail/InvalidGraph derive from RuntimeError
        raise ExportError(f"ORT-format conversion of {onnx_path.name} failed: {first_line(error)}") from None
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return out_path, config_path



@register_converter(Format.ORT)
def convert(job: ExportJob) -> None:
    """From the ONNX file of the same target (written first: the registry makes ONNX a requirement of ORT),
    so the embedded metadata comes along."""
    onnx_target = Target(Format.ONNX, job.target.mode, job.target.batch)
    convert_to_ort(job.bundle / artifact_path(onnx_target, job.spec.graph), job.path)
