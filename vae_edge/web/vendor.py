"""The vendored onnxruntime-web files the web app runs on, pinned to one version here.

A WASM-only page needs two files of the npm package's `dist/`: `ort.wasm.bundle.min.mjs`
(the JavaScript API with the Emscripten glue built in) and `ort-wasm-simd-threaded.wasm`
(the engine; one build serves single- and multi-threaded runs). They live in `ort/` inside
this package, so `pip install vae-edge` users need no npm; the 14 MB .wasm is stored
xz-compressed (about 2 MB) and unpacked by `copy_runtime`. `ort/VENDOR.json` records the
version, npm's integrity hash of the package and the sha256 of every unpacked file.

Refresh after changing `ORT_WEB_VERSION` (needs npm): `python -m vae_edge.web.vendor`.
Check the vendored files against the pin: `python -m vae_edge.web.vendor --check`.
"""

import argparse
import hashlib
import json
import lzma
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from vae_edge.errors import BadInputError, MissingFileError
from vae_edge.fsutil import write_bytes, write_json

ORT_WEB_VERSION = "1.30.0"
PACKAGE = "onnxruntime-web"
ENTRY = "ort.wasm.bundle.min.mjs"  # what the page imports
WASM = "ort-wasm-simd-threaded.wasm"
FILES = (ENTRY, WASM)
COMPRESSED = {WASM: WASM + ".xz"}  # stored name in ort/ for files kept compressed
VENDOR_DIR = Path(__file__).parent / "ort"
RECORD = "VENDOR.json"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_record(vendor_dir: Path = VENDOR_DIR) -> dict:
    """`VENDOR.json`, refused if it is missing or pins another version than `ORT_WEB_VERSION`."""
    path = vendor_dir / RECORD
    if not path.is_file():
        raise MissingFileError(f"{path}: missing; vendor onnxruntime-web with `python -m vae_edge.web.vendor`")
    record = json.loads(path.read_text())
    if record.get("version") != ORT_WEB_VERSION:
        raise BadInputError(
            f"{path}: vendored onnxruntime-web {record.get('version')} is not the pinned {ORT_WEB_VERSION}; "
            "refresh it with `python -m vae_edge.web.vendor`"
        )
    return record


def runtime_files(vendor_dir: Path = VENDOR_DIR) -> dict[str, bytes]:
    """The unpacked onnxruntime-web files by name, each checked against `VENDOR.json`."""
    record = read_record(vendor_dir)
    files = {}
    for name in FILES:
        stored = vendor_dir / COMPRESSED.get(name, name)
        if not stored.is_file():
            raise MissingFileError(f"{stored}: missing; vendor onnxruntime-web with `python -m vae_edge.web.vendor`")
        data = stored.read_bytes()
        data = lzma.decompress(data) if name in COMPRESSED else data
        if _sha256(data) != record["files"][name]["sha256"]:
            raise BadInputError(f"{stored}: sha256 differs from {RECORD}; refresh it with `python -m vae_edge.web.vendor`")
        files[name] = data
    return files


def npm_pack(spec: str, destination: Path) -> tuple[Path, dict]:
    """Download the npm package `spec` (name@version) as a tarball into `destination`; npm checks the
    registry's integrity hash. Returns the tarball and npm's record of it (filename, integrity, ...)."""
    result = subprocess.run(["npm", "pack", spec, "--json", "--pack-destination", str(destination)],
                            capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise BadInputError(f"npm pack {spec} failed: {result.stderr.strip().splitlines()[-1:]}")
    packed = json.loads(result.stdout)[0]
    return Path(destination) / packed["filename"], packed


def refresh(vendor_dir: Path = VENDOR_DIR, version: str = ORT_WEB_VERSION) -> dict:
    """Download `onnxruntime-web@version` with npm, keep the files a WASM-only page needs and
    record their checksums."""
    with tempfile.TemporaryDirectory() as temp:
        tarball, packed = npm_pack(f"{PACKAGE}@{version}", Path(temp))
        with tarfile.open(tarball) as archive:
            contents = {name: archive.extractfile(f"package/dist/{name}").read() for name in FILES}
    vendor_dir.mkdir(parents=True, exist_ok=True)
    for name, data in contents.items():
        stored = COMPRESSED.get(name, name)
        write_bytes(vendor_dir / stored, lzma.compress(data, preset=9) if name in COMPRESSED else data)
    record = {
        "package": PACKAGE,
        "version": version,
        "license": "MIT",
        "npm_integrity": packed["integrity"],
        "files": {name: {"sha256": _sha256(data), "size_bytes": len(data), "stored_as": COMPRESSED.get(name, name)}
                  for name, data in contents.items()},
    }
    write_json(vendor_dir / RECORD, record)
    return record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check the vendored files against the pin")
    args = parser.parse_args(argv)
    try:
        if not args.check:
            refresh()
        sizes = {name: len(data) for name, data in runtime_files().items()}
    except (BadInputError, MissingFileError) as error:
        print(f"Error: {error}", file=sys.stderr)
        return 1
    print(f"{PACKAGE} {ORT_WEB_VERSION} OK: " + ", ".join(f"{n} {s / 2**20:.2f} MiB" for n, s in sizes.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
