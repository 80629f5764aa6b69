"""Make tf2onnx's graphs standard ONNX, so every ONNX runtime (not only onnxruntime) can run them.

tf2onnx writes TensorFlow's half-pixel nearest-neighbour resize (Keras `Resizing(interpolation=
"nearest")`) as `Resize(coordinate_transformation_mode="tf_half_pixel_for_nn", nearest_mode=
"floor")`: onnxruntime accepts it, but the mode is not in the ONNX standard (opset 11 to 25),
so onnx's reference evaluator refuses the file, and NNAPI and CoreML leave the node on the CPU.

TensorFlow picks input index `in = floor((out + 0.5) * in_size / out_size)`. Two standard modes
give the same index:

- any scale: `half_pixel` with `nearest_mode="round_prefer_ceil"` computes
  `round_half_up((out + 0.5) / scale - 0.5) = floor((out + 0.5) / scale)`. tf2onnx passes
  `scales = float32(out_size / in_size)`, and ONNX's output size `floor(in_size * scale)` is
  one short when that float rounds down (15 -> 29 gives 28), so these nodes get the exact
  4-D `sizes` instead (batch and channels read from the input when the batch is dynamic);
- whole-number scales s (our decoder's 7 -> 14 -> 28): `asymmetric` with `floor` computes
  `floor(out / s)`, equal because `out / s` and `(out + 0.5) / s` never straddle an integer.
  It is the one nearest mode NNAPI and CoreML delegate, so it is preferred when it applies.

`tests/test_app_ready.py` checks both against Keras for sizes such as 4 -> 7, 15 -> 29, 16 -> 31.
"""

import numpy as np
import onnx
from onnx import helper, numpy_helper

from vae_edge.errors import ExportError

TF_HALF_PIXEL_FOR_NN = "tf_half_pixel_for_nn"
SCALES_INPUT = 2  # Resize(X, roi, scales, sizes)
SHAPE_SLICE_OPSET = 15  # the first opset whose Shape takes `start` and `end`
SPATIAL_AXES = (2, 3)  # height and width of tf2onnx's NCHW Resize input


def standardize_resize(model: onnx.ModelProto) -> onnx.ModelProto:
    """Rewrite every `tf_half_pixel_for_nn` Resize of `model` (in place) to the equivalent standard mode; returns it."""
    constants = _constants(model.graph)
    for node in list(model.graph.node):
        if node.op_type != "Resize" or node.domain not in ("", "ai.onnx"):
            continue
        attributes = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if attributes.get("coordinate_transformation_mode") != TF_HALF_PIXEL_FOR_NN.encode():
            continue
        scales = constants.get(node.input[SCALES_INPUT]) if len(node.input) > SCALES_INPUT else None
        whole = scales is not None and scales.size > 0 and bool(np.all((scales >= 1) & (scales == np.round(scales))))
        if whole:
            _set_attribute(node, "coordinate_transformation_mode", "asymmetric")
            _set_attribute(node, "nearest_mode", "floor")
            continue
        # Inferred again for every node: before its upstream Resize has exact sizes, inference applies
        # floor(in * float32(out / in)), one pixel short (5 -> 8, not 9), and the error compounds.
        _use_sizes(model, node, scales, _static_shapes(model).get(node.input[0]))
        _set_attribute(node, "coordinate_transformation_mode", "half_pixel")
        _set_attribute(node, "nearest_mode", "round_prefer_ceil")
    _drop_unused_initializers(model.graph)
    return model


def _drop_unused_initializers(graph: onnx.GraphProto) -> None:
    """Remove the float scales that exact sizes replaced (onnxruntime warns about unused initializers)."""
    used = {name for node in graph.node for name in node.input}
    kept = [tensor for tensor in graph.initializer if tensor.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)


def _use_sizes(model: onnx.ModelProto, node: onnx.NodeProto, scales: np.ndarray | None, shape) -> None:
    """Give a Resize the exact output size that its float `scales` stand for, as a 4-D `sizes` input.

    Not opset 18's `axes` with a 2-D `sizes`: onnxruntime 1.32's graph optimizers (level
    extended and up) then fail to load the file ("Number of elements of input 'sizes' (0)
    does not match the number of axes (2)").
    """
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if scales is None or shape is None or any(shape[axis] is None for axis in SPATIAL_AXES) or opset < SHAPE_SLICE_OPSET:
        raise ExportError(
            f"Resize {node.name}: a non-integer nearest-neighbour upsampling needs constant scales, "
            f"a known height and width, and ONNX opset {SHAPE_SLICE_OPSET} or newer; export with --opset 18"
        )
    spatial = [round(shape[axis] * float(scales[axis])) for axis in SPATIAL_AXES]
    name = f"{node.name}_sizes"
    if None not in shape[:2]:  # a constant, which NNAPI and CoreML require
        model.graph.initializer.append(numpy_helper.from_array(np.array([*shape[:2], *spatial], np.int64), name))
    else:  # batch and channels taken from the input at run time
        model.graph.initializer.append(numpy_helper.from_array(np.array(spatial, np.int64), f"{name}_spatial"))
        index = list(model.graph.node).index(node)
        model.graph.node.insert(index, helper.make_node("Shape", [node.input[0]], [f"{name}_nc"], start=0, end=2))
        model.graph.node.insert(index + 1, helper.make_node("Concat", [f"{name}_nc", f"{name}_spatial"], [name], axis=0))
    del node.input[SCALES_INPUT:]
    node.input.extend(["", name])


def _static_shapes(model: onnx.ModelProto) -> dict[str, tuple[int | None, ...]]:
    """Each value's shape (None where a dimension is symbolic) from onnx's shape inference."""
    inferred = onnx.shape_inference.infer_shapes(model, data_prop=True)  # sizes built from Shape(x) resolve too
    values = [*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output]
    return {
        value.name: tuple(d.dim_value if d.HasField("dim_value") else None for d in value.type.tensor_type.shape.dim)
        for value in values
        if value.type.HasField("tensor_type") and value.type.tensor_type.HasField("shape")
    }


def _constants(graph: onnx.GraphProto) -> dict[str, np.ndarray]:
    """Values known without running the graph: initializers and Constant nodes' tensors."""
    values = {tensor.name: numpy_helper.to_array(tensor) for tensor in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            values[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    return values


def _set_attribute(node: onnx.NodeProto, name: str, value) -> None:
    kept = [a for a in node.attribute if a.name != name]
    del node.attribute[:]
    node.attribute.extend([*kept, helper.make_attribute(name, value)])


def reference_evaluator(model: onnx.ModelProto):
    """onnx's reference evaluator for `model`, able to run our int8 QDQ files too.

    onnx 1.23's evaluator implements DequantizeLinear from opset 19 only, and our files are
    opset 18; later opsets changed nothing for 8-bit integers with per-tensor or per-axis
    scales (they added float8, int4 and blocked scales), so the newest implementation stands
    in. It must be the newest: a new op's attributes come from the newest schema of its name.
    """
    from onnx.reference import ReferenceEvaluator
    from onnx.reference.ops.op_dequantize_linear import DequantizeLinear_25

    class DequantizeLinear(DequantizeLinear_25):  # the evaluator looks new ops up by class name
        pass

    return ReferenceEvaluator(model, new_ops=[DequantizeLinear])
