"""Pictures people look at: training curves, image grids, the latent manifold.

matplotlib draws the charts (Agg backend, no display needed); image grids are plain
numpy tiling saved with Pillow so they show every pixel.
"""

from pathlib import Path

import numpy as np

from vae_edge.fsutil import atomic_file


def image_grid(images: np.ndarray, columns: int | None = None, pad: int = 1) -> np.ndarray:
    """Tile (N, H, W, C) images in [0, 1] into one uint8 (rows*H, columns*W, C) picture."""
    images = np.asarray(images)
    count, height, width, channels = images.shape
    columns = columns or int(np.ceil(np.sqrt(count)))
    rows = int(np.ceil(count / columns))
    grid = np.ones((rows * (height + pad) + pad, columns * (width + pad) + pad, channels), dtype=np.float32)
    for index, image in enumerate(images):
        r, c = divmod(index, columns)
        top, left = pad + r * (height + pad), pad + c * (width + pad)
        grid[top : top + height, left : left + width] = image
    return (np.clip(grid, 0.0, 1.0) * 255).round().astype(np.uint8)


def save_image_grid(images: np.ndarray, path, columns: int | None = None, scale: int = 3,
                    row_labels: list[str] | None = None) -> Path:
    """Save a grid of images as PNG, enlarged `scale` times with nearest-neighbour pixels; `row_labels`
    names each row in a margin on the left (a conditional model's classes)."""
    from PIL import Image, ImageDraw

    grid = image_grid(images, columns)
    picture = Image.fromarray(grid[..., 0] if grid.shape[-1] == 1 else grid)
    picture = picture.resize((picture.width * scale, picture.height * scale), Image.Resampling.NEAREST)
    if row_labels:
        margin = 8 + 7 * max(len(label) for label in row_labels)
        labelled = Image.new(picture.mode, (picture.width + margin, picture.height), 255 if picture.mode == "L" else "white")
        labelled.paste(picture, (margin, 0))
        draw, row_height = ImageDraw.Draw(labelled), picture.height / len(row_labels)
        for row, label in enumerate(row_labels):
            draw.text((4, (row + 0.5) * row_height), label, fill=0 if picture.mode == "L" else "black", anchor="lm")
        picture = labelled
    with atomic_file(path) as partial:
        picture.save(partial, format="PNG")
    return Path(path)


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
