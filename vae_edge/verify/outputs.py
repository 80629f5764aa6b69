"""What one runner produced on the verification inputs, saved so that it can be judged (again) later.

A runner is the Keras model (the reference) or the bundle's files on one CPU: this machine's, an
emulated one, or a phone whose outputs were captured. Per artifact: its outputs on the inputs'
feeds. Per pipeline (every graph of one target): the end-to-end posterior and reconstruction of
the images, and its ELBO scores, computed where it ran (they need the decoder on sampled z).
"""

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vae_edge.errors import BadInputError, MissingFileError
from vae_edge.fsutil import atomic_file

KERAS = "keras"  # the reference runner's name, and its one pipeline's
SEPARATOR = "|"  # between the parts of an array's name in the saved file


@dataclass
class PipelineOutputs:
    z_mean: np.ndarray  # the images' posterior through this pipeline's encoder
    z_log_var: np.ndarray
    reconstruction: np.ndarray  # its decoder at z_mean
    scores: dict  # vae_edge.elbo.evaluate_pipeline's, per class too for a conditional model


@dataclass
class RunOutputs:
    runner: str  # "keras", "host", or a CPU target's name ("cortex-a53")
    cpu: dict  # where it ran: {"cpu_class", "cpu", "vector_extensions", "emulated"}
    artifacts: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)  # key (Keras: graph) -> output -> array
    pipelines: dict[str, PipelineOutputs] = field(default_factory=dict)  # target key (Keras: "keras") -> outputs

    def save(self, path) -> Path:
        arrays = {SEPARATOR.join(("artifact", key, name)): value
                  for key, outputs in self.artifacts.items() for name, value in outputs.items()}
        for key, pipeline in self.pipelines.items():
            for name in ("z_mean", "z_log_var", "reconstruction"):
                arrays[SEPARATOR.join(("pipeline", key, name))] = getattr(pipeline, name)
        meta = {"runner": self.runner, "cpu": self.cpu, "scores": {k: p.scores for k, p in self.pipelines.items()}}
        arrays["meta"] = np.array(json.dumps(meta))
        with atomic_file(path) as partial, open(partial, "wb") as stream:
            np.savez_compressed(stream, **arrays)
        return Path(path)

    @classmethod
    def load(cls, path) -> "RunOutputs":
        path = Path(path)
        if not path.is_file():
            raise MissingFileError(f"{path}: no saved outputs here")
        try:
            with np.load(path, allow_pickle=False) as data:
                meta = json.loads(str(data["meta"]))
                run = cls(meta["runner"], meta["cpu"])
                parts: dict[str, dict[str, np.ndarray]] = {}
                for name in data.files:
                    if name == "meta":
                        continue
                    kind, key, output = name.split(SEPARATOR)
                    if kind == "artifact":
                        run.artifacts.setdefault(key, {})[output] = data[name]
                    else:
                        parts.setdefault(key, {})[output] = data[name]
        except (KeyError, ValueError, OSError, json.JSONDecodeError) as error:
            raise BadInputError(f"{path}: not runner outputs written by vae-edge ({error})") from None
        run.pipelines = {key: PipelineOutputs(**arrays, scores=meta["scores"][key]) for key, arrays in parts.items()}
        return run
