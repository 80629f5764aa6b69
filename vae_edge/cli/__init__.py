"""The `vae-edge` command line (see `app`)."""

from vae_edge.cli.app import VaeEdgeGroup, main

__all__ = ["VaeEdgeGroup", "main"]
