"""What a converter gets: one graph, one target, where to write it, and what it may use."""

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vae_edge.quantization import Settings
from vae_edge.registry import Target
from vae_edge.signatures import GraphSpec


@dataclass(kw_only=True)
class ExportJob:
    target: Target
    spec: GraphSpec  # the graph's named inputs and outputs
    network: object  # the float32 Keras functional model the file is made from (the spec's signature)
    path: Path  # the file (or folder) to write
    calibration: dict[str, np.ndarray]  # real inputs by name, (N, ...), for integer modes
    savedmodel: Callable[[int | None], Path]  # a SavedModel of every graph with this batch (None: dynamic)
    scratch: Path  # a private temporary folder
    bundle: Path  # the bundle being written: a converter may read another format's file of the same target
    onnx_int8: Settings  # how ONNX int8 files are quantized, chosen for the CPU class the bundle is for
    opset: int | None = None

    def calibration_batches(self) -> list[dict[str, np.ndarray]]:
        """The calibration inputs cut into the graph's batch (1 for a dynamic-batch graph), whole batches only."""
        rows = len(next(iter(self.calibration.values())))
        step = self.target.batch or 1
        return [{name: value[start : start + step] for name, value in self.calibration.items()}
                for start in range(0, rows - step + 1, step)]

    def tensor_specs(self):
        """`tf.TensorSpec`s of the graph's inputs at the target's batch (None: dynamic)."""
        import tensorflow as tf

        return [tf.TensorSpec(t.with_batch(self.target.batch).shape, t.dtype, name=t.name) for t in self.spec.inputs]
