"""Golden vectors: a few inputs and what the Keras model made of them, for an app's unit test on the device.

`golden/` in each bundle holds raw little-endian float32 arrays (row-major, as `FloatArray` and
`[Float]` read them) and `golden.json`, which names each array with its shape and, per model file,
the largest absolute difference from the Keras output that this machine's verification measured on
the same rows, with the tolerance a device should meet. The latents are the portable prior's draws
for a seed, so a port of the prior checks itself on them too. Written at verification, from the
saved inputs and outputs.
"""

import json
from pathlib import Path

import numpy as np

from vae_edge.bundle import Bundle
from vae_edge.fsutil import atomic_directory, write_json
from vae_edge.registry import FORMATS, MODES, Format, Graph
from vae_edge.verify.inputs import VerifyInputs
from vae_edge.verify.outputs import RunOutputs

GOLDEN = "golden"  # the bundle's folder
ROWS = 4  # images and prior latents: small enough for an app's assets, enough to catch a wrong kernel
MARGIN = 4.0  # a device's error may be this many times this machine's (other kernels, other rounding)
DESCRIPTION = "golden.json"
BYTE_ORDER = "little-endian float32, row-major (C order); int8 files take these floats quantized with their own scale"


def write_golden(bundle: Bundle, inputs: VerifyInputs, reference: RunOutputs, host: RunOutputs) -> Path:
    """`golden/` of the bundle: ROWS images and prior latents, the Keras outputs for them, and per file the
    difference this machine measured with the tolerance a device should meet."""
    prior = min(ROWS, inputs.num_prior)
    rows = {Graph.ENCODER.value: np.arange(min(ROWS, len(inputs.images))), Graph.DECODER.value: np.arange(prior)}
    num_classes = len(bundle.model.get("class_names") or ())
    feeds = {graph.value: inputs.feeds(graph, num_classes) for graph in (Graph.ENCODER, Graph.DECODER)}
    arrays, described = {}, {"byte_order": BYTE_ORDER, "prior_seed": inputs.seed, "graphs": {}, "files": {}}
    for graph, picked in rows.items():
        entry = {"inputs": {}, "outputs": {}}
        for direction, named in (("inputs", feeds[graph]), ("outputs", reference.artifacts[graph])):
            for name, value in named.items():
                file = f"{graph}.{name}.f32"
                arrays[file] = np.ascontiguousarray(value[picked], dtype="<f4")
                entry[direction][name] = {"file": file, "shape": list(arrays[file].shape)}
        described["graphs"][graph] = entry
    for artifact in bundle.artifacts:
        produced = host.artifacts.get(artifact.key)
        if produced is None or FORMATS[Format(artifact.format)].folder:  # a SavedModel is for servers, not apps
            continue
        picked = rows[artifact.graph]
        measured = {name: float(np.max(np.abs(produced[name][picked] - expected[picked])))
                    for name, expected in reference.artifacts[artifact.graph].items()}
        floor = MODES[artifact.mode].tolerance.get("max_abs", 0.0)
        described["files"][artifact.path] = {
            "graph": artifact.graph, "mode": artifact.mode, "signature": artifact.signature,
            "max_abs_here": measured, "max_abs": {name: max(MARGIN * value, floor) for name, value in measured.items()},
        }
    with atomic_directory(bundle.folder / GOLDEN, force=True) as staging:
        for file, value in arrays.items():
            (staging / file).write_bytes(value.tobytes())
        write_json(staging / DESCRIPTION, described)
    return bundle.folder / GOLDEN


def forget_files(folder: Path, paths: set[str]) -> None:
    """Drop model files that left the bundle (rejected targets) from its golden vectors' tolerances."""
    description = folder / GOLDEN / DESCRIPTION
    if description.is_file():
        described = json.loads(description.read_text())
        described["files"] = {path: entry for path, entry in described["files"].items() if path not in paths}
        write_json(description, described)

