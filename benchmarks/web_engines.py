"""Batch-1 decoder latency of two in-browser engines next to their native builds, in one run:
is any WebAssembly engine within 2x of native onnxruntime? Written to results/web_engines.md and .json.

    .venv/bin/python benchmarks/web_engines.py BUNDLE [--repeats 50]    # needs npm and a Chromium

- onnxruntime-web (MLAS kernels in WASM): the bundle's own web app on its ONNX files
  (`vae_edge.bench.browser.measure_in_browser`).
- LiteRT.js (`@litertjs/core`, XNNPACK kernels in WASM), fetched with npm into a scratch page
  that runs the bundle's fixed-shape `.tflite` files; LiteRT.js compiles static shapes only.
- Native: onnxruntime on the same ONNX files, LiteRT's interpreter (XNNPACK) on the same
  `.tflite` files, with the same thread counts.

Each page times `run` with its own clock; see `vae_edge.bench.browser` for why.
"""

import argparse
import json
import os
import shutil
import tarfile
import tempfile
from pathlib import Path

from vae_edge.bench import machine
from vae_edge.bench.browser import latency_summary, measure_in_browser, measure_native, time_calls
from vae_edge.bundle import Bundle
from vae_edge.prior import prior_latents
from vae_edge.registry import Format, Graph
from vae_edge.web.browser import launch, serving
from vae_edge.web.vendor import npm_pack

RESULTS = Path(__file__).resolve().parent / "results"
LITERT_JS = "@litertjs/core@2.5.3"
LITERT_JS_FILES = ("litert_wasm_internal.js", "litert_wasm_internal.wasm",
                   "litert_wasm_threaded_internal.js", "litert_wasm_threaded_internal.wasm")
MODES = ("float32", "int8")
PAGE = """<!doctype html><meta charset="utf-8">
<script type="importmap">{"imports": {"@litertjs/wasm-utils": "./wasm-utils.js"}}</script>
<script type="module">
import {loadLiteRt, loadAndCompile, Tensor} from './core/index.js';
const threads = Number(new URLSearchParams(location.search).get('threads') || 1);
window.ready = loadLiteRt('./wasm/', {threads: threads > 1});
window.timeDecoder = async (file, latents, warmup, repeats) => {
  const model = await loadAndCompile('./models/' + file, {accelerator: 'wasm', cpuOptions: {numThreads: threads}});
  const times = [];
  for (let i = 0; i < warmup + repeats; i++) {
    const input = new Tensor(new Float32Array(latents), [1, latents.length]);
    const start = performance.now();
    const outputs = await model.run([input]);
    if (i >= warmup) times.push(performance.now() - start);
    input.delete();
    for (const output of outputs) output.delete();
  }
  return times;
};
</script>"""


def npm_package(spec: str, into: Path) -> Path:
    """The npm package `spec` unpacked under `into`; its package/ folder."""
    tarball, _ = npm_pack(spec, into)
    target = into / tarball.stem
    with tarfile.open(tarball) as tar:
        tar.extractall(target, filter="data")
    return target / "package"


def fixed_decoders(bundle: Bundle) -> dict[str, Path]:
    """The bundle's fixed batch-1 TFLite decoder per mode of `MODES`: LiteRT.js compiles fixed shapes only."""
    return {artifact.mode: bundle.path_of(artifact) for artifact in bundle.artifacts
            if (artifact.format, artifact.graph, artifact.batch) == (Format.TFLITE, Graph.DECODER, 1) and artifact.mode in MODES}


def litert_js_page(decoders: dict[str, Path], folder: Path) -> None:
    """Write the LiteRT.js page, with `decoders` in its models/ folder, into `folder`."""
    core = npm_package(LITERT_JS, folder.parent)
    utils = npm_package(f"@litertjs/wasm-utils@{LITERT_JS.rsplit('@', 1)[1]}", folder.parent)
    shutil.copytree(core / "dist", folder / "core")
    (folder / "wasm").mkdir()
    for name in LITERT_JS_FILES:
        shutil.copy(core / "wasm" / name, folder / "wasm" / name)
    shutil.copy(utils / "dist" / "index.js", folder / "wasm-utils.js")
    (folder / "models").mkdir()
    for path in decoders.values():
        shutil.copy(path, folder / "models" / path.name)
    (folder / "index.html").write_text(PAGE)


def measure_litert_js(decoders: dict[str, Path], threads: tuple[int, ...], latent_dim: int, repeats: int) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        site = Path(scratch) / "site"
        site.mkdir()
        litert_js_page(decoders, site)
        latents = prior_latents(1, latent_dim, 0)[0].tolist()
        with serving(site) as url, launch() as browser:
            for count in threads:
                page = browser.new_page()
                page.goto(f"{url}?threads={count}")
                page.evaluate("() => window.ready.then(() => true)")
                for mode, path in decoders.items():
                    times = page.evaluate("([f, z, r]) => window.timeDecoder(f, z, 10, r)", [path.name, latents, repeats])
                    rows.append({"engine": f"LiteRT.js {LITERT_JS.rsplit('@', 1)[1]} (WASM)", "mode": mode,
                                 "file": f"tflite/{path.name}", "threads": count, "browser": browser.version,
                                 **latency_summary(times)})
                page.close()
    return rows


def measure_litert_native(decoders: dict[str, Path], threads: tuple[int, ...], latent_dim: int, repeats: int) -> list[dict]:
    from ai_edge_litert.interpreter import Interpreter

    rows = []
    for mode, path in decoders.items():
        for count in threads:
            interpreter = Interpreter(str(path), num_threads=count)
            interpreter.allocate_tensors()
            interpreter.set_tensor(interpreter.get_input_details()[0]["index"], prior_latents(1, latent_dim, 0))
            rows.append({"engine": "LiteRT (native, XNNPACK)", "mode": mode, "file": f"tflite/{path.name}",
                         "threads": count, **latency_summary(time_calls(interpreter.invoke, repeats=repeats))})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", type=Path)
    parser.add_argument("--repeats", type=int, default=50)
    args = parser.parse_args()
    bundle = Bundle(args.bundle)
    latent_dim, decoders = int(bundle.model["latent_dim"]), fixed_decoders(bundle)
    threads = tuple(sorted({1, os.cpu_count() or 1}))
    rows = []
    for mode in MODES:
        for row in measure_in_browser(args.bundle, mode, batches=(1,), threads=threads, repeats=args.repeats):
            rows.append({**row, "engine": "onnxruntime-web (WASM)"})
        for count in threads:
            rows += [{**row, "engine": f"{row['engine']} (native)"}
                     for row in measure_native(args.bundle, mode, (1,), count, repeats=args.repeats)]
    rows += measure_litert_js(decoders, threads, latent_dim, args.repeats)
    rows += measure_litert_native(decoders, threads, latent_dim, args.repeats)
    native_ort = {(r["mode"], r["threads"]): r["p50_ms"] for r in rows if r["engine"].startswith("onnxruntime ")}
    table = ["| engine | file | threads | p50 ms | p90 ms | / native onnxruntime, same mode |", "|---|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: (r["mode"], r["threads"], r["p50_ms"])):
        ratio = r["p50_ms"] / native_ort[(r["mode"], r["threads"])]
        table.append(f"| {r['engine']} | {r['file']} | {r['threads']} | {r['p50_ms']:.3f} | {r['p90_ms']:.3f} | {ratio:.2f}x |")
    info = machine.describe()
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "web_engines.json").write_text(json.dumps({"machine": info, "rows": rows}, indent=2) + "\n")
    (RESULTS / "web_engines.md").write_text("\n\n".join([
        "# Batch-1 decoder: in-browser engines and their native builds",
        f"{info['cpu']}, {info['usable_cores']} usable cores, {' '.join(info['vector_extensions'])}; "
        f"bundle `{args.bundle.name}`; {args.repeats} timed calls after 10 warm-up calls; engines one after another.",
        f"Command: `python benchmarks/web_engines.py BUNDLE --repeats {args.repeats}`.",
        "\n".join(table),
    ]) + "\n")
    print("\n".join(table))


if __name__ == "__main__":
    main()
