"""The Keras model: presets, layers, networks and the VAE itself."""

from vae_edge.model.layers import Sampling
from vae_edge.model.presets import PRESETS
from vae_edge.model.vae import VAE

__all__ = ["PRESETS", "Sampling", "VAE"]
