"""`vae-edge sample`, `reconstruct`, `score` and `interpolate`: a bundle on the runtime alone.

These commands never import TensorFlow, so they run where only `vae-edge[runtime]` is installed.
"""

import os
import warnings
from pathlib import Path

import click
import numpy as np

from vae_edge.data import IMAGE_SUFFIXES, open_image, picture_array, validate_images
from vae_edge.errors import BadInputError, MissingFileError
from vae_edge.fsutil import atomic_file, read_arrays
from vae_edge.labels import labels_for
from vae_edge.registry import MODES, RUNTIME_FORMATS, names
from vae_edge.runtime.edge import INTERPOLATIONS, MAX_TEMPERATURE, EdgeVAE, UnverifiedModeWarning

OUTPUT_SUFFIXES = (".png", ".npy")


def _engine_options(function):
    function = click.option("--threads", type=click.IntRange(min=1), help="Engine threads. Default: the engine's own.")(function)
    function = click.option("--mode", type=click.Choice(names(MODES)),
                            help="Quantization mode. Default: the fastest verified for this CPU where bench.json was measured "
                            "on it, else the most compact verified one.")(function)
    function = click.option("--backend", type=click.Choice(names(RUNTIME_FORMATS)),
                            help=f"Default: {RUNTIME_FORMATS[0]} if its engine is installed.")(function)
    return click.argument("bundle", type=click.Path(path_type=Path))(function)


def _label_option(function):
    return click.option("--label", help="The class, by index or name (conditional bundles only).")(function)


def _output_option(default: str):
    return click.option("-o", "--out", default=default, show_default=True, type=click.Path(path_type=Path),
                        help="A .png grid, or a .npy array of float32 images.")


def _load(bundle, backend, mode, threads):
    """The bundle in the runtime; a mode not verified for this CPU runs with one warning line on stderr."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UnverifiedModeWarning)
        vae = EdgeVAE.load(bundle, backend=backend, mode=mode, num_threads=threads)
    for warning in caught:
        click.secho(f"Warning: {warning.message}", fg="yellow", err=True)
    return vae


def read_images(paths, shape: tuple[int, int, int]) -> tuple[list[str], np.ndarray]:
    """Image files (resized to `shape`) and .npy arrays (of `shape`) as names and one float32 batch."""
    height, width, channels = shape
    names, batches = [], []
    for path in map(Path, paths):
        if not path.is_file():
            raise MissingFileError(f"{path}: no such image or .npy file")
        if path.suffix.lower() == ".npy":
            array = read_arrays(path)
            if isinstance(array, dict):
                raise BadInputError(f"{path}: holds several arrays (an .npz); save the images alone with np.save")
            if array.shape in (tuple(shape), tuple(shape[:2])):
                array = array[np.newaxis]  # one image
            array = validate_images(array, str(path))
            if array.shape[1:] != tuple(shape):
                raise BadInputError(f"{path}: expected images of shape (N, {height}, {width}, {channels}), got {array.shape}")
            names += [f"{path}[{i}]" for i in range(len(array))] if len(array) > 1 else [str(path)]
        elif path.suffix.lower() in IMAGE_SUFFIXES:
            array = validate_images(picture_array(open_image(path), height, width, channels)[np.newaxis], str(path))
            names.append(str(path))
        else:
            raise BadInputError(f"{path}: expected an image ({', '.join(IMAGE_SUFFIXES)}) or a .npy file")
        batches.append(array)
    if not batches:
        raise BadInputError("no images given")
    return names, np.concatenate(batches)


def _check_output(out: Path) -> Path:
    """Refuse, before any work, an output that is a folder, has the wrong suffix or cannot be written."""
    if out.is_dir():
        raise BadInputError(f"{out} is a folder; name a file ending in {' or '.join(OUTPUT_SUFFIXES)}")
    if out.suffix.lower() not in OUTPUT_SUFFIXES:
        raise BadInputError(f"{out}: the output must end in {' or '.join(OUTPUT_SUFFIXES)}")
    out.parent.mkdir(parents=True, exist_ok=True)
    if not os.access(out.parent, os.W_OK):
        raise BadInputError(f"{out}: cannot write into {out.parent}; choose another output path")
    return out


def _write(images: np.ndarray, out: Path, columns: int | None = None) -> None:
    from vae_edge.image_grid import save_image_grid

    if out.suffix.lower() == ".npy":
        with atomic_file(out) as partial, open(partial, "wb") as stream:
            np.save(stream, images.astype(np.float32))
    else:
        save_image_grid(images, out, columns)


@click.command()
@_engine_options
@click.option("-n", "--num-samples", default=64, show_default=True, type=int, help="How many images.")
@click.option("--seed", type=click.IntRange(min=0), help="Same seed, same images (on every backend).")
@click.option("--temperature", default=1.0, show_default=True, type=click.FloatRange(0, MAX_TEMPERATURE),
              help="Prior standard deviation.")
@_label_option
@_output_option("samples.png")
def sample(bundle, backend, mode, threads, num_samples, seed, temperature, label, out):
    """Draw new images from an exported model (of class --label, for a conditional one)."""
    out = _check_output(out)
    vae = _load(bundle, backend, mode, threads)
    _write(vae.sample(num_samples, seed=seed, temperature=temperature, label=label), out)
    of_class = f", class {vae.class_names[labels_for(1, vae.class_names, label)[0]]}" if label is not None else ""
    click.echo(f"wrote {out} ({num_samples} samples{of_class}, {vae.backend}/{vae.mode})")


@click.command()
@_engine_options
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=Path))
@_label_option
@_output_option("reconstructions.png")
def reconstruct(bundle, backend, mode, threads, images, label, out):
    """Reconstruct images (files, resized to the model's input, or .npy): originals above, reconstructions below."""
    out = _check_output(out)
    vae = _load(bundle, backend, mode, threads)
    _, x = read_images(images, vae.input_shape)
    reconstructions = vae.reconstruct(x, label=label)
    if out.suffix.lower() == ".npy":
        _write(reconstructions, out)
    else:
        _write(np.concatenate([x, reconstructions]), out, columns=len(x))
    click.echo(f"wrote {out} ({len(x)} reconstructions, {vae.backend}/{vae.mode})")


@click.command()
@_engine_options
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=Path))
@_label_option
def score(bundle, backend, mode, threads, images, label):
    """Anomaly score of each image (negative ELBO, nats) and its verdict against the bundle's threshold."""
    vae = _load(bundle, backend, mode, threads)
    names, x = read_images(images, vae.input_shape)
    scores = vae.anomaly_score(x, label=label)
    click.echo(f"threshold {vae.threshold:.2f} ({vae.backend}/{vae.mode})")
    for name, value in zip(names, scores):
        click.echo(f"{value:10.2f}  {'ANOMALY' if value > vae.threshold else 'normal':<7}  {name}")


@click.command()
@_engine_options
@click.argument("image_a", type=click.Path(path_type=Path))
@click.argument("image_b", type=click.Path(path_type=Path))
@click.option("--steps", default=8, show_default=True, type=int, help="Images in the sequence, both ends included.")
@click.option("--method", type=click.Choice(INTERPOLATIONS), default=INTERPOLATIONS[0], show_default=True)
@_label_option
@_output_option("interpolation.png")
def interpolate(bundle, backend, mode, threads, image_a, image_b, steps, method, label, out):
    """Morph one image into another through the latent space."""
    out = _check_output(out)
    vae = _load(bundle, backend, mode, threads)
    (_, a), (_, b) = read_images([image_a], vae.input_shape), read_images([image_b], vae.input_shape)
    if len(a) != 1 or len(b) != 1:
        raise BadInputError("IMAGE_A and IMAGE_B must each hold one image")
    _write(vae.interpolate(a[0], b[0], steps, method, label=label), out, columns=steps)
    click.echo(f"wrote {out} ({steps} steps, {method}, {vae.backend}/{vae.mode})")
