"""Decoder latency inside a real browser (onnxruntime-web, WASM) next to native onnxruntime.

The page's own clock (`performance.now()` around `session.run`) times each call, so the
numbers exclude Python and the browser protocol. Thread counts go in as `?threads=N`:
onnxruntime-web fixes its thread pool when it starts, so each count gets a fresh page.
Chromium coarsens `performance.now()` to 0.1 ms even when cross-origin isolated, which is
fine for calls of a millisecond and more.

    python -m vae_edge.bench.browser BUNDLE [--mode int8]    # a table of in-browser vs native p50
"""

import argparse
import functools
import math
import os
import statistics
from pathlib import Path

import numpy as np

from vae_edge.bench.worker import timed_runs
from vae_edge.bundle import Bundle
from vae_edge.errors import BadInputError
from vae_edge.labels import one_hot
from vae_edge.prior import prior_latents
from vae_edge.registry import APPS, App, Format, Graph
from vae_edge.signatures import LABEL
from vae_edge.web.browser import READY, launch, serving

BATCHES = (1, 64)  # one image, and the page's 8x8 grid


def latency_summary(times_ms: list[float]) -> dict:
    """Median, 90th percentile and mean of call times in ms, and how many."""
    return {"p50_ms": statistics.median(times_ms), "p90_ms": float(np.percentile(times_ms, 90)),
            "mean_ms": statistics.fmean(times_ms), "repeats": len(times_ms)}


def measure_in_browser(bundle_dir: Path, mode: str | None = None, batches=BATCHES, threads=None,
                       warmup: int = 10, repeats: int = 50) -> list[dict]:
    """Median (and p90, mean) decoder latency in headless Chromium per thread count and batch.

    `bundle_dir` must hold the web app in `web/`; `threads` defaults to (1, all cores).
    One dict per (threads, batch): engine, mode, file, batch, threads, browser, p50_ms, p90_ms, mean_ms, repeats.
    """
    web_dir = Path(bundle_dir) / APPS[App.WEB].folder
    threads = threads or sorted({1, os.cpu_count() or 1})
    rows = []
    with serving(web_dir) as url, launch() as browser:
        for count in threads:
            page = browser.new_page()
            query = f"?threads={count}" + (f"&mode={mode}" if mode else "")
            page.goto(url + query)
            info = page.evaluate(READY)
            for batch in batches:
                times, file = page.evaluate(
                    "async ([batch, warmup, repeats]) => [await window.vaeEdge.benchmark('decoder', batch, {warmup, repeats}),"
                    " window.vaeEdge.lastRun.file]",
                    [batch, warmup, repeats],
                )
                rows.append({"engine": "onnxruntime-web", "mode": info["mode"], "file": file, "batch": batch,
                             "threads": count, "isolated": info["crossOriginIsolated"], "browser": browser.version,
                             **latency_summary(times)})
            page.close()
    return rows


def time_calls(call, warmup: int = 10, repeats: int = 50) -> list[float]:
    """Milliseconds of each of `repeats` calls of `call()` after `warmup` untimed ones: the bench
    workers' timing loop, in the browser's unit."""
    return [1000 * seconds for seconds in timed_runs(call, warmup, repeats, min_seconds=0.0, max_seconds=math.inf)]


def _decoder_for(bundle: Bundle, mode: str, batch: int):
    """The decoder file the page runs for `batch`: a fixed-batch file of exactly that batch, else the dynamic one."""
    decoders = [a for a in bundle.artifacts if (a.format, a.graph, a.mode) == (Format.ONNX, Graph.DECODER, mode)]
    exact = [a for a in decoders if getattr(a, "batch", None) == batch]
    dynamic = [a for a in decoders if getattr(a, "batch", None) is None]
    if not exact and not dynamic:
        raise BadInputError(f"{bundle.folder}: no ONNX {mode} decoder for batch {batch}; choose a mode the bundle has")
    return (exact or dynamic)[0]


def measure_native(bundle_dir: Path, mode: str, batches=BATCHES, threads: int = 1, warmup: int = 10,
                   repeats: int = 50) -> list[dict]:
    """The files the page runs, timed around `onnxruntime.InferenceSession.run` with `threads` threads, per batch."""
    import onnxruntime

    bundle = Bundle(bundle_dir)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    options.log_severity_level = 3  # errors only
    rows = []
    for batch in batches:
        artifact = _decoder_for(bundle, mode, batch)
        session = onnxruntime.InferenceSession(str(bundle.path_of(artifact)), options, providers=["CPUExecutionProvider"])
        feed = {session.get_inputs()[0].name: prior_latents(batch, int(bundle.model["latent_dim"]), 0)}
        if len(session.get_inputs()) > 1:  # a conditional decoder: every row as class 0
            feed[LABEL] = one_hot(np.zeros(batch, dtype=np.int64), len(bundle.model["class_names"]))
        times = time_calls(functools.partial(session.run, None, feed), warmup, repeats)
        rows.append({"engine": f"onnxruntime {onnxruntime.__version__}", "mode": mode, "file": artifact.path, "batch": batch,
                     "threads": threads, **latency_summary(times)})
    return rows


def browser_vs_native(bundle_dir: Path, batches=BATCHES, threads=None, repeats: int = 50) -> list[dict]:
    """In-browser decoder latency and native onnxruntime's on the same files, thread counts and batches,
    measured one after the other in this run; each row has both medians and their ratio."""
    rows = []
    for browser in measure_in_browser(bundle_dir, batches=batches, threads=threads, repeats=repeats):
        native = measure_native(bundle_dir, browser["mode"], (browser["batch"],), browser["threads"], repeats=repeats)[0]
        rows.append({**browser, "native_engine": native["engine"], "native_p50_ms": native["p50_ms"],
                     "ratio": browser["p50_ms"] / native["p50_ms"]})
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="decoder latency: in the browser vs native onnxruntime")
    parser.add_argument("bundle", type=Path)
    parser.add_argument("--mode", help="ONNX mode (default: the page's default)")
    parser.add_argument("--repeats", type=int, default=50)
    args = parser.parse_args(argv)
    browser_rows = measure_in_browser(args.bundle, args.mode, repeats=args.repeats)
    native_rows = measure_native(args.bundle, browser_rows[0]["mode"], repeats=args.repeats)
    print("| engine | file | batch | threads | p50 ms | p90 ms |\n|---|---|---|---|---|---|")
    for row in browser_rows + native_rows:
        cells = [row["engine"], row["file"], row["batch"], row["threads"], f"{row['p50_ms']:.2f}", f"{row['p90_ms']:.2f}"]
        print("| " + " | ".join(map(str, cells)) + " |")


if __name__ == "__main__":
    main()
