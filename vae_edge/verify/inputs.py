"""What every runner of a verification is fed: held-out images (and their classes), and the decoder's
latents (prior draws, then the Keras encoder's z_mean of the images). Saved in the bundle next to
the outputs they produced, so outputs captured anywhere can be judged against the same reference."""

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vae_edge.errors import BadInputError, MissingFileError
from vae_edge.fsutil import atomic_file
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
        with atomic_file(path) as partial, open(partial, "wb") as stream:
            np.savez_compressed(stream, **arrays)
        return Path(path)

    @classmethod
    def load(cls, path) -> "VerifyInputs":
        path = Path(path)
        if not path.is_file():
            raise MissingFileError(f"{path}: no saved verification inputs; verify the bundle with its model first")
        try:
            with np.load(path, allow_pickle=False) as data:
                return cls(data["images"], data["latents"], int(data["seed"]), int(data["num_prior"]),
                           data["labels"] if "labels" in data else None,
                           data["latent_labels"] if "latent_labels" in data else None)
        except (KeyError, ValueError, OSError) as error:
            raise BadInputError(f"{path}: not verification inputs written by vae-edge ({error})") from None
