"""Cold start: seconds from launching a new Python process to its first generated image.

Compares the TensorFlow-free runtime (LiteRT and onnxruntime) with loading the `.keras`
model in Keras, which is what an app would pay without an export. Each case runs in a
fresh process `--runs` times; the median is reported.

    python benchmarks/cold_start.py export/<name> runs/<name>/model.keras [--runs 3]

Leave out the model to time only the runtime (in a runtime-only install, say).

The clock starts before the process is spawned and stops when the child has its first
sample, so interpreter start-up and imports count, process teardown does not.
"""

import argparse
import os
import statistics
import subprocess
import sys
import time

CASES = {
    "runtime tflite float32": "from vae_edge.runtime import EdgeVAE\n"
    "EdgeVAE.load({bundle!r}, 'tflite', 'float32').sample(1, seed=0)",
    "runtime onnx float32": "from vae_edge.runtime import EdgeVAE\nEdgeVAE.load({bundle!r}, 'onnx', 'float32').sample(1, seed=0)",
    "keras (load_model + sample)": "from vae_edge.model.loading import load_vae\nload_vae({model!r}).sample(1, seed=0)",
}


def time_to_first_sample(code: str) -> float:
    start = time.time()
    child = code + "\nimport time; print(time.time())"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, env=env, check=True)
    return float(result.stdout.split()[-1]) - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle")
    parser.add_argument("model", nargs="?", help="the .keras file the bundle was exported from")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    for name, template in CASES.items():
        if "{model" in template and not args.model:
            continue
        code = template.format(bundle=args.bundle, model=args.model)
        seconds = [time_to_first_sample(code) for _ in range(args.runs)]
        print(f"{name:30} median {statistics.median(seconds):6.2f} s   runs {', '.join(f'{s:.2f}' for s in seconds)}")


if __name__ == "__main__":
    main()
