"""How much of a model file a phone's accelerators would run: NNAPI and CoreML for ONNX, the
GPU delegate and XNNPACK for TFLite. Checked on this machine, from the file alone.

- ONNX: onnxruntime's own mobile usability checker (`onnxruntime.tools.mobile_helpers.
  usability_checker`, what `python -m onnxruntime.tools.check_onnx_model_mobile_usability`
  prints), called as a library on the model optimized at level "basic" as the ORT-format
  conversion does. Its op tables list caveats it does not check; the one that matters here is
  checked below: NNAPI and CoreML's NeuralNetwork format delegate a nearest `Resize` only with
  `coordinate_transformation_mode="asymmetric"` and `nearest_mode="floor"` (their op builders
  in onnxruntime), so such nodes are moved to the unsupported count.
- TFLite GPU delegate: `tf.lite.experimental.Analyzer.analyze(gpu_compatibility=True)`, which
  prints its report; the ops it flags are counted.
- XNNPACK: LiteRT applies it by default; the ops left outside its DELEGATE nodes are counted.
"""

import contextlib
import io
import re
import tempfile
from pathlib import Path

from onnxruntime.tools.mobile_helpers import usability_checker
from onnxruntime.tools.onnx_model_utils import ModelProtoWithShapeInfo, optimize_model

from vae_edge.errors import MissingFileError

# Each execution provider's op table in onnxruntime's package, and the highest tensor rank it takes.
EP_TABLES = {
    "nnapi": ("nnapi_supported_ops.md", 999),
    "coreml_mlprogram": ("coreml_supported_mlprogram_ops.md", 5),
    "coreml_neuralnetwork": ("coreml_supported_neuralnetwork_ops.md", 5),
}
# Execution providers whose onnxruntime op builder delegates a nearest Resize only in this mode.
NEAREST_RESIZE_MODE = ("asymmetric", "floor")
STRICT_RESIZE = ("nnapi", "coreml_neuralnetwork")


def onnx_mobile_coverage(path) -> dict:
    """Per execution provider (nnapi, coreml_mlprogram, coreml_neuralnetwork): nodes it would run, of all, and why not."""
    path = _existing(path)
    with tempfile.TemporaryDirectory() as scratch:
        optimized = Path(scratch) / path.name
        optimize_model(path, optimized, use_external_initializers=True)  # level basic, as the tool does
        model = ModelProtoWithShapeInfo(optimized).model_with_shape_info
    tables = Path(usability_checker.__file__).parent
    coverage = {}
    for name, (table, max_rank) in EP_TABLES.items():
        ops = _OpsChecker(tables / table, strict_resize=name in STRICT_RESIZE)
        info = usability_checker.check_partitioning(model.graph, ops, require_fixed_input_sizes=True, max_rank=max_rank)
        coverage[name] = {
            "supported_nodes": info.num_supported_nodes,
            "nodes": info.num_nodes,
            "percent": round(100.0 * info.num_supported_nodes / max(info.num_nodes, 1), 1),
            "partitions": info.num_partitions,
            "unsupported_ops": sorted(info.unsupported_ops),
            "nodes_with_dynamic_input": info.nodes_unsupported_due_to_dynamic_input,
            "unchecked_caveats": ops.get_caveats(),
        }
    coverage["resize_modes"] = sorted({"/".join(_resize_mode(n)) for n in model.graph.node if n.op_type == "Resize"})
    return coverage


class _OpsChecker(usability_checker._SupportedOpsChecker):  # its partitioning takes any object with this interface
    """onnxruntime's table-driven checker, plus the Resize mode check its tables leave to the reader."""

    def __init__(self, table: Path, strict_resize: bool):
        super().__init__(table)
        self.strict_resize = strict_resize

    def is_op_supported(self, node) -> bool:
        if self.strict_resize and node.op_type == "Resize" and _resize_mode(node) != NEAREST_RESIZE_MODE:
            return False
        return super().is_op_supported(node)


def _resize_mode(node) -> tuple[str, str]:
    from onnx import helper

    attributes = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    # ONNX defaults: half_pixel and round_prefer_floor
    return (attributes.get("coordinate_transformation_mode", b"half_pixel").decode(),
            attributes.get("nearest_mode", b"round_prefer_floor").decode())


def tflite_coverage(path) -> dict:
    """GPU delegate and XNNPACK: ops each would run, of the main subgraph's ops, and the ones left out."""
    path = _existing(path)
    return {"gpu": _gpu_compatibility(path), "xnnpack": _xnnpack_delegation(path)}


def _gpu_compatibility(path: Path) -> dict:
    import tensorflow as tf

    report = io.StringIO()
    with contextlib.redirect_stdout(report):
        tf.lite.experimental.Analyzer.analyze(model_path=str(path), gpu_compatibility=True)
    text = report.getvalue()
    main = text.split("Subgraph#1")[0]  # the main subgraph; our graphs have no others
    ops = re.findall(r"^\s+Op#\d+ (\w+)\(", main, flags=re.MULTILINE)
    flagged = re.findall(r"GPU COMPATIBILITY WARNING: (.*)", main)
    return {
        "supported_nodes": len(ops) - len(flagged),
        "nodes": len(ops),
        "percent": round(100.0 * (len(ops) - len(flagged)) / max(len(ops), 1), 1),
        "warnings": flagged,
        "compatible": "looks compatible with GPU delegate" in text,
    }


def _xnnpack_delegation(path: Path) -> dict:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))  # XNNPACK is LiteRT's default CPU delegate
    interpreter.allocate_tensors()
    details = interpreter._get_ops_details()  # original nodes, then one DELEGATE node per partition
    nodes = [d for d in details if d["op_name"] != "DELEGATE"]
    delegates = [d for d in details if d["op_name"] == "DELEGATE"]
    producer = {int(t): d for d in nodes for t in d["outputs"]}
    delegated: set[int] = set()
    for delegate in delegates:  # walk back from each partition's outputs to its inputs
        boundary = {int(t) for t in delegate["inputs"]}
        pending = [int(t) for t in delegate["outputs"]]
        while pending:
            node = producer.get(pending.pop())
            if node is None or node["index"] in delegated:
                continue
            delegated.add(node["index"])
            pending.extend(int(t) for t in node["inputs"] if int(t) not in boundary)
    left = sorted({d["op_name"] for d in nodes if d["index"] not in delegated})
    return {
        "supported_nodes": len(delegated),
        "nodes": len(nodes),
        "percent": round(100.0 * len(delegated) / max(len(nodes), 1), 1),
        "partitions": len(delegates),
        "not_delegated_ops": left,
    }


def _existing(path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"{path} does not exist; pass a model file")
    return path
