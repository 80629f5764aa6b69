"""ONNX export through tf2onnx, and an int8 variant through onnxruntime's static quantization
with the settings chosen for the CPU the bundle is for (see `onnx_int8`)."""

from pathlib import Path

from vae_edge.errors import ExportError, first_line
from vae_edge.export.job import ExportJob
from vae_edge.export.onnx_graph import standardize_resize
from vae_edge.export.onnx_int8 import quantize
from vae_edge.registry import Format, Mode, register_converter

BATCH_AXIS = "batch"


def default_opset() -> int:
    """The newest opset tf2onnx writes (18 for tf2onnx 1.17); onnxruntime runs it since 1.14."""
    from tf2onnx import constants

    return max(constants.OPSET_TO_IR_VERSION)


@register_converter(Format.ONNX)
def convert(job: ExportJob) -> None:
    """float32 straight from the Keras graph; int8 quantized from a float32 file of the same shape."""
    if job.target.mode == Mode.FLOAT32:
        to_onnx(job, job.path)
        return
    float_path = float_source(job)
    if not float_path.exists():
        to_onnx(job, float_path)
    quantize(float_path, job.path, job.calibration_batches(), job.onnx_int8)


def float_source(job: ExportJob) -> Path:
    """The float32 file an int8 file of the job is quantized from (in the export's scratch folder)."""
    return job.scratch / f"{job.spec.graph}.{job.target.batch}.float32.onnx"


def to_onnx(job: ExportJob, path: Path) -> Path:
    """The Keras graph (inference mode) as ONNX with its named inputs and outputs; the batch axis
    is named `batch`, or fixed to the target's batch."""
    import onnx
    import tensorflow as tf
    import tf2onnx

    specs, network, names = job.tensor_specs(), job.network, job.spec.output_names

    @tf.function(input_signature=specs)
    def forward(*inputs):
        outputs = network(inputs[0] if len(inputs) == 1 else list(inputs), training=False)
        outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
        return dict(zip(names, outputs))

    try:
        model, _ = tf2onnx.convert.from_function(forward, input_signature=specs, opset=job.opset or default_opset())
    except Exception as error:
        raise ExportError(f"ONNX conversion of the {job.spec.graph} failed: {first_line(error)}") from None
    if job.target.batch is None:
        for tensor in [*model.graph.input, *model.graph.output]:
            tensor.type.tensor_type.shape.dim[0].dim_param = BATCH_AXIS  # tf2onnx names it unk__NN
    standardize_resize(model)  # tf2onnx's tf_half_pixel_for_nn is not standard ONNX
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))
    return Path(path)
