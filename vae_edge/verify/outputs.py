"""What one runner produced on the verification inputs, saved so that it can be judged (again) later.

A runner is the Keras model (the reference) or the bundle's files on one CPU: this machine's, an
emulated one, or a phone whose outputs were captured. Per artifact: its outputs on the inputs'
feeds. Per pipeline (every graph of one target): the images' posterior, their reconstruction at its
mean, and the per-image ELBO terms at one sampled z (they need the decoder, so they are computed
where the files ran). A runner may have run the first `images` of the inputs only.
"""

import json
import re
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np

from vae_edge.errors import BadInputError, MissingFileError
from vae_edge.fsutil import read_arrays, write_npz

KERAS = "keras"  # the reference runner's name, and its one pipeline's
HOST = "host"  # this machine's runner
RESERVED_NAMES = (KERAS, HOST, "inputs")  # files of the bundle's verify/ folder that other runners' names would replace
_RUNNER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
SEPARATOR = "|"  # between the parts of an array's name in the saved file


def check_runner_name(name: str) -> str:
    """A captured runner's name: its outputs are saved as `verify/NAME.npz` and reported under it."""
    if name in RESERVED_NAMES or not _RUNNER_NAME.fullmatch(name):
        raise BadInputError(f"runner name {name!r}: name it after the CPU it ran on (letters, digits, '.', '_', '-'; "
                            f"not {', '.join(RESERVED_NAMES)})")
    return name


@dataclass
class PipelineOutputs:
    z_mean: np.ndarray  # the images' posterior through this pipeline's encoder
    z_log_var: np.ndarray
    reconstruction: np.ndarray  # its decoder at z_mean
    nll: np.ndarray  # per image: the reconstruction's negative log-likelihood at one z ~ q(z|x), nats
    kl: np.ndarray  # per image: KL(q(z|x) || N(0, I)), nats


ARRAYS = tuple(f.name for f in fields(PipelineOutputs))


@dataclass
class RunOutputs:
    runner: str  # "keras", "host", or a CPU target's name ("cortex-a53")
    cpu: dict  # where it ran: {"cpu_class", "cpu", "vector_extensions", "emulated"}
    images: int  # how many of the inputs' images it ran (see `VerifyInputs.subset`)
    artifacts: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)  # key (Keras: graph) -> output -> array
    pipelines: dict[str, PipelineOutputs] = field(default_factory=dict)  # target key (Keras: "keras") -> outputs

    def subset(self, rows: dict[str, np.ndarray], images: int) -> "RunOutputs":
        """These outputs on the first `images` images only: `rows` are the rows of each graph's outputs to keep
        (see `VerifyInputs.latent_rows`), so that runs on fewer inputs compare with this one row for row."""
        artifacts = {key: {name: value[rows[key.split("/")[1]]] for name, value in outputs.items()}
                     for key, outputs in self.artifacts.items()}
        pipelines = {key: PipelineOutputs(*(getattr(pipeline, name)[:images] for name in ARRAYS))
                     for key, pipeline in self.pipelines.items()}
        return RunOutputs(self.runner, self.cpu, images, artifacts, pipelines)

    def save(self, path) -> Path:
        arrays = {SEPARATOR.join(("artifact", key, name)): value
                  for key, outputs in self.artifacts.items() for name, value in outputs.items()}
        arrays.update({SEPARATOR.join(("pipeline", key, name)): getattr(pipeline, name)
                       for key, pipeline in self.pipelines.items() for name in ARRAYS})
        arrays["meta"] = np.array(json.dumps({"runner": self.runner, "cpu": self.cpu, "images": self.images}))
        return write_npz(path, arrays)

    @classmethod
    def load(cls, path) -> "RunOutputs":
        path = Path(path)
        if not path.is_file():
            raise MissingFileError(f"{path}: no saved outputs here")
        data = read_arrays(path, expected="runner outputs written by vae-edge")
        try:
            if not isinstance(data, dict):
                raise ValueError("one array, not an .npz")
            meta = json.loads(str(data.pop("meta")))
            run = cls(meta["runner"], meta["cpu"], int(meta["images"]))
            parts: dict[str, dict[str, np.ndarray]] = {}
            for name, value in data.items():
                kind, key, output = name.split(SEPARATOR)
                (run.artifacts if kind == "artifact" else parts).setdefault(key, {})[output] = value
            run.pipelines = {key: PipelineOutputs(**arrays) for key, arrays in parts.items()}
        except (KeyError, ValueError, TypeError) as error:
            raise BadInputError(f"{path}: not runner outputs written by vae-edge ({error})") from None
        return run
