"""Shared, expensive fixtures, built once per test session, and the test tiers.

Every test that uses a trained model or an exported bundle (directly or through another
fixture) is marked `slow` here, so `pytest -m "not slow"` runs without training or exporting.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest

TINY_TRAINING = dict(variant="micro", latent_dim=8, epochs=2, batch_size=32, max_samples=400, seed=0)
# Fixtures that train or export; any test depending on one of them, even indirectly, is slow.
SLOW_FIXTURES = frozenset({"trained_run", "trained_model", "bundle_dir", "bundle_copy", "run_dir",  # run_dir: test_pipeline
                           "conditional_run", "conditional_model", "conditional_bundle",
                           "exported", "verified_elsewhere"})  # test_byo, test_cpu_targets


def pytest_collection_modifyitems(config, items):
    """Mark slow every test whose fixture closure trains or exports."""
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def digits():
    """Real MNIST digits from the embedded data set, float32 (N, 28, 28, 1) in [0, 1]."""
    from vae_edge.data import load_dataset

    return load_dataset("mnist-5k", max_samples=400, seed=0)


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory):
    """A tiny model trained on real digits through the public `train` API."""
    from vae_edge.train import TrainConfig, train

    run_dir = tmp_path_factory.mktemp("runs") / "tiny"
    result = train(TrainConfig(**TINY_TRAINING), run_dir, verbose=0)
    return result.run_dir


@pytest.fixture(scope="session")
def trained_model(trained_run):
    from vae_edge.model.loading import load_vae

    return load_vae(trained_run / "model.keras")


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture(scope="session")
def bundle_dir(trained_run, trained_model, digits, tmp_path_factory):
    """Every target of the registry (dynamic and fixed-shape) of the tiny model, exported and verified once per session."""
    from vae_edge.export import ExportOptions, export_bundle
    from vae_edge.model.source import load_graphs

    out = tmp_path_factory.mktemp("export") / "tiny"
    return export_bundle(
        load_graphs(trained_run / "model.keras"), out, calibration_images=digits.train, heldout_images=digits.test,
        options=ExportOptions(calibration_samples=32), dataset="mnist-5k", log=lambda message: None,
    )


@pytest.fixture
def bundle_copy(bundle_dir, tmp_path):
    """A private copy of the session bundle that a test may damage."""
    import shutil

    return shutil.copytree(bundle_dir, tmp_path / "bundle")


@pytest.fixture(scope="session")
def conditional_run(tmp_path_factory):
    """A tiny conditional model (labels of the embedded digits) trained through the public `train` API."""
    from vae_edge.train import TrainConfig, train

    run_dir = tmp_path_factory.mktemp("runs") / "conditional"
    return train(TrainConfig(**TINY_TRAINING, conditional=True), run_dir, verbose=0).run_dir


@pytest.fixture(scope="session")
def conditional_model(conditional_run):
    from vae_edge.model.loading import load_vae

    return load_vae(conditional_run / "model.keras")


@pytest.fixture(scope="session")
def conditional_bundle(conditional_run, conditional_model, digits, tmp_path_factory):
    """Every target of the tiny conditional model, calibrated on real (image, label) pairs, then verified
    per class; returns the bundle folder and the verification report (kept even if some artifact fails)."""
    from vae_edge.export import ExportOptions, export_bundle
    from vae_edge.model.source import load_graphs
    from vae_edge.verify import verify_bundle

    out = tmp_path_factory.mktemp("export") / "conditional"
    export_bundle(
        load_graphs(conditional_run / "model.keras"), out, calibration_images=digits.train, heldout_images=digits.test,
        calibration_labels=digits.train_labels, heldout_labels=digits.test_labels,
        options=ExportOptions(calibration_samples=32, verify=False), dataset="mnist-5k", log=lambda message: None,
    )
    report = verify_bundle(out, conditional_model, digits.test, labels=digits.test_labels, log=lambda message: None)
    return out, report


@pytest.fixture(scope="module")
def browser():
    """A headless Chromium for a module's browser tests (tests/browser_page.py); closed with the module, since
    Playwright's sync API refuses a second start (the bench's browser) while one runs in this thread."""
    from browser_page import require_browser

    from vae_edge.web.browser import launch

    with launch(require_browser()) as browser:
        yield browser


@pytest.fixture(scope="session")
def environments():
    """`get(name)`: CPU target `name`'s emulation Environment, set up once (in the cache), or a skip (a failure
    under CI) saying why not."""
    import platform

    from environment import unavailable

    from vae_edge.errors import BadInputError
    from vae_edge.verify import emulation

    prepared = {}

    def get(name: str):
        if emulation.TARGETS[name].arch == emulation.Arch.X86_64 and platform.machine() != "x86_64":
            pytest.skip(f"{name} runs this machine's own x86-64 Python")
        if name not in prepared:
            try:
                prepared[name] = emulation.prepare(name)
            except BadInputError as error:
                unavailable(f"emulation cannot run: {error}", ".ci/run installs qemu-user-static")
        return prepared[name]

    return get
