"""Export a trained VAE as a bundle: SavedModel, TFLite in every mode, ONNX, and a manifest.

    from vae_edge.export import export_bundle
    export_bundle(model, "export/small", calibration_images=x_train, heldout_images=x_test)

`exporter` plans and writes the bundle; each format's converter lives in its own module
(`savedmodel`, `tflite`, `onnx`) and registers itself in `vae_edge.registry`.
"""

from vae_edge.export.exporter import MIN_CALIBRATION_SAMPLES, artifact_path, export_bundle, plan, source_facts

__all__ = ["MIN_CALIBRATION_SAMPLES", "artifact_path", "export_bundle", "plan", "source_facts"]
