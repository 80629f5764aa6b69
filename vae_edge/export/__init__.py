"""Export a trained VAE as a bundle: SavedModel, TFLite in every mode, ONNX, ORT, the web app, a manifest.

    from vae_edge.export import export_bundle
    export_bundle(model, "export/small", calibration_images=x_train, heldout_images=x_test)

`exporter` plans and writes the bundle; each format's converter lives in its own module
(`savedmodel`, `tflite`, `onnx`, `ort`) and registers itself in `vae_edge.registry`. The
exporter needs Keras, so it loads on first use: `metadata`, `mobile` and `ort` stay light.
"""

from vae_edge.registry import artifact_path

__all__ = ["MIN_CALIBRATION_SAMPLES", "artifact_path", "export_bundle", "plan", "source_facts"]


def __getattr__(name: str):
    if name in ("MIN_CALIBRATION_SAMPLES", "export_bundle", "plan", "source_facts"):
        from vae_edge.export import exporter

        return getattr(exporter, name)
    raise AttributeError(f"module 'vae_edge.export' has no attribute {name!r}")
