"""Run an export bundle without TensorFlow: numpy plus ai-edge-litert or onnxruntime.

    from vae_edge.runtime import EdgeVAE
    vae = EdgeVAE.load("export/my-model")      # LiteRT, the fastest (or most compact) mode verified for this CPU
    images = vae.sample(16, seed=0)             # (16, H, W, C) float32 in [0, 1]
    vae.is_anomaly(images)                      # against the threshold stored at export
"""

from vae_edge.runtime.edge import EdgeVAE, default_backend, default_mode
from vae_edge.runtime.engines import open_artifact, open_engine

__all__ = ["EdgeVAE", "default_backend", "default_mode", "open_artifact", "open_engine"]
