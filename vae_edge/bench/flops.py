"""FLOPs per image counted from an ONNX graph after shape inference at batch size 1.

Counts 2 x multiply-accumulates of the compute-bound ops only:
Conv = 2*Cin/group*kh*kw*Cout*Hout*Wout, ConvTranspose = 2*Cin*Cout/group*kh*kw*Hin*Win,
Gemm/MatMul = 2*M*K*N. Element-wise ops, Resize and reductions are left out (well under
1% of the total for these networks) and listed as `uncounted_ops`.
"""

from collections import Counter
from pathlib import Path

import numpy as np

METHOD = ("2 x multiply-accumulates of Conv, ConvTranspose, Gemm and MatMul in the ONNX float32 graph "
          "after shape inference at batch 1 (element-wise ops, Resize and reductions not counted)")
COUNTED = {"Conv", "ConvTranspose", "Gemm", "MatMul"}


def _shapes(model) -> dict[str, list[int]]:
    """Static shapes of every tensor, with each graph input's batch dimension fixed to 1."""
    import onnx
    from onnx import numpy_helper, shape_inference

    model = onnx.ModelProto.FromString(model.SerializeToString())
    initializers = {t.name for t in model.graph.initializer}
    for graph_input in model.graph.input:
        if graph_input.name not in initializers and graph_input.type.tensor_type.shape.dim:
            graph_input.type.tensor_type.shape.dim[0].dim_value = 1
    del model.graph.value_info[:]  # the exporter's symbolic shapes would pin the batch dimension
    inferred = shape_inference.infer_shapes(model, strict_mode=True)
    shapes = {t.name: list(numpy_helper.to_array(t).shape) for t in inferred.graph.initializer}
    for info in [*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output]:
        dims = info.type.tensor_type.shape.dim
        if all(d.HasField("dim_value") for d in dims):
            shapes[info.name] = [d.dim_value for d in dims]
    return shapes


def _node_flops(node, shapes: dict[str, list[int]]) -> int:
    def shape(name: str) -> list[int]:
        if name not in shapes:
            raise ValueError(f"{node.op_type} node {node.name!r}: no static shape for {name!r}")
        return shapes[name]

    if node.op_type == "Conv":
        weight, out = shape(node.input[1]), shape(node.output[0])  # W: Cout x Cin/group x kh x kw
        return 2 * int(np.prod(weight)) * int(np.prod(out[2:]))
    if node.op_type == "ConvTranspose":
        weight, x = shape(node.input[1]), shape(node.input[0])  # W: Cin x Cout/group x kh x kw
        return 2 * int(np.prod(weight)) * int(np.prod(x[2:]))
    a, b = shape(node.input[0]), shape(node.input[1])
    if node.op_type == "Gemm":
        attributes = {attribute.name: attribute.i for attribute in node.attribute}
        m = a[1] if attributes.get("transA") else a[0]
        k, n = (b[1], b[0]) if attributes.get("transB") else (b[0], b[1])
        return 2 * m * k * n
    out = shape(node.output[0])  # MatMul, possibly batched: every output element is a K-long dot product
    return 2 * int(np.prod(out)) * a[-1]


def count_flops(path) -> dict:
    """`{"flops": per image, "by_op": {op: flops}, "uncounted_ops": {op: count}}` of an ONNX file."""
    import onnx

    model = onnx.load(str(Path(path)))
    shapes = _shapes(model)
    by_op: Counter = Counter()
    uncounted: Counter = Counter()
    for node in model.graph.node:
        if node.op_type in COUNTED:
            by_op[node.op_type] += _node_flops(node, shapes)
        else:
            uncounted[node.op_type] += 1
    return {"flops": int(sum(by_op.values())), "by_op": dict(by_op), "uncounted_ops": dict(uncounted)}
