import sys
import types

import numpy as np
import pytest
from PIL import Image

from vae_edge.data import load_dataset, load_images, split
from vae_edge.errors import BadInputError, MissingFileError


def test_embedded_digits_load_offline_and_split_deterministically():
    a = load_dataset("mnist-5k", seed=3)
    b = load_dataset("mnist-5k", seed=3)
    assert (len(a.train), len(a.val), len(a.test)) == (4000, 500, 500)
    assert a.image_shape == (28, 28, 1) and a.train.dtype == np.float32
    assert 0.0 <= a.train.min() and a.train.max() <= 1.0
    np.testing.assert_array_equal(a.test, b.test)
    assert not np.array_equal(a.test, load_dataset("mnist-5k", seed=4).test)


def test_splits_do_not_overlap():
    images = np.arange(50, dtype=np.uint8).reshape(50, 1, 1, 1) * 5
    s = split(images / 255.0, "toy", seed=0)
    seen = np.concatenate([s.train, s.val, s.test]).ravel()
    assert len(np.unique(seen)) == 50


def _write_images(folder, sizes, mode="L"):
    folder.mkdir()
    for i, size in enumerate(sizes):
        Image.fromarray(np.full(size[::-1] + ((3,) if mode == "RGB" else ()), 40 * i, np.uint8), mode).save(folder / f"{i}.png")
    return folder


def test_image_folder_of_any_size_is_resized(tmp_path):
    folder = _write_images(tmp_path / "imgs", [(30, 20), (64, 64), (10, 12)])
    images = load_images(str(folder), image_size=16)
    assert images.shape == (3, 16, 16, 1)
    assert load_images(str(folder), image_size=16, channels=3).shape == (3, 16, 16, 3)


def test_rgb_folder_keeps_colour_and_first_image_size(tmp_path):
    folder = _write_images(tmp_path / "rgb", [(20, 20), (40, 40)], mode="RGB")
    assert load_images(str(folder)).shape == (2, 20, 20, 3)


def test_npy_and_npz_arrays(tmp_path):
    np.save(tmp_path / "a.npy", np.full((5, 8, 8), 255, np.uint8))
    np.savez(tmp_path / "b.npz", x=np.zeros((5, 8, 8, 3), np.float32))
    assert load_images(str(tmp_path / "a.npy")).max() == 1.0
    assert load_images(str(tmp_path / "b.npz")).shape == (5, 8, 8, 3)


@pytest.mark.parametrize(
    "array, message",
    [
        (np.zeros((5, 8)), "expected images of shape"),
        (np.full((5, 8, 8), np.nan, np.float32), "NaN or Inf"),
        (np.full((5, 8, 8), 3.0, np.float32), r"must be in \[0, 1\]"),
        (np.full((5, 8, 8), -1, np.int16), "0..255"),
        (np.zeros((5, 8, 8, 2), np.float32), "1 or 3 channels"),
        (np.zeros((0, 8, 8), np.float32), "no images"),
    ],
)
def test_bad_arrays_name_the_problem(tmp_path, array, message):
    np.save(tmp_path / "bad.npy", array)
    with pytest.raises(BadInputError, match=message):
        load_images(str(tmp_path / "bad.npy"))


def test_missing_path(tmp_path):
    with pytest.raises(MissingFileError, match="neither a known name"):
        load_images(str(tmp_path / "nope"))


def test_empty_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(BadInputError, match="no image files"):
        load_images(str(tmp_path / "empty"))


def test_unreadable_image(tmp_path):
    folder = _write_images(tmp_path / "imgs", [(8, 8)])
    (folder / "broken.png").write_bytes(b"not a png")
    with pytest.raises(BadInputError, match="broken.png: cannot read this image"):
        load_images(str(folder))


def test_corrupt_array_file(tmp_path):
    (tmp_path / "x.npy").write_bytes(b"garbage")
    with pytest.raises(BadInputError, match="cannot read this array file"):
        load_images(str(tmp_path / "x.npy"))


def test_too_few_images_to_split():
    with pytest.raises(BadInputError, match="too few"):
        split(np.zeros((2, 4, 4, 1), np.float32), "tiny")


def test_offline_keras_dataset_points_to_the_embedded_one(monkeypatch):
    """Keras' download fails offline; a stand-in module keeps this test free of the Keras import (~30 s)."""

    def offline():
        raise OSError("no network")

    keras = types.SimpleNamespace(datasets=types.SimpleNamespace(mnist=types.SimpleNamespace(load_data=offline)))
    monkeypatch.setitem(sys.modules, "keras", keras)
    with pytest.raises(BadInputError, match="mnist-5k.*folder"):
        load_images("mnist")


def test_embedded_digits_carry_their_labels_and_every_split_holds_each_class_in_proportion():
    from vae_edge.data import DIGITS

    s = load_dataset("mnist-5k", seed=0)
    assert s.labelled and s.class_names == DIGITS
    assert np.bincount(s.train_labels).tolist() == [400] * 10
    assert np.bincount(s.val_labels).tolist() == [50] * 10 and np.bincount(s.test_labels).tolist() == [50] * 10


def test_a_sample_of_a_data_set_stored_by_class_keeps_every_class():
    s = load_dataset("mnist-5k", max_samples=200, seed=0)  # mnist-5k stores its digits 0..9 in order
    assert len(s.train) + len(s.val) + len(s.test) == 200
    assert set(np.unique(s.train_labels)) == set(range(10))


def test_stratified_split_is_deterministic_and_disjoint():
    labels = np.repeat(np.arange(3), [60, 30, 10])
    images = (np.arange(100, dtype=np.float32) / 100).reshape(100, 1, 1, 1)
    a = split(images, "toy", seed=1, labels=labels)
    b = split(images, "toy", seed=1, labels=labels)
    np.testing.assert_array_equal(a.test_labels, b.test_labels)
    assert len(np.unique(np.concatenate([a.train, a.val, a.test]).ravel())) == 100
    assert np.bincount(a.val_labels, minlength=3).tolist() == [6, 3, 1]
    np.testing.assert_array_equal(labels[np.round(a.train.ravel() * 100).astype(int)], a.train_labels)


def test_a_folder_of_class_folders_is_labelled_by_folder_name(tmp_path):
    from vae_edge.data import load_labelled

    root = tmp_path / "defects"
    root.mkdir()
    _write_images(root / "scratch", [(8, 8)] * 2)
    _write_images(root / "dent", [(8, 8)] * 3)
    (root / "empty").mkdir()
    data = load_labelled(str(root))
    assert data.class_names == ("dent", "scratch") and data.labels.tolist() == [0, 0, 0, 1, 1]
    assert data.images.shape == (5, 8, 8, 1)


def test_npz_labels_and_class_names(tmp_path):
    from vae_edge.data import load_labelled

    np.savez(tmp_path / "l.npz", x=np.zeros((4, 8, 8), np.uint8), y=np.array([[0], [2], [1], [2]]),
             class_names=np.array(["cat", "dog", "eel"]))
    data = load_labelled(str(tmp_path / "l.npz"))
    assert data.labels.tolist() == [0, 2, 1, 2] and data.class_names == ("cat", "dog", "eel")
    np.savez(tmp_path / "n.npz", x=np.zeros((3, 8, 8), np.uint8), y=np.array([0, 1, 3]))
    assert load_labelled(str(tmp_path / "n.npz")).class_names == ("0", "1", "2", "3")


@pytest.mark.parametrize("labels, message", [
    (np.array([0, 1, 2]), r"expected 4 labels \(one per image\), got shape \(3,\)"),
    (np.array([0, -1, 2, 1]), r"labels must be class indices 0..2, found -1..2"),
    (np.array([0.5, 1, 2, 1]), "labels must be integer class indices, got dtype float64"),
    (np.array(["a", "b", "c", "d"]), "labels must be integer class indices"),
])
def test_bad_npz_labels_are_one_clear_error(tmp_path, labels, message):
    from vae_edge.data import load_labelled

    np.savez(tmp_path / "bad.npz", x=np.zeros((4, 8, 8), np.uint8), y=labels)
    with pytest.raises(BadInputError, match=message):
        load_labelled(str(tmp_path / "bad.npz"))
