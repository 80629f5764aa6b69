"""Export a Keras VAE as a bundle: SavedModel, TFLite in every mode, ONNX, ORT, the web app, a manifest.

    from vae_edge.export import export_bundle
    export_bundle(model, "export/small", calibration_images=x_train, heldout_images=x_test)
    export_encoder_decoder(encoder, decoder, "export/mine", calibration_images=x_train, heldout_images=x_test)

`exporter` plans and writes the bundle; each format's converter lives in its own module
(`savedmodel`, `tflite`, `onnx`, `ort`) and registers itself in `vae_edge.registry`;
`ExportOptions` holds every choice. The exporter needs Keras, so it loads on first use:
`options`, `metadata`, `mobile` and `ort` stay light.
"""

from vae_edge.export.options import MIN_CALIBRATION_SAMPLES, ExportOptions
from vae_edge.registry import artifact_path

__all__ = ["MIN_CALIBRATION_SAMPLES", "ExportOptions", "artifact_path", "export_bundle", "export_encoder_decoder", "plan"]


def __getattr__(name: str):
    if name in ("export_bundle", "export_encoder_decoder", "plan"):
        from vae_edge.export import exporter

        return getattr(exporter, name)
    raise AttributeError(f"module 'vae_edge.export' has no attribute {name!r}")
