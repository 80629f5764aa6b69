"""Write the offline web app into an export bundle: the page, its JS runtime, the ONNX models
it runs and the onnxruntime-web files, so `<bundle>/web/` works from any static server.

The page reads `web/manifest.json`: the bundle's manifest cut down to its ONNX artifacts,
with paths pointing at the copies in `web/models/`, so `web/` is itself a valid bundle that
`Bundle` can open and check. The JS runtime picks models from it by format, graph, mode and
batch (never by file name), so fixed-batch ONNX files in a bundle are picked up without a
change here.
"""

import json
import shutil
from pathlib import Path

from vae_edge.bundle import MANIFEST, Bundle
from vae_edge.errors import BadInputError
from vae_edge.fsutil import atomic_directory
from vae_edge.registry import App, Format, Graph, register_app
from vae_edge.web.vendor import runtime_files

STATIC_DIR = Path(__file__).parent / "static"
ASSETS = ("index.html", "app.js", "vae-edge.js", "style.css")
MODELS = "models"
RUNTIME = "ort"


def web_manifest(bundle: Bundle) -> dict:
    """The bundle's manifest with only its ONNX artifacts, their paths relative to the web folder."""
    onnx = [a for a in bundle.manifest["artifacts"] if a["format"] == Format.ONNX]
    graphs = {a["graph"] for a in onnx}
    if not graphs >= set(Graph):
        available = ", ".join(sorted({f"{a['format']}/{a['mode']}" for a in bundle.manifest["artifacts"]})) or "nothing"
        raise BadInputError(
            f"{bundle.folder}: the web app needs an ONNX encoder and decoder, and this bundle has {available}; "
            "export it with `--format onnx` too"
        )
    manifest = dict(bundle.manifest)
    manifest["artifacts"] = [{**a, "path": f"{MODELS}/{Path(a['path']).name}"} for a in onnx]
    return manifest


@register_app(App.WEB)
def write_web_app(bundle_dir: Path, web_dir: Path) -> Path:
    """Write the web app for the bundle in `bundle_dir` into `web_dir` (normally `<bundle>/web`).

    Every ONNX model file is checked against the bundle's sha256 before it is copied; the
    folder appears complete or not at all (a previous one is replaced).
    """
    bundle = Bundle(bundle_dir)
    manifest = web_manifest(bundle)
    sources = {Path(a.path).name: bundle.path_of(a) for a in bundle.artifacts if a.format == Format.ONNX}
    if len(sources) != len(manifest["artifacts"]):
        raise BadInputError(f"{bundle.folder}: two ONNX artifacts share a file name; the web app keeps one folder of models")
    runtime = runtime_files()
    with atomic_directory(web_dir, force=True) as staging:
        for name in ASSETS:
            shutil.copyfile(STATIC_DIR / name, staging / name)
        (staging / MODELS).mkdir()
        for name, source in sources.items():
            shutil.copyfile(source, staging / MODELS / name)
        (staging / RUNTIME).mkdir()
        for name, data in runtime.items():
            (staging / RUNTIME / name).write_bytes(data)
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return Path(web_dir)
