"""Image grids saved as PNG: plain numpy tiling saved with Pillow, so they show every pixel.

Used by training's pictures, `vae-edge run`'s samples and the runtime's `vae-edge sample`
(no matplotlib, no TensorFlow).
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
