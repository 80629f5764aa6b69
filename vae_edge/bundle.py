"""Reading an export bundle: its manifest, its artifacts and their checksums, where its model came from,
and its bench results.

TensorFlow-free and engine-free: the runtime, verification, benchmarks and `info` read
bundles through this module and open artifacts with `vae_edge.runtime.engines`. The
manifest format is documented in `export/README.md`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import MISSING, asdict, dataclass, fields, replace
from pathlib import Path

from vae_edge.errors import BadInputError, IntegrityError, MissingFileError, first_line
from vae_edge.registry import Format, Graph, Mode, ReconstructionLoss, SourceKind, Target

MANIFEST = "manifest.json"
SCHEMA_VERSION = 1


def sha256_of(path) -> str:
    """sha256 of a file, or of a folder (SavedModel) as its sorted relative paths and contents."""
    path = Path(path)
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        if path.is_dir():
            digest.update(file.relative_to(path).as_posix().encode() + b"\0")
        with open(file, "rb") as stream:
            for chunk in iter(lambda: stream.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def size_of(path) -> int:
    path = Path(path)
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else path.stat().st_size


@dataclass
class Artifact:
    """One exported graph file as the manifest describes it."""

    path: str
    format: str
    graph: str
    mode: str
    signature: str
    inputs: list[dict]
    outputs: list[dict]
    size_bytes: int
    sha256: str
    export_seconds: float = 0.0
    batch: int | None = None  # every dimension fixed, batch included; None: a dynamic batch

    @property
    def target(self) -> Target:
        return Target(Format(self.format), Mode(self.mode), self.batch)

    @property
    def key(self) -> str:
        return self.target.artifact_key(self.graph)


MANIFEST_KEYS = {
    "schema_version",
    "created",
    "model",
    "calibration",
    "quantization",
    "anomaly",
    "tools",
    "artifacts",
    "verification",
    "rejected",
}
ARTIFACT_FIELDS = {f.name: f for f in fields(Artifact)}
REQUIRED_ARTIFACT_FIELDS = {name for name, f in ARTIFACT_FIELDS.items() if f.default is MISSING}


def _positive_ints(value, length: int | None = None) -> bool:
    values = value if isinstance(value, list) else [value]
    return (length is None or len(values) == length) and all(
        isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in values
    )


def manifest_problem(manifest) -> str | None:
    """What makes `manifest` not a schema-v1 manifest (see export/README.md), or None: readers check
    the structure once here instead of failing deep inside with a KeyError."""
    if not isinstance(manifest, dict):
        return f"expected a JSON object, got a {type(manifest).__name__}"
    if manifest.get("schema_version") != SCHEMA_VERSION:
        return f"schema_version {manifest.get('schema_version')!r} is not {SCHEMA_VERSION}"
    unknown = sorted(set(manifest) - MANIFEST_KEYS)
    missing = sorted({"model", "anomaly", "artifacts"} - set(manifest))
    if unknown or missing:
        return f"unknown keys {unknown}" if unknown else f"missing keys {missing}"
    model, anomaly, artifacts = manifest["model"], manifest["anomaly"], manifest["artifacts"]
    if (
        not isinstance(model, dict)
        or not _positive_ints(model.get("input_shape"), 3)
        or not _positive_ints(model.get("latent_dim"))
    ):
        return "model.input_shape must be [height, width, channels] and model.latent_dim a positive integer"
    if model.get("reconstruction_loss") not in set(ReconstructionLoss):
        return f"model.reconstruction_loss must be one of {', '.join(ReconstructionLoss)}"
    if not isinstance(anomaly, dict) or not isinstance(anomaly.get("threshold"), (int, float)):
        return "anomaly.threshold must be a number"
    if not isinstance(artifacts, list) or not all(isinstance(a, dict) for a in artifacts):
        return "artifacts must be a list of objects"
    for index, entry in enumerate(artifacts):
        unknown, missing = sorted(set(entry) - set(ARTIFACT_FIELDS)), sorted(REQUIRED_ARTIFACT_FIELDS - set(entry))
        if unknown or missing:
            return f"artifacts[{index}] has {f'unknown fields {unknown}' if unknown else f'no {missing}'}"
        if entry["format"] not in set(Format) or entry["mode"] not in set(Mode) or entry["graph"] not in set(Graph):
            return (
                f"artifacts[{index}] names an unknown format, mode or graph ({entry['format']}/{entry['graph']}/{entry['mode']})"
            )
    return None


@dataclass(frozen=True)
class ModelSource:
    """Where a bundle's Keras graphs came from and how they were read, as the manifest records it."""

    kind: SourceKind
    paths: tuple[str, ...] = ()  # resolved paths of the .keras file(s)
    sha256: tuple[str, ...] = ()
    custom_objects: tuple[str, ...] = ()  # the modules that were imported for the user's own layers
    likelihood: str | None = None  # as the user stated it (None: inferred)
    decoder_output: str | None = None
    encoder_outputs: tuple[str, ...] | None = None

    def as_dict(self) -> dict:
        return {key: list(value) if isinstance(value, tuple) else value for key, value in asdict(self).items()}

    def check_same_files(self, loaded: ModelSource) -> None:
        """Refuse `loaded` (the model files read now) unless they are the files recorded here, by sha256; files
        recorded without a digest (older manifests, an export from memory) pass."""
        if not any(self.sha256):
            return
        changed = loaded.paths if len(loaded.sha256) != len(self.sha256) else [
            path for path, recorded, now in zip(loaded.paths, self.sha256, loaded.sha256) if recorded and recorded != now]
        if changed:
            raise BadInputError(f"{', '.join(changed)}: not the model the bundle was exported from (its sha256 "
                                "differs from the manifest's; was it retrained?); pass the original, or re-export")

    def with_digests(self) -> ModelSource:
        """This source with the sha256 of its files as they are now (files that are missing keep no digest)."""
        return replace(self, sha256=tuple(sha256_of(path) if Path(path).is_file() else "" for path in self.paths))

    def missing_modules(self, custom_objects: Sequence[str]) -> list[str]:
        """The recorded custom-layer modules that `custom_objects` (the caller's --custom-objects) does not name."""
        given = {module_spec(module) for module in custom_objects}
        return [module for module in self.custom_objects if module_spec(module) not in given]

    @classmethod
    def from_dict(cls, recorded: dict) -> ModelSource:
        """The inverse of `as_dict`."""
        try:
            return cls(**{key: tuple(value) if isinstance(value, list) else value for key, value in recorded.items()})
        except TypeError as error:
            raise BadInputError(f"the manifest's model.source is not one vae-edge writes ({first_line(error)})") from None

    @classmethod
    def from_manifest(cls, model: dict) -> ModelSource:
        """The source a manifest's `model` section records; bundles from before `source` name one .keras."""
        recorded = model.get("source")
        if isinstance(recorded, dict):
            return cls.from_dict(recorded)
        if model.get("source_model"):
            return cls(SourceKind.VAE_EDGE, (model["source_model"],), (model.get("source_sha256") or "",))
        return cls(SourceKind.IN_MEMORY)


def module_spec(module: str) -> str:
    """A `--custom-objects` module as the manifest records it: a .py file by its absolute path, a dotted name as is."""
    return str(Path(module).resolve()) if module.endswith(".py") else module


class Bundle:
    """An export folder with a manifest; `path_of` resolves artifacts and checks them."""

    def __init__(self, folder):
        self.folder = Path(folder)
        manifest_path = self.folder / MANIFEST
        if not self.folder.is_dir():
            raise MissingFileError(f"{self.folder}: no such bundle folder (create one with `vae-edge export`)")
        if not manifest_path.is_file():
            raise MissingFileError(f"{manifest_path}: missing; this folder is not an export bundle")
        try:
            self.manifest = json.loads(manifest_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise BadInputError(f"{manifest_path}: not valid JSON ({error})") from None
        problem = manifest_problem(self.manifest)
        if problem:
            raise BadInputError(f"{manifest_path}: {problem}; re-export the bundle with `vae-edge export`")
        self.artifacts = [Artifact(**entry) for entry in self.manifest["artifacts"]]

    @property
    def model(self) -> dict:
        return self.manifest["model"]

    def find(self, target: Target, graph: Graph) -> Artifact:
        for artifact in self.artifacts:
            if artifact.target == target and artifact.graph == graph:
                return artifact
        available = ", ".join(t.key for t in self.targets())
        raise BadInputError(f"{self.folder}: no {target.key} {graph} in this bundle; it has {available}")

    def targets(self) -> list[Target]:
        """The targets with every graph of the model exported, in manifest order."""
        graphs = {}
        for artifact in self.artifacts:
            graphs.setdefault(artifact.target, set()).add(artifact.graph)
        return [target for target, present in graphs.items() if present >= set(Graph)]

    def pipeline(self, target: Target) -> dict[Graph, Artifact]:
        """The artifact of every graph of one target."""
        return {graph: self.find(target, graph) for graph in Graph}

    def verified(self, target: Target) -> bool:
        """Whether the target's whole pipeline passed the verification recorded in the manifest."""
        return bool(self.manifest.get("verification", {}).get("pipelines", {}).get(target.key, {}).get("passed"))

    def path_of(self, artifact: Artifact, check: bool = True) -> Path:
        """The artifact's file, refused if it points outside the bundle, is missing or was changed."""
        root = self.folder.resolve()
        path = (root / artifact.path).resolve()
        if not path.is_relative_to(root):
            raise IntegrityError(f"{self.folder / MANIFEST}: artifact path {artifact.path!r} points outside the bundle folder")
        if not path.exists():
            raise MissingFileError(f"{path}: artifact listed in the manifest is missing; re-export the bundle")
        if check and sha256_of(path) != artifact.sha256:
            raise IntegrityError(f"{path}: sha256 does not match the manifest; the file was changed after export")
        return path

    def check_all(self) -> None:
        """Check every artifact against the manifest."""
        for artifact in self.artifacts:
            self.path_of(artifact)


# `bench.json`: one typed record per cell, one subject at one batch size and thread count (the bench
# writes it; the runtime reads it to choose its default mode).
@dataclass
class Cell:
    key: str  # format/graph/mode, e.g. tflite/e2e/int8@b1
    format: str
    graph: str
    mode: str
    size_bytes: int
    batch: int
    threads: int
    load_s: float
    first_s: float
    runs: int
    mean_ms: float
    std_ms: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    min_ms: float
    max_ms: float
    images_per_s: float
    rss_before_load_mib: float | None
    peak_rss_mib: float
    # derived across cells of the same run (harness.derive)
    speedup_vs_keras_eager: float | None = None
    speedup_vs_keras_tf_function: float | None = None
    gflops_per_s: float | None = None
    fraction_of_measured_peak: float | None = None
    fraction_of_theoretical_peak: float | None = None
    fraction_of_own_ceiling: float | None = None


def cells_of(report: dict) -> list[Cell]:
    """The typed cells of a bench report (as `run_bench` returns it or bench.json holds it)."""
    return [cell if isinstance(cell, Cell) else Cell(**cell) for cell in report["cells"]]
