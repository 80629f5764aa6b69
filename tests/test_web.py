"""The web app in a real headless Chromium: the JS runtime must give the Python runtime's numbers.

One tiny bundle (ONNX only) and one browser serve the whole module. Without a browser the
browser tests skip outside CI; under CI=true a missing browser or Playwright is a failure.
"""

import io
import json
import shutil
import urllib.error
import urllib.request

import numpy as np
import pytest
from browser_page import Page, serve_command

from vae_edge.errors import BadInputError, MissingFileError
from vae_edge.prior import prior_latents, reference_vectors
from vae_edge.web.app import write_web_app
from vae_edge.web.vendor import FILES, ORT_WEB_VERSION, VENDOR_DIR, read_record, runtime_files

# int8: onnxruntime-web's WASM kernels and native x86 kernels may round a requantized value
# one step apart, which moves a pixel by about one output quantization step (1/255 of the range).
TOLERANCE = {"float32": 1e-4, "int8": 2e-2}


@pytest.fixture(scope="module")
def web_bundle(trained_model, trained_run, digits, tmp_path_factory):
    """The tiny model exported to ONNX (float32 and int8) with the web app in `web/`."""
    from vae_edge.export import ExportOptions, export_bundle
    from vae_edge.model.source import load_graphs

    out = tmp_path_factory.mktemp("web") / "bundle"
    bundle = export_bundle(
        load_graphs(trained_run / "model.keras"), out, calibration_images=digits.train, heldout_images=digits.test,
        options=ExportOptions(formats=("onnx",), calibration_samples=32), dataset="mnist-5k", log=lambda message: None,
    )
    write_web_app(bundle, bundle / "web")
    return bundle


@pytest.fixture(scope="module")
def app(web_bundle, browser):
    from vae_edge.web.browser import serving

    with serving(web_bundle / "web") as url:
        page = Page(browser, url)
        page.info = page.ready()
        yield page
        page.page.close()


def _python_vae(bundle, mode):
    from vae_edge.runtime import EdgeVAE

    return EdgeVAE.load(bundle, backend="onnx", mode=mode)


def _tensor(result) -> np.ndarray:
    return np.asarray(result["data"], dtype=np.float32).reshape(result["shape"])


def _as_js(images: np.ndarray) -> dict:
    return {"data": images.reshape(-1).tolist(), "shape": list(images.shape)}


# Arrays go back to Python as plain lists: typed arrays do not cross the protocol.
TO_LIST = "const plain = (t) => ({data: Array.from(t.data), shape: t.shape});"


@pytest.mark.slow
def test_page_loads_without_errors_and_shows_what_runs(app, web_bundle):
    manifest = json.loads((web_bundle / "web" / "manifest.json").read_text())
    assert app.info["backend"] == "onnx" and app.info["ortVersion"] == ORT_WEB_VERSION
    assert app.info["crossOriginIsolated"] is True  # the server's COOP/COEP headers took effect
    assert app.info["decoder"] in {a["path"] for a in manifest["artifacts"]}
    header = app.page.locator("#facts").inner_text()
    assert app.info["decoder"] in header and "onnxruntime-web" in header
    assert "ms" in app.page.locator("#grid-latency").inner_text()
    assert app.errors == []


@pytest.mark.slow
def test_web_folder_is_a_bundle_of_checked_copies_of_the_onnx_models(web_bundle):
    from vae_edge.bundle import Bundle

    source, web = Bundle(web_bundle), Bundle(web_bundle / "web")
    web.check_all()  # every copy matches the sha256 the export recorded
    assert {(a.graph, a.mode, a.sha256) for a in web.artifacts} == {
        (a.graph, a.mode, a.sha256) for a in source.artifacts if a.format == "onnx"}
    assert {a.format for a in web.artifacts} == {"onnx"} and len(web.artifacts) >= 4
    assert sorted(p.name for p in (web_bundle / "web" / "ort").iterdir()) == sorted(FILES)


@pytest.mark.slow
def test_prior_matches_python_bit_for_bit_in_float32(app):
    z = app.run(TO_LIST + "return plain(VaeEdge.priorLatents(5, 8, 1234, 0.7));")
    np.testing.assert_allclose(_tensor(z), prior_latents(5, 8, 1234, 0.7), rtol=0, atol=1e-6)
    for seed, expected in reference_vectors().items():
        got = app.run(TO_LIST + "return plain(VaeEdge.priorLatents(1, 8, arg));", seed)
        np.testing.assert_allclose(_tensor(got)[0], expected, rtol=0, atol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["float32", "int8"])
def test_sample_matches_the_python_runtime(app, web_bundle, mode):
    got = app.run(
        TO_LIST + "const v = await VaeEdge.EdgeVAE.load('./', {mode: arg.mode});"
        "return plain(await v.sample(6, {seed: 7, temperature: 0.9}));", {"mode": mode})
    expected = _python_vae(web_bundle, mode).sample(6, seed=7, temperature=0.9)
    assert _tensor(got).shape == expected.shape == (6, 28, 28, 1)
    assert np.abs(_tensor(got) - expected).max() <= TOLERANCE[mode]


@pytest.mark.slow
def test_encode_decode_interpolate_and_score_match_python(app, web_bundle, digits):
    images = digits.test[:5]
    got = app.run(
        TO_LIST + "const v = await VaeEdge.EdgeVAE.load('./', {mode: 'float32'});"
        "const codes = await v.encode(arg.images);"
        "return {z_mean: plain(codes.z_mean), z_log_var: plain(codes.z_log_var), decoded: plain(await v.decode(codes.z_mean)),"
        " recon: plain(await v.reconstruct(arg.images)), path: plain(await v.interpolate(arg.a, arg.b, 5, 'slerp')),"
        " line: plain(await v.interpolate(arg.a, arg.b, 4, 'linear')),"
        " scores: Array.from(await v.anomalyScore(arg.images)), threshold: v.threshold, anomaly: await v.isAnomaly(arg.images)};",
        {"images": _as_js(images), "a": _as_js(images[0]), "b": _as_js(images[1])})
    vae = _python_vae(web_bundle, "float32")
    z_mean, z_log_var = vae.encode(images)
    np.testing.assert_allclose(_tensor(got["z_mean"]), z_mean, atol=1e-4)
    np.testing.assert_allclose(_tensor(got["z_log_var"]), z_log_var, atol=1e-4)
    np.testing.assert_allclose(_tensor(got["decoded"]), vae.decode(z_mean), atol=1e-4)
    np.testing.assert_allclose(_tensor(got["recon"]), vae.reconstruct(images), atol=1e-4)
    np.testing.assert_allclose(_tensor(got["path"]), vae.interpolate(images[0], images[1], 5, "slerp"), atol=1e-4)
    np.testing.assert_allclose(_tensor(got["line"]), vae.interpolate(images[0], images[1], 4, "linear"), atol=1e-4)
    np.testing.assert_allclose(got["scores"], vae.anomaly_score(images), rtol=1e-4)
    assert got["threshold"] == pytest.approx(vae.threshold)
    assert got["anomaly"] == vae.is_anomaly(images).tolist()


@pytest.mark.slow
def test_uint8_pixels_equal_float_pixels_and_bad_input_is_named(app, digits):
    pixels = np.round(digits.test[:2] * 255).astype(np.uint8)
    got = app.run(
        "const f = await vae.encode(arg.float); const u = await vae.encode({data: Uint8Array.from(arg.uint8), shape: arg.shape});"
        "const errors = [];"
        "const image = (value, shape) => ({data: new Float32Array(784).fill(value), shape});"
        "for (const bad of [{data: new Float32Array(10), shape: [1, 10]}, image(NaN, [1, 28, 28, 1]), image(2, [1, 28, 28]),"
        "                   [[1, 2], [3]], image(0.5, [28, 28, 1])]) {"
        "  try { await vae.encode(bad); errors.push(null); } catch (e) { errors.push(`${e.name}: ${e.message}`); } }"
        "try { await vae.sample(2, {seed: -1}); } catch (e) { errors.push(e.message); }"
        "return {same: Array.from(f.z_mean.data).every((x, i) => Math.abs(x - u.z_mean.data[i]) < 1e-6), errors};",
        {"float": _as_js(pixels.astype(np.float32) / 255), "uint8": pixels.reshape(-1).tolist(), "shape": list(pixels.shape)})
    assert got["same"]
    shape_error, nan_error, range_error, ragged_error, one_image_error, seed_error = got["errors"]
    assert shape_error.startswith("BadInputError: expected images of shape (N, 28, 28, 1), got shape (1, 10)")
    assert "NaN" in nan_error
    assert "[0, 1]" in range_error and "uint8" in range_error
    assert "rectangular" in ragged_error
    assert one_image_error.endswith("got one image of shape (28, 28, 1) without the batch axis; pass it as shape (1, 28, 28, 1)")
    assert "seed must be an integer in [0, 2^32)" in seed_error


@pytest.mark.slow
def test_rendered_sample_grid_is_not_blank(app):
    from PIL import Image

    picture = np.asarray(Image.open(io.BytesIO(app.page.locator("#grid").screenshot())).convert("L"), dtype=np.float32)
    assert picture.shape[0] > 100 and picture.shape[1] > 100
    assert picture.std() > 5  # digits on black, not one flat colour
    assert picture.max() > 100


@pytest.mark.slow
def test_drawing_a_digit_gives_a_reconstruction_and_verdict(app):
    pad = app.page.locator("#pad").bounding_box()
    app.page.mouse.move(pad["x"] + 0.5 * pad["width"], pad["y"] + 0.2 * pad["height"])
    app.page.mouse.down()
    for step in range(1, 11):
        app.page.mouse.move(pad["x"] + 0.5 * pad["width"], pad["y"] + (0.2 + 0.06 * step) * pad["height"])
    app.page.mouse.up()
    app.page.wait_for_function("document.querySelector('#verdict').textContent.startsWith('score')")
    verdict = app.page.locator("#verdict")
    assert " nats vs threshold " in verdict.inner_text()
    assert verdict.get_attribute("class") in ("verdict anomaly", "verdict typical")
    assert app.errors == []


@pytest.mark.slow
def test_a_tampered_model_file_is_refused(web_bundle, browser, tmp_path):
    from vae_edge.web.browser import serving

    web = shutil.copytree(web_bundle / "web", tmp_path / "web")
    for model in (web / "models").glob("decoder.*.onnx"):
        data = bytearray(model.read_bytes())
        data[len(data) // 2] ^= 0xFF
        model.write_bytes(bytes(data))
    with serving(web) as url:
        page = Page(browser, url)
        error = page.page.evaluate(
            "async () => { try { await window.vaeEdgeReady; return null; } catch (e) { return `${e.name}: ${e.message}`; } }")
        status = page.page.locator("#status").inner_text()
        page.page.close()
    assert error is not None and error.startswith("IntegrityError: models/decoder.")
    assert "sha256 does not match the manifest" in error
    assert "sha256 does not match" in status


# ---- a conditional model: a class with every call ----


@pytest.fixture(scope="module")
def conditional_app(conditional_bundle, browser):
    from vae_edge.web.browser import serving

    folder, _ = conditional_bundle
    with serving(folder / "web") as url:
        page = Page(browser, url)
        page.info = page.ready()
        yield page
        page.page.close()


# The sample grid's grey pixels (the red channel of an opaque canvas) as a flat list.
GRID_PIXELS = ("() => { const c = document.querySelector('#grid');"
               " const rgba = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
               " return Array.from(rgba.filter((_, i) => i % 4 === 0)); }")


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["float32", "int8"])
def test_conditional_sample_matches_the_python_runtime_per_class(conditional_app, conditional_bundle, mode):
    folder, _ = conditional_bundle
    got = conditional_app.run(
        TO_LIST + "const v = await VaeEdge.EdgeVAE.load('./', {mode: arg.mode});"
        "return [plain(await v.sample(6, {seed: 7, temperature: 0.9, label: 2})),"
        "        plain(await v.sample(6, {seed: 7, temperature: 0.9, label: '7'}))];", {"mode": mode})
    vae = _python_vae(folder, mode)
    for result, label in zip(got, (2, "7")):  # an index, and a class name
        expected = vae.sample(6, seed=7, temperature=0.9, label=label)
        assert _tensor(result).shape == expected.shape == (6, 28, 28, 1)
        assert np.abs(_tensor(result) - expected).max() <= TOLERANCE[mode]
    assert np.abs(_tensor(got[0]) - _tensor(got[1])).max() > TOLERANCE[mode]  # the same z as another class: other images


@pytest.mark.slow
def test_a_short_last_chunk_is_padded_and_cut_back_with_its_label_rows(conditional_app):
    """Five rows on a fixed batch-4 file: two runs, the second padded with zero rows of z and label,
    and only the five real rows come back, each decoded with its own class. A recording stand-in
    for the session keeps the test to the runtime's chunking, which no bundle here exercises."""
    got = conditional_app.run(
        "const v = await VaeEdge.EdgeVAE.load('./', {mode: 'float32'}); const L = v.latentDim;"
        "const seen = [];"
        "const session = {run: async (t) => {"
        "  const z = t.z.data, label = t.label.data, K = t.label.dims[1], n = t.z.dims[0], size = 28 * 28;"
        "  seen.push({rows: n, z0: Array.from({length: n}, (_, r) => z[r * L]),"
        "             labelSums: Array.from({length: n}, (_, r) => label.slice(r * K, (r + 1) * K).reduce((a, b) => a + b, 0))});"
        "  const out = new Float32Array(n * size);"
        "  for (let r = 0; r < n; r++) out.fill(z[r * L] + 100 * label.slice(r * K, (r + 1) * K).indexOf(1), r * size,"
        "                                      (r + 1) * size);"
        "  return {reconstruction: {data: out, dims: [n, 28, 28, 1], dispose: () => {}}}; }};"
        "const b4 = new VaeEdge.EdgeVAE(v.manifest, v.mode, {encoder: v.sessions.encoder,"
        "  decoder: [{batch: 4, session, artifact: {path: 'models/decoder.float32.b4.onnx'}}]});"
        "const z = {data: new Float32Array(5 * L).map((_, i) => (i % L === 0 ? i / L + 1 : 0)),"
        "           shape: [5, L]};"
        "const x = await b4.decode(z, {labels: [3, 1, 4, 1, 5]});"
        "return {seen, shape: x.shape, firstPixels: Array.from({length: 5}, (_, r) => x.data[r * 28 * 28]),"
        "        lastPixels: Array.from({length: 5}, (_, r) => x.data[(r + 1) * 28 * 28 - 1]), file: b4.lastRun.file};",
    )
    assert [call["rows"] for call in got["seen"]] == [4, 4]
    assert got["seen"][0]["z0"] == [1, 2, 3, 4] and got["seen"][1]["z0"] == [5, 0, 0, 0]  # zero padding
    assert got["seen"][1]["labelSums"] == [1, 0, 0, 0]  # the padded rows carry no class
    assert got["shape"] == [5, 28, 28, 1]
    expected = [z0 + 100 * label for z0, label in zip([1, 2, 3, 4, 5], [3, 1, 4, 1, 5])]
    assert got["firstPixels"] == expected and got["lastPixels"] == expected
    assert got["file"] == "models/decoder.float32.b4.onnx"


@pytest.mark.slow
def test_conditional_encode_reconstruct_score_and_morph_match_python(conditional_app, conditional_bundle, digits):
    folder, _ = conditional_bundle
    images, labels = digits.test[:5], digits.test_labels[:5].tolist()
    names = [str(label) for label in labels]
    got = conditional_app.run(
        TO_LIST + "const v = await VaeEdge.EdgeVAE.load('./', {mode: 'float32'});"
        "const codes = await v.encode(arg.images, {labels: arg.labels});"
        "const one = await v.encode(arg.first, {label: arg.labels[0]}); const oneFile = v.lastRun.file;"
        # Only the fixed batch-1 files: five rows run as five chunks, each with its own label row.
        "const fixedOnly = (graph) => v.sessions[graph].filter((s) => s.batch !== null);"
        "const fixed = new VaeEdge.EdgeVAE(v.manifest, v.mode, {encoder: fixedOnly('encoder'), decoder: fixedOnly('decoder')});"
        "const chunked = plain(await fixed.reconstruct(arg.images, {labels: arg.labels}));"
        "return {z_mean: plain(codes.z_mean), z_log_var: plain(codes.z_log_var), one: plain(one.z_mean), oneFile, chunked,"
        " chunkedFile: fixed.lastRun.file, recon: plain(await v.reconstruct(arg.images, {labels: arg.names})),"
        " decoded: plain(await v.decode(codes.z_mean, {labels: Int32Array.from(arg.labels)})),"
        " scores: Array.from(await v.anomalyScore(arg.images, {labels: arg.labels})),"
        " path: plain(await v.interpolate(arg.a, arg.b, 5, 'slerp', {label: 3}))};",
        {"images": _as_js(images), "first": _as_js(images[:1]), "labels": labels, "names": names, "a": _as_js(images[0]),
         "b": _as_js(images[1])})
    vae = _python_vae(folder, "float32")
    z_mean, z_log_var = vae.encode(images, labels=labels)
    np.testing.assert_allclose(_tensor(got["z_mean"]), z_mean, atol=1e-4)
    np.testing.assert_allclose(_tensor(got["z_log_var"]), z_log_var, atol=1e-4)
    assert ".b1." in got["oneFile"]  # one image ran on the fixed-shape encoder, label input included
    np.testing.assert_allclose(_tensor(got["one"]), z_mean[:1], atol=1e-4)
    assert ".b1." in got["chunkedFile"]
    np.testing.assert_allclose(_tensor(got["chunked"]), vae.reconstruct(images, labels=labels), atol=1e-4)
    np.testing.assert_allclose(_tensor(got["recon"]), vae.reconstruct(images, labels=names), atol=1e-4)
    np.testing.assert_allclose(_tensor(got["decoded"]), vae.decode(z_mean, labels=labels), atol=1e-4)
    np.testing.assert_allclose(got["scores"], vae.anomaly_score(images, labels=labels), rtol=1e-4)
    np.testing.assert_allclose(_tensor(got["path"]), vae.interpolate(images[0], images[1], 5, "slerp", label=3), atol=1e-4)
    other = vae.reconstruct(images, labels=[(label + 1) % 10 for label in labels])
    assert np.abs(_tensor(got["recon"]) - other).max() > 1e-3  # the labels reached the graphs


# Each call's error as "name: message", or null where it did not throw.
ATTEMPT = ("const errors = []; const attempt = async (call) => {"
           " try { await call(); errors.push(null); } catch (e) { errors.push(`${e.name}: ${e.message}`); } };")


@pytest.mark.slow
def test_bad_labels_are_refused_with_the_python_runtimes_messages(conditional_app, conditional_bundle, app, web_bundle,
                                                                  digits):
    images = _as_js(digits.test[:2])
    got = conditional_app.run(
        ATTEMPT + "for (const options of [{label: 10}, {label: -1}, {label: 2.5}, {label: 'cat'}, {}, {label: 1, labels: [1, 2]},"
        "                      {labels: [1]}, {labels: '12'}, {lable: 1}])"
        "  await attempt(() => vae.sample(2, {seed: 0, ...options}));"
        "await attempt(() => vae.encode(arg, 3));"
        "await attempt(() => vae.interpolate(arg, arg, 4, 'linear', {labels: [1, 2]}));"
        "await attempt(() => vae.reconstruct(arg, {labels: [0, 12]}));"
        "return errors;", images)
    (out_of_range, negative, fraction, unknown_name, missing, both, too_few, not_a_list, misspelt,
     not_options, interpolate_labels, one_bad_row) = got
    with pytest.raises(BadInputError) as error:
        _python_vae(conditional_bundle[0], "float32").sample(2, seed=0, label=10)
    assert out_of_range == f"BadInputError: {error.value}"
    assert out_of_range.endswith("label 10 is not a class of this model; use an index 0..9 or a name: "
                                 "0, 1, 2, 3, 4, 5, 6, 7, 8, 9")
    assert "label -1 is not a class" in negative and "label 2.5 is not a class" in fraction
    assert 'label "cat" is not a class' in unknown_name and "label 12 is not a class" in one_bad_row
    assert missing.startswith("BadInputError: this model is conditional: give a class with label (an index 0..9")
    assert "pass either label (one class for every row) or labels (one per row), not both" in both
    assert "labels: expected 2 (one per row), got 1" in too_few
    assert "labels must be an array with one label per row, got a string" in not_a_list
    assert "sample: unknown option lable; it takes seed, temperature, label, labels" in misspelt
    assert "encode: options must be an object such as {label, labels}, got 3" in not_options
    assert "interpolate: unknown option labels; it takes label" in interpolate_labels

    unconditional = app.run(
        ATTEMPT + "await attempt(() => vae.sample(2, {seed: 0, label: 0}));"
        "await attempt(() => vae.encode(arg, {labels: [0, 1]}));"
        "await attempt(() => vae.sample(2, {seed: 0, label: null}));"  # an absent label, as None in Python
        "return errors;", images)
    with pytest.raises(BadInputError) as error:
        _python_vae(web_bundle, "float32").sample(2, seed=0, label=0)
    assert unconditional == [f"BadInputError: {error.value}"] * 2 + [None]
    assert "this model is unconditional (trained without labels); drop the label" in unconditional[0]
    assert conditional_app.errors == [] and app.errors == []


def _grid(page) -> np.ndarray:
    """The page's 8×8 sample grid as 64 images of 28×28 grey pixels 0..255."""
    pixels = np.asarray(page.evaluate(GRID_PIXELS), dtype=np.float32)
    return pixels.reshape(8, 28, 8, 28).transpose(0, 2, 1, 3).reshape(64, 28, 28)


@pytest.mark.slow
def test_class_picker_draws_the_picked_class_and_is_absent_without_classes(conditional_app, conditional_bundle, app):
    folder, _ = conditional_bundle
    page = conditional_app.page
    class_names = json.loads((folder / "web" / "manifest.json").read_text())["model"]["class_names"]
    assert page.locator("#class-picker").is_visible() and "10 classes" in page.locator("#status").inner_text()
    assert page.locator("#class option").all_inner_texts() == class_names
    assert "ms" in page.locator("#grid-latency").inner_text()  # the first grid drew (its errors land there)
    vae = _python_vae(folder, conditional_app.info["mode"])
    before = _grid(page)
    assert np.abs(before - np.round(255 * vae.sample(64, seed=0, label=0)[..., 0])).max() <= 1  # the first class first

    pad = page.locator("#pad").bounding_box()
    page.mouse.move(pad["x"] + 0.5 * pad["width"], pad["y"] + 0.2 * pad["height"])
    page.mouse.down()
    page.mouse.move(pad["x"] + 0.5 * pad["width"], pad["y"] + 0.8 * pad["height"], steps=10)
    page.mouse.up()
    page.wait_for_function("document.querySelector('#verdict').textContent.startsWith('score')")
    verdict = page.locator("#verdict").inner_text()

    page.locator("#class").select_option(label="3")
    page.evaluate("() => window.vaeEdgeIdle()")
    after = _grid(page)
    assert np.abs(after - np.round(255 * vae.sample(64, seed=0, label=3)[..., 0])).max() <= 1
    assert np.abs(after - before).max() > 20  # the grid was redrawn as the other class
    assert page.locator("#verdict").inner_text() != verdict  # the drawing was scored again as a "3"
    assert conditional_app.errors == []

    assert app.page.locator("#class-picker").is_hidden() and app.page.locator("#class option").count() == 0


# ---- no browser needed ----


def test_vendored_runtime_is_the_pinned_version_and_intact(tmp_path):
    record = read_record()
    assert record["version"] == ORT_WEB_VERSION
    files = runtime_files()
    assert sorted(files) == sorted(FILES)
    assert files["ort-wasm-simd-threaded.wasm"][:4] == b"\0asm"
    assert f"ONNX Runtime Web v{ORT_WEB_VERSION}".encode() in files["ort.wasm.bundle.min.mjs"][:200]
    damaged = shutil.copytree(VENDOR_DIR, tmp_path / "ort")
    entry = damaged / "ort.wasm.bundle.min.mjs"
    entry.write_bytes(entry.read_bytes() + b"//")
    with pytest.raises(BadInputError, match="sha256 differs"):
        runtime_files(damaged)


def _fake_bundle(folder, formats):
    """A manifest-only bundle with an encoder and a decoder in each of `formats` (enough for the app's checks)."""
    folder.mkdir()
    artifacts = [{"path": f"{fmt}/{graph}.float32.{fmt}", "format": fmt, "graph": graph, "mode": "float32", "signature": graph,
                  "inputs": [], "outputs": [], "size_bytes": 1, "sha256": "0" * 64}
                 for fmt in formats for graph in ("encoder", "decoder")]
    model = {"input_shape": [28, 28, 1], "latent_dim": 8, "reconstruction_loss": "bce"}
    manifest = {"schema_version": 1, "model": model, "anomaly": {"threshold": 1.0}, "artifacts": artifacts}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


def test_a_bundle_without_onnx_is_refused_with_the_fix(tmp_path):
    with pytest.raises(BadInputError, match="needs an ONNX encoder and decoder.*--format onnx"):
        write_web_app(_fake_bundle(tmp_path / "b", ["tflite"]), tmp_path / "b" / "web")
    assert not (tmp_path / "b" / "web").exists()


def test_serve_sends_isolation_headers_and_stops_cleanly_on_ctrl_c(tmp_path):
    web = tmp_path / "bundle" / "web"
    web.mkdir(parents=True)
    (web / "index.html").write_text("<p>hello</p>")
    with serve_command(tmp_path / "bundle") as (url, stopped):
        assert url.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(url + "index.html", timeout=10) as response:
            assert response.headers["Cross-Origin-Opener-Policy"] == "same-origin"
            assert response.headers["Cross-Origin-Embedder-Policy"] == "require-corp"
            assert response.read() == b"<p>hello</p>"
        with pytest.raises(urllib.error.HTTPError, match="404"):
            urllib.request.urlopen(url + "missing.onnx", timeout=10)
    assert stopped["returncode"] == 0
    assert "stopped" in stopped["out"] and "Traceback" not in stopped["err"]


def test_serve_names_the_fix_for_a_bundle_without_a_web_app(tmp_path):
    from click.testing import CliRunner

    from vae_edge.cli.serve import serve

    (tmp_path / "bundle").mkdir()
    result = CliRunner().invoke(serve, [str(tmp_path / "bundle")])
    assert isinstance(result.exception, MissingFileError)
    assert "no web app in this bundle" in str(result.exception) and "--format web" in str(result.exception)
