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


# --- int8 graphs that onnxruntime runs transpose-free --------------------------------------------
#
# onnxruntime runs int8 convolutions channels-last (its NHWC transformer) and moves the layout
# Transposes that this brings through the ops it knows how to (elementwise ops, Concat, Resize,
# Reshape-free chains) until they cancel. tf2onnx writes our nearest-neighbour upsampling
# (`NearestUpsampling`: four channel copies, then depth-to-space) as Concat + DepthToSpace, and
# DepthToSpace is layout-bound: each one kept two uint8 Transposes and a 6-D DepthToSpace in the
# graph, 55 % of the int8 decoder's time at batch 64 (onnxruntime 1.32, AVX-512 VNNI). The
# rewrites below are exact in real arithmetic and are applied to the float graph before it is
# quantized (`vae_edge.export.onnx_int8`).

COMPUTE_OPS = frozenset({"Conv", "ConvTranspose", "Gemm", "MatMul"})
UPSAMPLE_BLOCK = 2  # the upsampling factor NearestUpsampling repeats by
NCHW_TO_NHWC, NHWC_TO_NCHW = [0, 2, 3, 1], [0, 3, 1, 2]
HOISTED_ACTIVATIONS = frozenset({"Relu"})  # elementwise, so it commutes with the pixel shuffle


def subpixel_convolutions(model: onnx.ModelProto) -> int:
    """Rewrite, in place, each 2x nearest-neighbour upsampling followed by a stride-1 "same" Conv with an
    odd square kernel into a Conv on the small image with four times the output channels (one per
    position in each 2x2 block, its taps summed where the block repeats a pixel) and a pixel shuffle;
    returns how many were rewritten.

    The same multiply-adds on a quarter of the pixels (no upsampled copy in memory). Between integer
    convolutions the shuffle is written channels-last (Transpose to NHWC, Reshape, a Transpose that
    moves 2*C-byte blocks, Reshape, Transpose back): onnxruntime cancels the outer Transposes against
    its own. A Conv that no other compute op follows (the output's, whose head runs in float) gets a
    DepthToSpace instead: with C = 1 the channels-last Transpose moved 2-byte blocks, 4x slower at
    batch 64. A Relu that follows the Conv moves before the shuffle, so it stays fused into the
    integer convolution.
    """
    graph = model.graph
    constants = _constants(graph)
    shapes = _static_shapes(model)
    producers = {output: node for node in graph.node for output in node.output}
    consumers = consumers_of(graph)
    rewritten = 0
    for conv in [node for node in graph.node if node.op_type == "Conv"]:
        upsample = producers.get(conv.input[0])
        source = _upsampled(upsample, producers, constants) if upsample is not None else None
        shape = shapes.get(source[0]) if source else None
        weights = _same_padding_weights(conv, constants)
        if source is None or weights is None or shape is None or None in shape[2:]:
            continue
        image, repeated = source
        if any(len(consumers[node.output[0]]) != 1 for node in [upsample, *repeated]):
            continue
        low_weights, pads = _subpixel_weights(weights)
        name = conv.name or conv.output[0]
        inputs = [image, _add_initializer(graph, f"{name}_subpixel_weights", low_weights)]
        if len(conv.input) > 2 and conv.input[2]:
            bias = np.tile(constants[conv.input[2]], UPSAMPLE_BLOCK**2)  # one copy per block position, as the weights
            inputs.append(_add_initializer(graph, f"{name}_subpixel_bias", bias.astype(np.float32)))
        low = f"{name}_subpixel"
        nodes = [helper.make_node("Conv", inputs, [low], name=low, kernel_shape=list(low_weights.shape[2:]), pads=pads)]
        outputs = list(conv.output)
        followers = consumers.get(conv.output[0], [])
        if len(followers) == 1 and followers[0].op_type in HOISTED_ACTIVATIONS and conv.output[0] not in _graph_outputs(graph):
            activation = followers[0]
            nodes.append(helper.make_node(activation.op_type, [low], [f"{low}_act"], name=f"{activation.name}_subpixel"))
            low, outputs = f"{low}_act", list(activation.output)
            graph.node.remove(activation)
        if _reaches_no_compute(outputs[0], consumers):
            nodes.append(helper.make_node("DepthToSpace", [low], outputs, name=f"{name}_shuffle", blocksize=UPSAMPLE_BLOCK))
        else:
            nodes += _pixel_shuffle(graph, name, low, outputs, shape[2], shape[3], weights.shape[0])
        index = list(graph.node).index(conv)
        for node in reversed(nodes):
            graph.node.insert(index, node)
        for node in [conv, upsample, *repeated]:
            graph.node.remove(node)
        rewritten += 1
    _drop_unused_initializers(graph)
    return rewritten


def projections_as_convolutions(model: onnx.ModelProto) -> int:
    """Rewrite, in place, each product of a (batch, K) tensor by constant weights (a MatMul then an
    optional bias Add, or a plain Gemm) and an optional Relu, whose result a Reshape turns into an
    image, as a 1x1 Conv on a one-pixel image; returns how many were rewritten.

    Exact, and faster once quantized: onnxruntime fuses a quantized MatMul + Add into QGemm, which
    takes a slow path for per-column weight zero points (the decoder's 64 x 3136 projection: about
    23 us at batch 1, 10 with per-tensor weights), while QLinearConv takes per-channel weight scales
    at full speed. The pixel is written channels-last, (batch, 1, 1, K) with Transposes to and from
    NCHW around the Conv, which cancel against onnxruntime's own, so the Reshape into the image reads
    the Conv's output as it read the product's.
    """
    graph = model.graph
    constants = _constants(graph)
    shapes = _static_shapes(model)
    consumers = consumers_of(graph)
    outputs = _graph_outputs(graph)
    rewritten = 0
    for product in [node for node in graph.node if node.op_type in ("MatMul", "Gemm")]:
        found = _constant_product(product, constants)
        if found is None or len(shapes.get(product.input[0]) or ()) != 2:
            continue
        weights, bias = found
        chain, bias = _projection_chain(product, consumers, constants, outputs, bias, weights.shape[1])
        followers = consumers.get(chain[-1].output[0], [])
        reshape = followers[0] if len(followers) == 1 and chain[-1].output[0] not in outputs else None
        if reshape is None or reshape.op_type != "Reshape" or len(shapes.get(reshape.output[0]) or ()) != 4:
            continue
        name = product.name or product.output[0]
        pixel = _add_initializer(graph, f"{name}_as_pixel_shape", np.array([-1, 1, 1, weights.shape[0]], np.int64))
        kernel = _add_initializer(graph, f"{name}_conv_weights", np.ascontiguousarray(weights.T)[:, :, None, None])
        steps = [f"{name}_{step}" for step in ("as_pixel", "as_pixel_nchw", "conv", "conv_nhwc")]
        nodes = [helper.make_node("Reshape", [product.input[0], pixel], [steps[0]], name=steps[0]),
                 helper.make_node("Transpose", [steps[0]], [steps[1]], name=steps[1], perm=NHWC_TO_NCHW),
                 helper.make_node("Conv", [steps[1], kernel, *bias], [steps[2]], name=steps[2])]
        last = steps[2]
        if chain[-1].op_type in HOISTED_ACTIVATIONS:
            nodes.append(helper.make_node(chain[-1].op_type, [last], [f"{last}_act"], name=f"{chain[-1].name}_conv"))
            last = f"{last}_act"
        nodes.append(helper.make_node("Transpose", [last], [steps[3]], name=steps[3], perm=NCHW_TO_NHWC))
        reshape.input[0] = steps[3]
        index = list(graph.node).index(product)
        for node in reversed(nodes):
            graph.node.insert(index, node)
        for node in chain:
            graph.node.remove(node)
        rewritten += 1
    _drop_unused_initializers(graph)
    return rewritten


def _constant_product(node: onnx.NodeProto, constants: dict) -> tuple[np.ndarray, list[str]] | None:
    """(weights as (K, M), [the bias's name] or []) of a MatMul or a plain Gemm (alpha = beta = 1, A not
    transposed, a constant B and a 1-D C) by constant weights; None otherwise."""
    weights = constants.get(node.input[1]) if len(node.input) > 1 else None
    if weights is None or weights.ndim != 2:
        return None
    if node.op_type == "MatMul":
        return weights, []
    attributes = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    if attributes.get("alpha", 1.0) != 1.0 or attributes.get("beta", 1.0) != 1.0 or attributes.get("transA", 0):
        return None
    weights = weights.T if attributes.get("transB", 0) else weights
    bias = [name for name in node.input[2:3] if name]
    if bias and getattr(constants.get(bias[0]), "shape", None) != (weights.shape[1],):
        return None
    return weights, bias


def _projection_chain(product: onnx.NodeProto, consumers: dict, constants: dict, outputs: set[str],
                      bias: list[str], columns: int) -> tuple[list[onnx.NodeProto], list[str]]:
    """The product, then a bias Add of `columns` values (when it has no bias) and a Relu where each alone
    follows the one before (none a graph output), and the bias's name (a list of at most one)."""
    chain = [product]
    while True:
        followers = consumers.get(chain[-1].output[0], [])
        if len(followers) != 1 or chain[-1].output[0] in outputs:
            return chain, bias
        node = followers[0]
        other = [name for name in node.input if name != chain[-1].output[0]]
        if node.op_type == "Add" and not bias and chain[-1] is product and len(other) == 1 \
                and getattr(constants.get(other[0]), "shape", None) == (columns,):
            bias = other
        elif node.op_type not in HOISTED_ACTIVATIONS or chain[-1].op_type in HOISTED_ACTIVATIONS:
            return chain, bias
        chain.append(node)


def repeats_as_resize(model: onnx.ModelProto) -> int:
    """Rewrite, in place, each remaining Concat-of-four-copies + DepthToSpace (a 2x nearest upsampling
    that no Conv follows directly, e.g. before the slices of an odd size) as the equivalent Resize,
    which onnxruntime moves its layout Transposes through; returns how many were rewritten."""
    graph = model.graph
    producers = {output: node for node in graph.node for output in node.output}
    consumers = consumers_of(graph)
    rewritten = 0
    for node in [n for n in graph.node if n.op_type == "DepthToSpace"]:
        repeat = _repeated(node, producers)
        if repeat is None or len(consumers[repeat.output[0]]) != 1:
            continue
        name = node.name or node.output[0]
        scales = _add_initializer(graph, f"{name}_scales", np.array([1, 1, UPSAMPLE_BLOCK, UPSAMPLE_BLOCK], np.float32))
        resize = helper.make_node("Resize", [repeat.input[0], "", scales], list(node.output), name=f"{name}_resize",
                                  mode="nearest", coordinate_transformation_mode="asymmetric", nearest_mode="floor")
        graph.node.insert(list(graph.node).index(node), resize)
        graph.node.remove(node)
        graph.node.remove(repeat)
        rewritten += 1
    return rewritten


def _repeated(node: onnx.NodeProto, producers: dict) -> onnx.NodeProto | None:
    """The Concat if `node` is DepthToSpace(DCR, 2) of a Concat of four copies of one tensor along channels."""
    attributes = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    if attributes.get("blocksize") != UPSAMPLE_BLOCK or attributes.get("mode", b"DCR") != b"DCR":
        return None
    concat = producers.get(node.input[0])
    if concat is None or concat.op_type != "Concat" or len(concat.input) != UPSAMPLE_BLOCK**2 or len(set(concat.input)) != 1:
        return None
    axis = next((helper.get_attribute_value(a) for a in concat.attribute if a.name == "axis"), None)
    return concat if axis == 1 else None


def _upsampled(node: onnx.NodeProto, producers: dict, constants: dict) -> tuple[str, list[onnx.NodeProto]] | None:
    """(the small image, the other nodes of the upsampling) if `node` ends a 2x nearest upsampling:
    tf2onnx's Concat + DepthToSpace, or a standard Resize(nearest, asymmetric, floor) by 2."""
    if node.op_type == "DepthToSpace":
        repeat = _repeated(node, producers)
        return (repeat.input[0], [repeat]) if repeat is not None else None
    if node.op_type != "Resize" or len(node.input) != SCALES_INPUT + 1:
        return None
    attributes = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    scales = constants.get(node.input[SCALES_INPUT])
    nearest = attributes.get("mode") == b"nearest" and attributes.get("coordinate_transformation_mode") == b"asymmetric"
    floor = attributes.get("nearest_mode") == b"floor"
    doubled = scales is not None and scales.tolist() == [1, 1, UPSAMPLE_BLOCK, UPSAMPLE_BLOCK]
    return (node.input[0], []) if nearest and floor and doubled else None


def _same_padding_weights(conv: onnx.NodeProto, constants: dict) -> np.ndarray | None:
    """The Conv's constant weights if it is a plain stride-1 Conv with an odd square kernel and "same" padding."""
    weights = constants.get(conv.input[1])
    if weights is None or weights.ndim != 4 or weights.shape[2] != weights.shape[3] or weights.shape[2] % 2 == 0:
        return None
    if len(conv.input) > 2 and conv.input[2] and conv.input[2] not in constants:
        return None
    attributes = {a.name: helper.get_attribute_value(a) for a in conv.attribute}
    half = weights.shape[2] // 2
    plain = (attributes.get("group", 1) == 1 and list(attributes.get("strides", [1, 1])) == [1, 1]
             and list(attributes.get("dilations", [1, 1])) == [1, 1] and attributes.get("auto_pad", b"NOTSET") == b"NOTSET")
    return weights if plain and list(attributes.get("pads", [0] * 4)) == [half] * 4 else None


def _subpixel_weights(weights: np.ndarray) -> tuple[np.ndarray, list[int]]:
    """The small-image Conv's weights (output channels ordered block row, block column, channel: what
    DepthToSpace calls DCR) and its pads.

    Output pixel (2i + a, 2j + b) reads upsampled row 2i + a + k - h for tap k of a kernel of half
    width h, which is small-image row i + floor((a + k - h) / 2): taps that land on the same row add up.
    """
    out_channels, in_channels, size, _ = weights.shape
    half = size // 2
    first, last = -((half + 1) // 2), (1 + half) // 2  # floor(-h/2) and floor((1+h)/2): the small-image offsets
    low = np.zeros((UPSAMPLE_BLOCK, UPSAMPLE_BLOCK, out_channels, in_channels, last - first + 1, last - first + 1))
    for a in range(UPSAMPLE_BLOCK):
        for b in range(UPSAMPLE_BLOCK):
            for ki in range(size):
                for kj in range(size):
                    row, column = (a + ki - half) // 2 - first, (b + kj - half) // 2 - first
                    low[a, b, :, :, row, column] += weights[:, :, ki, kj]
    shape = (UPSAMPLE_BLOCK**2 * out_channels, in_channels, *low.shape[4:])
    return low.reshape(shape).astype(np.float32), [-first, -first, last, last]


def _pixel_shuffle(graph: onnx.GraphProto, name: str, source: str, outputs: list[str], height: int, width: int,
                   channels: int) -> list[onnx.NodeProto]:
    """NCHW (N, 4C, H, W) in DCR channel order -> (N, C, 2H, 2W), written channels-last in tensors of rank 4
    at most (NNAPI's limit): rows of (W, block row, block column * C) swap their first two axes."""
    block = UPSAMPLE_BLOCK
    split = _add_initializer(graph, f"{name}_shuffle_split_shape", np.array([-1, width, block, block * channels], np.int64))
    merged = _add_initializer(graph, f"{name}_shuffle_merged_shape",
                              np.array([-1, block * height, block * width, channels], np.int64))
    steps = [f"{name}_shuffle_{step}" for step in ("nhwc", "split", "moved", "merged")]
    return [
        helper.make_node("Transpose", [source], [steps[0]], name=steps[0], perm=NCHW_TO_NHWC),
        helper.make_node("Reshape", [steps[0], split], [steps[1]], name=steps[1]),  # (N * H, W, block row, ...)
        helper.make_node("Transpose", [steps[1]], [steps[2]], name=steps[2], perm=[0, 2, 1, 3]),  # (N * H, row, W, ...)
        helper.make_node("Reshape", [steps[2], merged], [steps[3]], name=steps[3]),
        helper.make_node("Transpose", [steps[3]], outputs, name=f"{name}_shuffle_nchw", perm=NHWC_TO_NCHW),
    ]


def _reaches_no_compute(name: str, consumers: dict) -> bool:
    """Whether no Conv/Gemm/MatMul reads `name`, directly or through other ops."""
    pending, seen = [name], set()
    while pending:
        for node in consumers.get(pending.pop(), []):
            if node.op_type in COMPUTE_OPS:
                return False
            if node.name not in seen:
                seen.add(node.name)
                pending.extend(node.output)
    return True


def _add_initializer(graph: onnx.GraphProto, name: str, value: np.ndarray) -> str:
    graph.initializer.append(numpy_helper.from_array(value, name))
    return name


def consumers_of(graph: onnx.GraphProto) -> dict[str, list[onnx.NodeProto]]:
    """The nodes that read each tensor, by its name, in graph order."""
    found: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            found.setdefault(name, []).append(node)
    return found


def _graph_outputs(graph: onnx.GraphProto) -> set[str]:
    return {output.name for output in graph.output}
