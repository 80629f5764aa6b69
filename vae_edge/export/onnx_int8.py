"""The ONNX int8 quantizer: onnxruntime's static quantization of a float32 graph with the settings
chosen for the CPU the bundle is for (`vae_edge.quantization`), keeping the head in float.

Before quantizing, the float graph is rewritten (exactly) so that onnxruntime runs it on its fast
integer kernels without layout Transposes (`vae_edge.export.onnx_graph`: the decoder's projection
as a 1x1 Conv, sub-pixel convolutions instead of upsampling + Conv, remaining upsamplings as
Resize), and the stem (each Conv that reads the image, with at most `FLOAT_STEM_CHANNELS` channels)
stays in float: with K = 3 x 3 x 1 its integer convolution took a third of the encoder's time at
batch 1 (about 32 of 93 us) and was slower than the float one, which onnxruntime runs with a
kernel made for few input channels (an RGB 32x32 encoder ran 10 to 13 % faster with its stem in
float too). Measured by `benchmarks/onnx_int8_vnni.py` (AVX-512 VNNI,
onnxruntime 1.32); the results are in benchmarks/results/onnx_int8_vnni.md.

`CANDIDATES` holds every combination of settings measured by `benchmarks/onnx_int8_settings.py`.
"""

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from vae_edge.errors import BadInputError, ExportError, MissingFileError, first_line
from vae_edge.export.onnx_graph import (
    COMPUTE_OPS,
    consumers_of,
    projections_as_convolutions,
    repeats_as_resize,
    subpixel_convolutions,
)
from vae_edge.logs import python_stdout_silenced
from vae_edge.quantization import Calibration, IntType, QuantFormat, Settings, choose_settings

if TYPE_CHECKING:
    import onnx

LAYOUT_OPS = frozenset({"Reshape", "Transpose", "Squeeze", "Unsqueeze", "Flatten", "Identity"})
FLOAT_STEM_CHANNELS = 3  # grey or RGB images: too few input channels for the integer kernels to pay
Feed = Mapping[str, np.ndarray]  # one calibration batch: graph input name -> array
Feeds = Callable[[], Iterable[Feed]] | Iterable[Feed]


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


def stem_nodes(model: "onnx.ModelProto") -> list[str]:
    """Names of each Conv that reads a graph input (through layout ops only) with at most `FLOAT_STEM_CHANNELS`
    input channels, and of a Relu that alone follows it: the part that stays in float."""
    weights = {tensor.name: tensor.dims for tensor in model.graph.initializer}
    consumers = consumers_of(model.graph)
    names: list[str] = []
    pending = [tensor.name for tensor in model.graph.input if tensor.name not in weights]
    while pending:
        for node in consumers.get(pending.pop(), []):
            if node.op_type in LAYOUT_OPS:
                pending.extend(node.output)
            elif node.op_type == "Conv" and len(shape := weights.get(node.input[1], ())) == 4 and shape[1] <= FLOAT_STEM_CHANNELS:
                followers = consumers.get(node.output[0], [])
                activation = [f.name for f in followers if len(followers) == 1 and f.op_type == "Relu"]
                names += [name for name in [node.name, *activation] if name not in names]
    return names


def iter_feeds(feeds: Feeds) -> Iterator[Feed]:
    """The calibration batches, whether `feeds` lists them or returns them when called."""
    return iter(feeds() if callable(feeds) else feeds)


def _checked(feeds: Feeds, input_names: list[str]) -> list[dict[str, np.ndarray]]:
    """The calibration batches as float32, each naming exactly the graph's inputs."""
    batches = []
    for index, feed in enumerate(iter_feeds(feeds)):
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
    scratch = Path(tempfile.mkdtemp(prefix=".onnx-int8-", dir=out_path.parent)).resolve()
    try:
        rewritten, prepared = scratch / "rewritten.onnx", scratch / "prepared.onnx"
        model = onnx.load(str(float_path))
        for rewrite in (projections_as_convolutions, subpixel_convolutions, repeats_as_resize):
            rewrite(model)
        onnx.save(model, str(rewritten))
        # In the scratch folder, where its shape inference drops its files when it fails (not the user's folder);
        # auto_merge because a Resize by scales names its batch anew.
        with contextlib.chdir(scratch):
            quant_pre_process(str(rewritten), str(prepared), auto_merge=True)
        model = onnx.load(str(prepared))
        excluded = stem_nodes(model) + (head_nodes(model) if settings.float_head else [])
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
