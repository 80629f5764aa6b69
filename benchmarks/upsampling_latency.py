"""Does the decoder's `NearestUpsampling` (DEPTH_TO_SPACE + slices) cost latency against the
nearest-neighbour `Resizing` it replaced? Both decoders share every weight of one trained model,
are converted to fixed batch-1 float32 TFLite the way `vae-edge export` does, and are timed
interleaved in one process with one thread; results/upsampling_latency.md.

    .venv/bin/python benchmarks/upsampling_latency.py runs/demo/train/model.keras
"""

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import keras
import numpy as np

from vae_edge.cpu import flags
from vae_edge.export.savedmodel import write_savedmodel
from vae_edge.export.tflite import to_tflite
from vae_edge.model.layers import NearestUpsampling
from vae_edge.model.loading import load_vae
from vae_edge.registry import Graph, Mode
from vae_edge.signatures import DECODE, graph_specs

RESULTS = Path(__file__).resolve().parent / "results"


def with_resizing(decoder: keras.Model) -> keras.Model:
    """The same decoder (the same layer objects, so the same weights) with `Resizing` upsampling."""
    def swap(layer):
        if isinstance(layer, NearestUpsampling):
            return keras.layers.Resizing(layer.height, layer.width, interpolation="nearest", name=layer.name)
        return layer
    return keras.models.clone_model(decoder, clone_function=swap)


def interpreter(decoder: keras.Model, specs, folder: Path):
    from ai_edge_litert.interpreter import Interpreter

    data = to_tflite(write_savedmodel([(decoder, specs[Graph.DECODER])], folder, 1), DECODE, Mode.FLOAT32, None)
    runner = Interpreter(model_content=data, num_threads=1)
    runner.allocate_tensors()
    return runner, len(data)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--calls", type=int, default=50)
    args = parser.parse_args()
    vae = load_vae(args.model)
    specs = graph_specs(vae.image_shape, vae.latent_dim)
    z = np.random.default_rng(0).standard_normal((1, vae.latent_dim)).astype(np.float32)
    decoders = {"NearestUpsampling (DEPTH_TO_SPACE)": vae.decoder,
                "Resizing (RESIZE_NEAREST_NEIGHBOR)": with_resizing(vae.decoder)}
    keras_gap = float(np.abs(np.asarray(decoders["Resizing (RESIZE_NEAREST_NEIGHBOR)"](z, training=False))
                             - np.asarray(vae.decoder(z, training=False))).max())
    runners, outputs, times = {}, {}, {name: [] for name in decoders}
    with tempfile.TemporaryDirectory() as scratch:
        for index, (name, decoder) in enumerate(decoders.items()):
            runners[name] = interpreter(decoder, specs, Path(scratch) / str(index))
    for name, (runner, _) in runners.items():
        runner.set_tensor(runner.get_input_details()[0]["index"], z)
        runner.invoke()
        outputs[name] = runner.get_tensor(runner.get_output_details()[0]["index"]).copy()
    for _ in range(args.rounds):  # interleaved, so load on the machine hits both alike
        for name, (runner, _) in runners.items():
            start = time.perf_counter()
            for _ in range(args.calls):
                runner.set_tensor(runner.get_input_details()[0]["index"], z)
                runner.invoke()
            times[name].append((time.perf_counter() - start) / args.calls * 1000)
    p50 = {name: statistics.median(values) for name, values in times.items()}
    first, second = p50
    rows = [f"| {name} | {runners[name][1] / 1024:.1f} KiB | {p50[name]:.4f} | {p50[name] / p50[first]:.3f} |" for name in p50]
    tflite_gap = float(np.abs(outputs[first] - outputs[second]).max())
    text = "\n".join([
        "# Decoder upsampling: NearestUpsampling against Resizing", "",
        f"`{args.model}` ({vae.variant}), fixed batch 1, float32 TFLite, LiteRT with 1 thread; median of {args.rounds} "
        f"rounds of {args.calls} calls, interleaved. CPU: {platform.processor() or platform.machine()}, "
        f"{' '.join(f for f in ('avx2', 'fma', 'avx512f', 'avx512_vnni') if f in flags())}.", "",
        "| upsampling | file | p50 ms | vs first |", "|---|---|---|---|", *rows, "",
        f"Largest output difference: Keras {keras_gap:.3g}, TFLite {tflite_gap:.3g}.", "",
    ])
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "upsampling_latency.md").write_text(text)
    (RESULTS / "upsampling_latency.json").write_text(json.dumps({"p50_ms": p50, "keras_max_abs_diff": keras_gap,
                                                                 "tflite_max_abs_diff": tflite_gap}, indent=2) + "\n")
    print(text)


if __name__ == "__main__":
    main()
