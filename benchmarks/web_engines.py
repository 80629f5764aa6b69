"""Batch-1 decoder latency of two in-browser engines next to their native builds, in one run:
is any WebAssembly engine within 2x of native onnxruntime? Written to results/web_engines.md and .json.

    .venv/bin/python benchmarks/web_engines.py BUNDLE [--repeats 50]    # needs npm and a Chromium

- onnxruntime-web (MLAS kernels in WASM): the bundle's own web app on its ONNX files
  (`vae_edge.web.bench.measure_in_browser`).
- LiteRT.js (`@litertjs/core`, XNNPACK kernels in WASM), fetched with npm into a scratch page
  that runs the bundle's fixed-shape `.tflite` files; LiteRT.js compiles static shapes only.
- Native: onnxruntime on the same ONNX files, LiteRT's interpreter (XNNPACK) on the same
  `.tflite` files, with the same thread counts.

Each page times `run` with its own clock; see `vae_edge.web.bench` for why.
"""

import argparse
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
import time
from pathlib import Path

from vae_edge.bench import machine
from vae_edge.prior import prior_latents
from vae_edge.web.bench import latency_summary, measure_in_browser, measure_native
from vae_edge.web.browser import launch, serving

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
    """`npm pack` spec (npm checks the registry's integrity hash) and unpack it; its package/ folder."""
    done = subprocess.run(["npm", "pack", spec, "--json", "--pack-destination", str(into)],
                          capture_output=True, text=True, check=True)
    archive = into / json.loads(done.stdout)[0]["filename"]
    target = into / archive.stem
    with tarfile.open(archive) as tar:
        tar.extractall(target, filter="data")
    return target / "package"


def litert_js_page(bundle_dir: Path, folder: Path) -> list[str]:
    """Write the LiteRT.js page with the bundle's fixed batch-1 decoders into `folder`; their file names."""
    core = npm_package(LITERT_JS, folder.parent)
    utils = npm_package(f"@litertjs/wasm-utils@{LITERT_JS.rsplit('@', 1)[1]}", folder.parent)
    shutil.copytree(core / "dist", folder / "core")
    (folder / "wasm").mkdir()
    for name in LITERT_JS_FILES:
        shutil.copy(core / "wasm" / name, folder / "wasm" / name)
    shutil.copy(utils / "dist" / "index.js", folder / "wasm-utils.js")
    (folder / "models").mkdir()
    files = []
    for mode in MODES:
        source = Path(bundle_dir) / "tflite" / f"decoder.{mode}.b1.tflite"
        if source.is_file():
            shutil.copy(source, folder / "models" / source.name)
            files.append(source.name)
    (folder / "index.html").write_text(PAGE)
    return files


def measure_litert_js(bundle_dir: Path, threads: tuple[int, ...], latent_dim: int, repeats: int) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        site = Path(scratch) / "site"
        site.mkdir()
        files = litert_js_page(bundle_dir, site)
        latents = prior_latents(1, latent_dim, 0)[0].tolist()
        with serving(site) as url, launch() as browser:
            for count in threads:
                page = browser.new_page()
                page.goto(f"{url}?threads={count}")
                page.evaluate("() => window.ready.then(() => true)")
                for file in files:
                    times = page.evaluate("([f, z, r]) => window.timeDecoder(f, z, 10, r)", [file, latents, repeats])
                    rows.append({"engine": f"LiteRT.js {LITERT_JS.rsplit('@', 1)[1]} (WASM)", "mode": file.split(".")[1],
                                 "file": f"tflite/{file}", "threads": count, "browser": browser.version,
                                 **latency_summary(times)})
                page.close()
    return rows


def measure_litert_native(bundle_dir: Path, threads: tuple[int, ...], latent_dim: int, repeats: int) -> list[dict]:
    from ai_edge_litert.interpreter import Interpreter

    rows = []
    for mode in MODES:
        path = Path(bundle_dir) / "tflite" / f"decoder.{mode}.b1.tflite"
        if not path.is_file():
            continue
        for count in threads:
            interpreter = Interpreter(str(path), num_threads=count)
            interpreter.allocate_tensors()
            index = interpreter.get_input_details()[0]["index"]
            interpreter.set_tensor(index, prior_latents(1, latent_dim, 0))
            times = []
            for i in range(10 + repeats):
                start = time.perf_counter()
                interpreter.invoke()
                if i >= 10:
                    times.append((time.perf_counter() - start) * 1000)
            rows.append({"engine": "LiteRT (native, XNNPACK)", "mode": mode, "file": f"tflite/{path.name}",
                         "threads": count, **latency_summary(times)})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", type=Path)
    parser.add_argument("--repeats", type=int, default=50)
    args = parser.parse_args()
    latent_dim = int(json.loads((args.bundle / "manifest.json").read_text())["model"]["latent_dim"])
    threads = tuple(sorted({1, os.cpu_count() or 1}))
    rows = []
    for mode in MODES:
        for row in measure_in_browser(args.bundle, mode, batches=(1,), threads=threads, repeats=args.repeats):
            rows.append({**row, "engine": "onnxruntime-web (WASM)"})
        for count in threads:
            rows += [{**row, "engine": f"{row['engine']} (native)"}
                     for row in measure_native(args.bundle, mode, (1,), count, repeats=args.repeats)]
    rows += measure_litert_js(args.bundle, threads, latent_dim, args.repeats)
    rows += measure_litert_native(args.bundle, threads, latent_dim, args.repeats)
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
