"""Every input shape training accepts exports, verifies and runs in every format and mode.

Odd heights and widths make the decoder's nearest-neighbour upsampling land on uneven sizes
(29 -> 15 -> 8 and back), which once broke the ONNX int8 decoder. The models are untrained:
export and verification do not care what the weights learned, only that every engine
computes what Keras computes.
"""

import numpy as np
import pytest

from vae_edge.bundle import Bundle
from vae_edge.export import ExportOptions, export_bundle
from vae_edge.model import VAE
from vae_edge.registry import FORMATS, RUNTIME_FORMATS, Mode
from vae_edge.runtime import EdgeVAE

pytestmark = pytest.mark.slow

CASES = [  # (variant, input shape, modes exported: None = all)
    ("micro", (29, 31, 1), None),
    ("micro", (20, 12, 3), None),
    ("medium", (33, 17, 1), (Mode.INT8,)),
]


@pytest.mark.parametrize("variant, shape, modes", CASES, ids=lambda v: "x".join(map(str, v)) if isinstance(v, tuple) else str(v))
def test_odd_shapes_export_verify_and_run(variant, shape, modes, tmp_path):
    model = VAE.from_variant(variant, input_shape=shape, latent_dim=8, seed=0)
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 1, (80, *shape)).astype(np.float32)
    bundle_dir = export_bundle(model, tmp_path / "bundle", calibration_images=images[:64], heldout_images=images[64:],
                               options=ExportOptions(modes=modes or ()), log=lambda message: None)
    bundle = Bundle(bundle_dir)
    expected = {(fmt, mode) for fmt, info in FORMATS.items() for mode in info.modes
                if modes is None or mode in modes or len(info.modes) == 1}
    assert {(t.format, t.mode) for t in bundle.targets()} == expected
    assert bundle.manifest["verification"]["passed"]
    for target in bundle.targets():
        if target.format in RUNTIME_FORMATS and target.batch is None:
            vae = EdgeVAE.load(bundle_dir, target.format, target.mode)
            assert vae.sample(3, seed=1).shape == (3, *shape)
            assert vae.reconstruct(images[:2]).shape == (2, *shape)
