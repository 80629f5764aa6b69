"""Reading an export bundle: its manifest, its artifacts and their checksums.

TensorFlow-free: the runtime, verification and benchmarks all read bundles through this
module. The manifest format is documented in `export/README.md`.
"""

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from vae_edge.errors import BadInputError, IntegrityError, MissingFileError

MANIFEST = "manifest.json"
SCHEMA_VERSION = 1
GRAPH_OUTPUTS = {"encoder": ("z_mean", "z_log_var"), "decoder": ("reconstruction",)}  # the same names in every format


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

    @property
    def key(self) -> str:
        return f"{self.format}/{self.graph}/{self.mode}"


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
        if self.manifest.get("schema_version") != SCHEMA_VERSION:
            raise BadInputError(
                f"{manifest_path}: schema_version {self.manifest.get('schema_version')!r} is not "
                f"{SCHEMA_VERSION}; re-export the bundle with this version of vae-edge"
            )
        self.artifacts = [Artifact(**entry) for entry in self.manifest["artifacts"]]

    @property
    def model(self) -> dict:
        return self.manifest["model"]

    def find(self, format: str, graph: str, mode: str) -> Artifact:
        for artifact in self.artifacts:
            if (artifact.format, artifact.graph, artifact.mode) == (format, graph, mode):
                return artifact
        available = ", ".join(sorted({f"{a.format}/{a.mode}" for a in self.artifacts}))
        raise BadInputError(f"{self.folder}: no {format} {mode} {graph} in this bundle; it has {available}")

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

    def open(self, artifact: Artifact, num_threads: int | None = None, check: bool = True):
        """The artifact in the engine that runs it (the SavedModel needs TensorFlow); `check`
        compares it with the manifest's sha256 first."""
        path = self.path_of(artifact, check)
        if artifact.format == "savedmodel":
            from vae_edge.export.savedmodel import SavedModelEngine

            return SavedModelEngine(path, artifact.signature)
        from vae_edge.runtime.engines import open_engine

        return open_engine(path, artifact.signature, num_threads)

    def check_all(self) -> None:
        """Check every artifact against the manifest."""
        for artifact in self.artifacts:
            self.path_of(artifact)
