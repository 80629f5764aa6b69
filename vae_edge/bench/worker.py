"""One benchmark subject at one thread count, alone in a fresh process.

`python -m vae_edge.bench.worker JOB.json RESULT.json`. A process of its own per subject
keeps peak RSS (`ru_maxrss` is per process and only grows) and thread pools from leaking
between engines. Results go to a file because engines print to the standard streams.
"""

import functools
import gc
import importlib
import json
import os
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from vae_edge.bench.ceilings import measure_ceilings
from vae_edge.bench.stats import summarize
from vae_edge.bundle import Bundle
from vae_edge.labels import one_hot
from vae_edge.logs import quiet_libraries
from vae_edge.registry import ENGINES, FORMATS, Engine, Graph
from vae_edge.runtime.engines import open_artifact
from vae_edge.signatures import LABEL, Z_MEAN, Z, graph_specs

Feeds = dict[str, np.ndarray]


def rss_mib() -> float | None:
    """Resident memory of this process now (Linux), None elsewhere."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mib() -> float:
    """Peak resident memory of this process (Linux VmHWM).

    Not `getrusage(...).ru_maxrss`: Linux carries that over from the parent across fork and
    exec, so every worker would report the harness's own peak.
    """
    status = Path("/proc/self/status")
    for line in status.read_text().splitlines() if status.exists() else ():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024  # kB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # no /proc: the best available


def timed_runs(call: Callable[[], object], warmup: int, runs: int, min_seconds: float, max_seconds: float) -> list[float]:
    """Warm up, then time back-to-back calls until at least `runs` calls and `min_seconds`
    (the TFLite benchmark tool's rule), or until `max_seconds` after at least one call."""
    for _ in range(warmup):
        call()
    latencies = []
    gc.disable()  # a collection inside a timed call would be the harness's cost, not the engine's
    try:
        start = time.perf_counter()
        while True:
            before = time.perf_counter()
            call()
            after = time.perf_counter()
            latencies.append(after - before)
            elapsed = after - start
            if (len(latencies) >= runs and elapsed >= min_seconds) or elapsed >= max_seconds:
                return latencies
    finally:
        gc.enable()


def _random_input(spec: dict, batch: int, rng: np.random.Generator) -> np.ndarray:
    """Latents from the prior for `z`, random classes one-hot for `label`, pixels uniform in [0, 1] for images."""
    shape = (batch, *spec["shape"][1:])
    if spec["name"] == Z:
        return rng.standard_normal(shape).astype(np.float32)
    if spec["name"] == LABEL:
        return one_hot(rng.integers(0, shape[1], batch), shape[1])
    return rng.uniform(0, 1, shape).astype(np.float32)


def _import_engine(format: str, threads: int) -> None:
    """Import the engine before the load clock starts: load time is building the model, not imports."""
    engine = FORMATS[format].engine if format in FORMATS else Engine.TENSORFLOW  # Keras subjects run on TensorFlow
    importlib.import_module(ENGINES[engine].module)
    if engine == Engine.TENSORFLOW:
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)  # as onnxruntime's session here


def _feeds_maker(specs: list[dict]):
    return lambda batch, rng: {spec["name"]: _random_input(spec, batch, rng) for spec in specs}


def _open_bundle_subject(subject: dict, bundle_dir: str, threads: int):
    """The artifact's engine (or a pipeline of the encoder then the decoder), without re-hashing the
    files: the parent checked every file once."""
    bundle = Bundle(bundle_dir)
    artifacts = [next(a for a in bundle.artifacts if a.key == key) for key in subject["artifacts"]]
    engines = [open_artifact(bundle, artifact, threads, check=False) for artifact in artifacts]
    if len(engines) == 1:
        return engines[0].run, _feeds_maker(artifacts[0].inputs)
    encoder, decoder = engines

    def pipeline(feeds: Feeds) -> Feeds:
        label = {LABEL: feeds[LABEL]} if LABEL in feeds else {}
        return decoder.run({Z: encoder.run(feeds)[Z_MEAN], **label})

    return pipeline, _feeds_maker(artifacts[0].inputs)


def _open_keras_subject(subject: dict, model_info: dict):
    """The Keras model called eagerly, or through one `tf.function` with a dynamic batch."""
    import tensorflow as tf

    from vae_edge.bundle import ModelSource
    from vae_edge.model.source import reload_graphs

    model = reload_graphs(ModelSource.from_dict(subject["source"]), subject["custom_objects"], log=lambda message: None)
    graph = subject["graph"]

    def forward(*inputs):  # (x) or, conditional, (x, label)
        x, label = inputs[0], inputs[1:]
        if graph == Graph.ENCODER:
            return model.encoder([x, *label] if label else x, training=False)
        if graph == Graph.DECODER:
            return model.decoder([x, *label] if label else x, training=False)
        z = model.encoder([x, *label] if label else x, training=False)[0]
        return model.decoder([z, *label] if label else z, training=False)

    specs = graph_specs(model_info["input_shape"], model_info["latent_dim"], model_info.get("num_classes", 0))
    inputs = specs[Graph.DECODER if graph == Graph.DECODER else Graph.ENCODER].inputs
    if subject["mode"] == "tf.function":
        forward = tf.function(forward, input_signature=[tf.TensorSpec(t.shape, tf.float32) for t in inputs])

    def run(feeds: Feeds):
        return tf.nest.map_structure(lambda t: t.numpy(), forward(*(feeds[t.name] for t in inputs)))

    return run, _feeds_maker([{"name": t.name, "shape": [-1, *t.shape[1:]]} for t in inputs])


def bench_subject(job: dict) -> list[dict]:
    """Load once, then per batch size: first inference, warm-up and timed runs."""
    subject, threads = job["subject"], job["threads"]
    _import_engine(subject["format"], threads)
    rss_before = rss_mib()
    start = time.perf_counter()
    if subject["format"] == "keras":
        run, make_feeds = _open_keras_subject(subject, job["model"])
    else:
        run, make_feeds = _open_bundle_subject(subject, job["bundle"], threads)
    load_s = time.perf_counter() - start
    rng = np.random.default_rng(job["seed"])
    cells = []
    for batch in sorted(job["batch_sizes"]):
        feeds = make_feeds(batch, rng)
        before = time.perf_counter()
        run(feeds)
        first_s = time.perf_counter() - before
        latencies = timed_runs(functools.partial(run, feeds), job["warmup"], job["runs"], job["min_seconds"], job["max_seconds"])
        cells.append({
            "batch": batch, "threads": threads, "load_s": load_s, "first_s": first_s,
            **summarize(latencies, batch),
            "rss_before_load_mib": rss_before, "peak_rss_mib": peak_rss_mib(),
        })
    return cells


def measure_peak(sizes: list[int], min_seconds: float) -> dict:
    """Best float32 GFLOP/s of square numpy matmuls over a few sizes: a practical FP32 ceiling
    of the BLAS threads the parent allowed through OPENBLAS/OMP/MKL_NUM_THREADS."""
    rng = np.random.default_rng(0)
    best = {"matmul_size": None, "gflops": 0.0}
    for size in sizes:
        a, b = (rng.standard_normal((size, size), dtype=np.float32) for _ in range(2))
        a @ b
        fastest, runs, start = float("inf"), 0, time.perf_counter()
        while runs < 3 or time.perf_counter() - start < min_seconds:
            before = time.perf_counter()
            a @ b
            fastest = min(fastest, time.perf_counter() - before)
            runs += 1
        if 2 * size**3 / fastest / 1e9 > best["gflops"]:
            best = {"matmul_size": size, "gflops": 2 * size**3 / fastest / 1e9}
    return best


def main(argv: list[str]) -> None:
    job = json.loads(Path(argv[0]).read_text())
    if job["kind"] == "peak":
        result = measure_peak(job["sizes"], job["min_seconds"])
    elif job["kind"] == "ceilings":
        result = measure_ceilings(job["threads"])
    else:
        result = bench_subject(job)
    Path(argv[1]).write_text(json.dumps(result))


if __name__ == "__main__":
    quiet_libraries()  # before any engine loads TensorFlow
    main(sys.argv[1:])
