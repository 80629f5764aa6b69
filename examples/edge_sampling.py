"""An app's use of an exported VAE with the runtime alone: no TensorFlow, no Keras.

Install only the runtime (`pip install "vae-edge[runtime]"`), export a bundle once where
training happened (`vae-edge export runs/<name>/model.keras`), then:

    python examples/edge_sampling.py export/<name> [--backend onnx] [--mode int8]

It draws a grid of new images, reconstructs them, scores them and a few noise images
against the bundle's anomaly threshold, and morphs one sample into another.
"""

import argparse
from pathlib import Path

import numpy as np

from vae_edge.image_grid import save_image_grid
from vae_edge.runtime import EdgeVAE


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", type=Path)
    parser.add_argument("--backend", choices=["tflite", "onnx"])
    parser.add_argument("--mode")
    parser.add_argument("--out", type=Path, default=Path("edge_sampling"))
    args = parser.parse_args()

    vae = EdgeVAE.load(args.bundle, backend=args.backend, mode=args.mode)  # checks every file's sha256
    print(f"{vae}: images {vae.input_shape}, {vae.latent_dim} latent dimensions")
    args.out.mkdir(parents=True, exist_ok=True)

    samples = vae.sample(64, seed=0)  # the same seed gives the same images on every backend
    save_image_grid(samples, args.out / "samples.png")

    reconstructions = vae.reconstruct(samples[:8])
    save_image_grid(np.concatenate([samples[:8], reconstructions]), args.out / "reconstructions.png", columns=8)

    noise = np.random.default_rng(0).random((8, *vae.input_shape), dtype=np.float32)
    for name, images in (("samples", samples[:8]), ("noise", noise)):
        scores = vae.anomaly_score(images)
        print(f"{name:8} score {np.median(scores):8.1f} (median), anomalies {vae.is_anomaly(images).sum()}/8"
              f" at threshold {vae.threshold:.1f}")

    frames = vae.interpolate(samples[0], samples[1], steps=10, method="slerp")
    save_image_grid(frames, args.out / "interpolation.png", columns=10)
    print(f"wrote {args.out}/samples.png, reconstructions.png, interpolation.png")


if __name__ == "__main__":
    main()
