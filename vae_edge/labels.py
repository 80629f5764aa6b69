"""Class labels of a conditional VAE: checked once, here, for every entry point.

A graph takes its label as a one-hot float32 row (N, K): every runtime and delegate runs a
concatenation, while an integer input would need a gather or one-hot op that mobile
delegates leave on the CPU. Users name a label by its index or its class name.
"""

from collections.abc import Sequence

import numpy as np

from vae_edge.errors import BadInputError
from vae_edge.signatures import LABEL

Label = int | str


def check_labels(labels, count: int, num_classes: int, name: str = "labels") -> np.ndarray:
    """`labels` as int64 (count,) in [0, num_classes): a 1-D integer array of `count` values."""
    array = np.asarray(labels)
    if array.ndim != 1 or len(array) != count:
        raise BadInputError(f"{name}: expected {count} labels (one per image), got shape {array.shape}")
    if array.dtype.kind == "f" and np.all(np.isfinite(array)) and np.all(array == np.round(array)):
        array = array.astype(np.int64)
    if array.dtype.kind not in "iu":
        raise BadInputError(f"{name}: labels must be integer class indices, got dtype {array.dtype}")
    if count and (array.min() < 0 or array.max() >= num_classes):
        raise BadInputError(
            f"{name}: labels must be class indices 0..{num_classes - 1}, found {array.min()}..{array.max()}"
        )
    return array.astype(np.int64)


def one_hot(indices: np.ndarray, num_classes: int) -> np.ndarray:
    """(N,) class indices -> (N, num_classes) float32 rows, the graphs' `label` input."""
    return np.eye(num_classes, dtype=np.float32)[np.asarray(indices, dtype=np.int64)]


def label_feed(classes: np.ndarray | None, num_classes: int) -> dict[str, np.ndarray]:
    """The `label` input of a graph for rows of `classes`, to merge into its feeds; {} without classes."""
    return {} if classes is None else {LABEL: one_hot(classes, num_classes)}


def label_index(label: Label, class_names: Sequence[str]) -> int:
    """A label given as an index (int or digit string) or a class name -> its index."""
    names = list(class_names)
    if isinstance(label, str) and label in names:
        return names.index(label)
    try:
        index = int(label)
    except (TypeError, ValueError):
        index = None
    if isinstance(label, bool) or index is None or not 0 <= index < len(names) or (not isinstance(label, str) and index != label):
        raise BadInputError(f"label {label!r} is not a class of this model; use an index 0..{len(names) - 1} "
                            f"or a name: {', '.join(names)}")
    return index


def labels_for(count: int, class_names: Sequence[str], label: Label | None = None,
               labels: Sequence[Label] | None = None) -> np.ndarray | None:
    """The (count,) class indices a call asks for, checked against the model: `label` for every row or
    one `labels` entry per row; None for an unconditional model (which refuses any label)."""
    if label is not None and labels is not None:
        raise BadInputError("pass either label (one class for every row) or labels (one per row), not both")
    if not class_names:
        if label is not None or labels is not None:
            raise BadInputError("this model is unconditional (trained without labels); drop the label")
        return None
    if label is None and labels is None:
        raise BadInputError(f"this model is conditional: give a class with --label or label= (an index "
                            f"0..{len(class_names) - 1} or a name: {', '.join(class_names)}), or labels= with one per row")
    if labels is None:
        return np.full(count, label_index(label, class_names), dtype=np.int64)
    if isinstance(labels, np.ndarray) and labels.dtype.kind in "iu":
        return check_labels(labels, count, len(class_names))
    if isinstance(labels, (str, bytes)) or not isinstance(labels, (Sequence, np.ndarray)):
        raise BadInputError(f"labels must be a sequence with one label per row, got {type(labels).__name__}")
    if len(labels) != count:
        raise BadInputError(f"labels: expected {count} (one per row), got {len(labels)}")
    return np.array([label_index(item, class_names) for item in np.asarray(labels).tolist()], dtype=np.int64)


def cycled(count: int, num_classes: int) -> np.ndarray:
    """0, 1, ..., K-1, 0, 1, ...: every class equally often, for inputs that have no label of their own."""
    return np.arange(count, dtype=np.int64) % num_classes


def check_every_class(labels: np.ndarray, class_names, what: str) -> None:
    """Refuse labels that leave a class without a single image: a conditional model would be trained on it,
    or verified as passing, without one example of it."""
    missing = [str(name) for k, name in enumerate(class_names) if not np.any(np.asarray(labels) == k)]
    if missing:
        shown = ", ".join(missing[:8]) + (", ..." if len(missing) > 8 else "")
        raise BadInputError(f"{what} have no image of {len(missing)} of the {len(class_names)} classes ({shown}); "
                            "use data with every class, or name only the classes the labels use")
