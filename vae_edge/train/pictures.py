"""Pictures of a training run: curves, samples, reconstructions and the latent manifold.

matplotlib draws the charts (Agg backend, no display needed); image grids come from
`vae_edge.image_grid`.
"""

import functools
from pathlib import Path

import numpy as np

from vae_edge.fsutil import atomic_file
from vae_edge.image_grid import save_image_grid


def save_reconstructions(originals: np.ndarray, reconstructions: np.ndarray, path, count: int = 10) -> Path:
    """Originals on the top row, reconstructions below."""
    count = min(count, len(originals))
    return save_image_grid(np.concatenate([originals[:count], reconstructions[:count]]), path, columns=count)


def save_training_curves(history: dict[str, list[float]], path) -> Path:
    """Loss, reconstruction and KL per epoch (train and validation), plus the KL weight when it changed
    (a flat panel at the constant β says nothing)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [name for name in ("loss", "reconstruction_loss", "kl_loss") if name in history]
    if len(set(history.get("kl_weight", ()))) > 1:
        panels.append("kl_weight")
    figure, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.2), squeeze=False)
    for axis, name in zip(axes[0], panels):
        epochs = np.arange(1, len(history[name]) + 1)
        axis.plot(epochs, history[name], marker="o", label="train")
        if f"val_{name}" in history:
            axis.plot(epochs, history[f"val_{name}"], marker="o", label="validation")
        axis.set_title(name.replace("_", " ") + (" (nats/image)" if name != "kl_weight" else ""))
        axis.set_xlabel("epoch")
        axis.grid(alpha=0.3)
        axis.legend()
    figure.tight_layout()
    with atomic_file(path) as partial:
        figure.savefig(partial, dpi=100, format="png")
    plt.close(figure)
    return Path(path)


def save_latent_manifold(decode, path, steps: int = 15, extent: float = 2.5) -> Path:
    """For a 2-D latent space: decode a regular grid of z and tile the images."""
    axis = np.linspace(-extent, extent, steps, dtype=np.float32)
    z = np.array([[x, y] for y in axis[::-1] for x in axis], dtype=np.float32)
    return save_image_grid(decode(z), path, columns=steps, scale=2)


def write_pictures(model, images: np.ndarray, folder: Path, history: dict | None = None, seed: int = 0,
                   labels: np.ndarray | None = None) -> None:
    """Training curves, a sample grid (a row per class for a conditional model), reconstructions, and
    the manifold (of the first class, for a conditional model) when latent_dim == 2."""
    if history:
        save_training_curves(history, folder / "training_curves.png")
    save_samples(model, folder / "samples.png", seed)
    labels = labels[:10] if model.conditional else None
    z_mean, _ = model.encode(images[:10], labels)
    save_reconstructions(images[:10], model.decode(z_mean, labels), folder / "reconstructions.png")
    if model.latent_dim == 2:
        decode = functools.partial(model.decode, label=0) if model.conditional else model.decode
        save_latent_manifold(decode, folder / "latent_manifold.png")


SAMPLE_COLUMNS = 8


def save_samples(model, path: Path, seed: int = 0) -> None:
    """64 seeded samples in a grid; for a conditional model a row per class, named on the left."""
    if not model.conditional:
        save_image_grid(model.sample(64, seed=seed), path, columns=SAMPLE_COLUMNS)
        return
    rows = np.repeat(np.arange(model.num_classes), SAMPLE_COLUMNS)
    save_image_grid(model.sample(len(rows), seed=seed, labels=rows), path, columns=SAMPLE_COLUMNS,
                          row_labels=model.class_names)
