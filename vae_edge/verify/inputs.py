"""What every runner of a verification is fed: held-out images (and their classes), and the decoder's
latents (prior draws, then the Keras encoder's z_mean of the images). Saved in the bundle next to
the outputs they produced, so outputs captured anywhere can be judged against the same reference."""

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vae_edge.errors import BadInputError, MissingFileError
from vae_edge.fsutil import read_arrays, write_npz
from vae_edge.labels import label_feed
from vae_edge.registry import Graph
from vae_edge.signatures import IMAGE, Z


@dataclass
class VerifyInputs:
    images: np.ndarray  # (N, H, W, C) float32 in [0, 1]
    latents: np.ndarray  # (P + N, latent_dim): `num_prior` prior draws, then the images' Keras z_mean
    seed: int  # of the prior draws and of the ELBO's noise
    num_prior: int
    labels: np.ndarray | None = None  # the images' class indices (conditional models)
    latent_labels: np.ndarray | None = None  # a class per latent: the prior's cycle through the classes, then labels

    def subset(self, images: int | None) -> "VerifyInputs":
        """The first `images` images and as many of each kind of latent (None: all): what a slow runner (an
        emulated CPU) is fed. Row i of every array, and of the ELBO's noise, is the same as in the whole set."""
        if images is None or images >= len(self.images):
            return self
        rows = self.latent_rows(images)
        return VerifyInputs(self.images[:images], self.latents[rows], self.seed, min(self.num_prior, images),
                            None if self.labels is None else self.labels[:images],
                            None if self.latent_labels is None else self.latent_labels[rows])

    def latent_rows(self, images: int) -> np.ndarray:
        """Which rows of `latents` the subset of the first `images` images keeps (all of them for every image)."""
        if images >= len(self.images):
            return np.arange(len(self.latents))
        return np.concatenate([np.arange(min(self.num_prior, images)), self.num_prior + np.arange(images)])

    def feeds(self, graph: Graph, num_classes: int) -> dict[str, np.ndarray]:
        """The named inputs of one graph."""
        if graph == Graph.ENCODER:
            return {IMAGE: self.images, **label_feed(self.labels, num_classes)}
        return {Z: self.latents, **label_feed(self.latent_labels, num_classes)}

    def save(self, path) -> Path:
        arrays = {"images": self.images, "latents": self.latents, "seed": np.int64(self.seed),
                  "num_prior": np.int64(self.num_prior)}
        arrays.update({name: value for name, value in (("labels", self.labels), ("latent_labels", self.latent_labels))
                       if value is not None})
        return write_npz(path, arrays)

    @classmethod
    def load(cls, path) -> "VerifyInputs":
        path = Path(path)
        if not path.is_file():
            raise MissingFileError(f"{path}: no saved verification inputs; verify the bundle with its model first")
        data = read_arrays(path, expected="verification inputs written by vae-edge")
        try:
            if not isinstance(data, dict):
                raise ValueError("one array, not an .npz")
            return cls(data["images"], data["latents"], int(data["seed"]), int(data["num_prior"]),
                       data.get("labels"), data.get("latent_labels"))
        except (KeyError, ValueError, TypeError) as error:
            raise BadInputError(f"{path}: not verification inputs written by vae-edge ({error})") from None
