"""The README.md written into each bundle: for an app developer who opens the folder.

It is rendered from the bundle's manifest, so the names, shapes, dtypes and int8 parameters in
its Kotlin and Swift snippets are this bundle's own, and the prior's reference vectors let a
port of the seeded prior test itself.
"""

from string import Template

import numpy as np

from vae_edge.prior import ALGORITHM, reference_vectors
from vae_edge.registry import FORMATS, Format, Graph, Mode
from vae_edge.signatures import LABEL, RECONSTRUCTION, RECONSTRUCTION_LOGITS, Z

INT8_TYPES = ("int8", "uint8")
TFLITE_EXTENSION = FORMATS[Format.TFLITE].suffix.lstrip(".")

TEMPLATE = Template("""\
# vae-edge bundle: $variant VAE, $height x $width x $channels images, latent size $latent

Exported by vae-edge $version (manifest schema $schema). `manifest.json` is the contract: every
file below with its inputs, outputs, dtypes, int8 parameters, size and sha256.

## What this folder holds

| file | graph | mode | batch | inputs | outputs |
|---|---|---|---|---|---|
$files

Fixed-batch files (`*.b1.*`, batch 1) are the ones for phones: NNAPI, CoreML and the GPU
delegate need every dimension known. Each `.tflite` and `.onnx` also carries these facts in
its own metadata (entry `vae_edge`), so a copied file explains itself (`vae-edge info FILE`).
`verify.md` says how far each file is from the Keras model, on which CPUs.
$rejected
## The decoder an app calls

`$decoder` (signature `$signature`):

- input `$z_name`: $z_dtype $z_shape, z ~ N(0, I) of width $latent$z_quant
$label_line- output `$out_name`: $out_dtype $out_shape, pixels in [0, 1], channels last$out_quant

$tflite_apps$onnx_apps
## Drawing z: the portable seeded prior


The same seed gives the same z here, in the Python runtime and in the web demo. Every step is
32-bit unsigned integer arithmetic (Kotlin: `Int` with `ushr`; Swift: `&*` on `UInt32`) or an
IEEE-754 double:

```
$prior
```

Reference vectors (the first 8 values of z for a seed, temperature 1); a port should match them
to 1e-6:

| seed | z[0, 0:8] |
|---|---|
$vectors

## Checking a file on the device: golden vectors

`golden/` holds a few inputs and the Keras model's outputs for them, as raw little-endian float32
arrays (row-major), and `golden/golden.json`: each array's file and shape, and per model file the
largest difference from Keras measured at export (`max_abs_here`) and the tolerance a device should
meet (`max_abs`). The decoder's inputs are the prior's draws for seed `prior_seed`, so a port of the
prior checks itself on them too. A unit test on the phone, with the files in its assets or bundle:

```kotlin
// androidTest: LiteRT on the device's own CPU (or a delegate) against the Keras outputs
fun floats(name: String): FloatArray = context.assets.open("golden/" + name).readBytes().let { bytes ->
    ByteBuffer.wrap(bytes).order(ByteOrder.LITTLE_ENDIAN).asFloatBuffer().let { FloatArray(it.remaining()).apply(it::get) } }
val z = floats("decoder.z.f32"); val expected = floats("decoder.reconstruction.f32")
// run each row of z through the decoder (signature "$signature"), then:
assertTrue(expected.indices.all { abs(actual[it] - expected[it]) <= maxAbs })  // max_abs from golden.json
```

```swift
// XCTest: the same check with TensorFlowLiteSwift or onnxruntime-objc
func floats(_ name: String) -> [Float] {
    let data = try! Data(contentsOf: Bundle.module.url(forResource: "golden/" + name, withExtension: nil)!)
    return data.withUnsafeBytes { raw in Array(raw.bindMemory(to: Float.self)) }   // little-endian, as iOS devices are
}
let z = floats("decoder.z.f32"), expected = floats("decoder.reconstruction.f32")
// run each row of z through the decoder, then:
XCTAssertLessThanOrEqual(zip(actual, expected).map { pair in abs(pair.0 - pair.1) }.max()!, maxAbs)   // from golden.json
```

An int8-io file takes the inputs quantized with its own scale and zero point, and its decoder returns
int8 Bernoulli logits (`reconstruction_logits`): dequantize them with that output's scale and zero
point and apply the sigmoid before comparing (`max_abs` is on the probabilities).
""")


TFLITE_APPS = Template("""\
## Android (Kotlin, LiteRT)

$android
`interpreter.getSignatureRunner("$signature")` gives the same call with `run(inputs, outputs)`.
$int8_android
## iOS (Swift)

TensorFlowLiteSwift (`pod 'TensorFlowLiteSwift'`), the same `.tflite` file:

```swift
let interpreter = try Interpreter(modelPath: Bundle.main.path(forResource: "$decoder_stem", ofType: "$tflite_extension")!)
let runner = try interpreter.signatureRunner(with: "$signature")
try runner.allocateTensors()
$swift_io
try runner.invoke()
let out = try runner.output(named: "$out_name")   // $out_dtype $out_shape
$swift_post
```

""")

ONNX_APPS = Template("""\
onnxruntime-objc (`pod 'onnxruntime-objc'`), `$onnx_file`, with CoreML taking every node:

```swift
let session = try ORTSession(env: ORTEnv(loggingLevel: .warning), modelPath: path, sessionOptions: {
    let options = try ORTSessionOptions()
    try options.appendCoreMLExecutionProvider(with: ORTCoreMLExecutionProviderOptions())
    return options }())
var z = [Float](repeating: 0, count: $latent)   // fill with the prior below$onnx_label_io
let input = try ORTValue(tensorData: NSMutableData(bytes: &z, length: z.count * 4), elementType: .float, shape: $onnx_z_shape)
let outputs = try session.run(withInputs: ["$z_name": input$onnx_label_feed], outputNames: ["$out_name"], runOptions: nil)
let pixels = try outputs["$out_name"]!.tensorData() as Data   // float32 $onnx_out_shape
```

""")

ANDROID = Template("""\
```kotlin
// build.gradle: implementation("com.google.ai.edge.litert:litert:1.+"); put $file in src/main/assets
val fd = context.assets.openFd("$file")   // aaptOptions { noCompress "$tflite_extension" } keeps it mappable
val interpreter = Interpreter(FileInputStream(fd.fileDescriptor).channel.map(READ_ONLY, fd.startOffset, fd.declaredLength))
$io
interpreter.runSignature(mapOf("$z_name" to z$label_feed), mapOf("$out_name" to reconstruction), "$signature")
$post
```
""")


def _android(artifact: dict) -> str:
    """The Kotlin snippet that runs one TFLite decoder file through its signature."""
    z, out = _tensor(artifact["inputs"], Z), _tensor(artifact["outputs"], RECONSTRUCTION)
    int8 = z["dtype"] in INT8_TYPES
    label = _label(artifact)
    return ANDROID.substitute(
        file=artifact["path"].rsplit("/", 1)[-1], io=_kotlin_io(z, out, int8) + _kotlin_label(label),
        post=_kotlin_post(out, int8), tflite_extension=TFLITE_EXTENSION, label_feed=f', "{LABEL}" to label' if label else "",
        z_name=z["name"], out_name=out["name"], signature=artifact["signature"],
    )


def _label(artifact: dict) -> dict | None:
    """The graph's one-hot class input, in a conditional bundle."""
    return next((t for t in artifact["inputs"] if t["name"] == LABEL), None)


def _label_line(label: dict | None, class_names) -> str:
    if not label:
        return ""
    return (f"- input `{LABEL}`: {label['dtype']} {label['shape']}, the class one-hot (1 at its index, 0 elsewhere); "
            f"classes in index order: {', '.join(class_names)}{_quant_note(label)}\n")


def _one_hot_values(label: dict) -> tuple[str, str]:
    """The off and on values of a one-hot row in the tensor's own type (int8: quantized)."""
    if label["dtype"] in INT8_TYPES:
        q = label["quantization"]
        return (str(int(np.clip(round(0 / q["scale"] + q["zero_point"]), -128, 127))),
                str(int(np.clip(round(1 / q["scale"] + q["zero_point"]), -128, 127))))
    return "0f", "1f"


def _kotlin_label(label: dict | None) -> str:
    if not label:
        return ""
    off, on = _one_hot_values(label)
    if label["dtype"] in INT8_TYPES:
        return (f"\nval label = ByteBuffer.allocateDirect({label['shape'][-1]}).order(ByteOrder.nativeOrder())  // one-hot\n"
                f"repeat({label['shape'][-1]}) {{ label.put((if (it == classIndex) {on} else {off}).toByte()) }}")
    return (f"\nval label = Array(1) {{ FloatArray({label['shape'][-1]}) }}.also {{ it[0][classIndex] = {on} }}"
            "  // one-hot class")


def _swift_label(label: dict | None) -> str:
    if not label:
        return ""
    off, on = _one_hot_values(label)
    if label["dtype"] in INT8_TYPES:
        return (f"\nvar label = [Int8](repeating: {off}, count: {label['shape'][-1]}); label[classIndex] = {on}   // one-hot\n"
                f"try runner.copy(label.withUnsafeBufferPointer {{ Data(buffer: $0) }}, toInputNamed: \"{LABEL}\")")
    return (f"\nvar label = [Float](repeating: 0, count: {label['shape'][-1]}); label[classIndex] = 1   // one-hot class\n"
            f"try runner.copy(Data(bytes: &label, count: label.count * 4), toInputNamed: \"{LABEL}\")")


def render_bundle_readme(manifest: dict) -> str:
    """README.md for the bundle that `manifest` describes (see module docstring); the app sections are
    those of the formats the bundle has."""
    model = manifest["model"]
    artifacts = manifest["artifacts"]
    tflite_decoder = _pick(artifacts, Format.TFLITE, (Mode.FLOAT32,))
    onnx_decoder = _pick(artifacts, Format.ONNX, (Mode.FLOAT32,))
    decoder = tflite_decoder or onnx_decoder or next(a for a in artifacts if a["graph"] == Graph.DECODER)
    int8_decoder = _pick(artifacts, Format.TFLITE, (Mode.INT8_IO,), exact=True)
    z, out = _tensor(decoder["inputs"], Z), _tensor(decoder["outputs"], RECONSTRUCTION)
    height, width, channels = model["input_shape"]
    int8 = z["dtype"] in INT8_TYPES
    names = {"signature": decoder["signature"], "z_name": z["name"], "out_name": out["name"], "latent": model["latent_dim"],
             "out_dtype": out["dtype"], "out_shape": out["shape"]}
    tflite_apps = TFLITE_APPS.substitute(
        names, android=_android(tflite_decoder), tflite_extension=TFLITE_EXTENSION,
        decoder_stem=tflite_decoder["path"].rsplit("/", 1)[-1].removesuffix(FORMATS[Format.TFLITE].suffix),
        int8_android=(f"\nThe {Mode.INT8_IO} decoder `{int8_decoder['path']}` ({int8_decoder['size_bytes'] // 1024} KiB) takes "
                      f"and returns int8{_quant_note(_tensor(int8_decoder['inputs'], Z))}:\n\n{_android(int8_decoder)}")
        if int8_decoder else "",
        swift_io=_swift_io(z, int8) + _swift_label(_label(tflite_decoder)), swift_post=_swift_post(out, int8),
    ) if tflite_decoder else ""
    onnx_label = _label(onnx_decoder) if onnx_decoder else None
    onnx_apps = ONNX_APPS.substitute(
        names, onnx_file=onnx_decoder["path"], onnx_z_shape=_tensor(onnx_decoder["inputs"], Z)["shape"],
        onnx_out_shape=onnx_decoder["outputs"][0]["shape"],
        onnx_label_io=(f"\nvar label = [Float](repeating: 0, count: {onnx_label['shape'][-1]}); label[classIndex] = 1"
                       "   // one-hot\n"
                       "let labelValue = try ORTValue(tensorData: NSMutableData(bytes: &label, length: label.count * 4), "
                       f"elementType: .float, shape: {onnx_label['shape']})") if onnx_label else "",
        onnx_label_feed=f', "{LABEL}": labelValue' if onnx_label else "",
    ) if onnx_decoder else ""
    return TEMPLATE.substitute(
        names, variant=model.get("variant", "custom"), height=height, width=width, channels=channels,
        version=manifest.get("tools", {}).get("vae-edge", "?"), schema=manifest["schema_version"],
        files="\n".join(_file_row(a) for a in artifacts), decoder=decoder["path"],
        z_dtype=z["dtype"], z_shape=z["shape"], z_quant=_quant_note(z), out_quant=_quant_note(out),
        label_line=_label_line(_label(decoder), model.get("class_names", ())),
        tflite_apps=tflite_apps, onnx_apps=onnx_apps, prior=ALGORITHM, rejected=_rejected(manifest),
        vectors="\n".join(f"| {seed} | {', '.join(f'{v:.9g}' for v in z0)} |" for seed, z0 in reference_vectors().items()),
    )


def _rejected(manifest: dict) -> str:
    """The targets left out of the bundle, each with why (their files are in `rejected/`)."""
    rows = manifest.get("rejected") or []
    if not rows:
        return ""
    lines = "\n".join(f"- `{row['target']}` ({row['stage']}): {row['reason']}" for row in rows)
    return f"\nLeft out because they failed (their files, if any, are in `rejected/`; do not ship them):\n\n{lines}\n"


def _pick(artifacts: list[dict], fmt: Format, modes: tuple[Mode, ...], exact: bool = False) -> dict | None:
    """The fixed-batch decoder of `fmt` in the first of `modes` present, else its dynamic one; else (unless
    `exact`) any decoder of `fmt`; else None."""
    decoders = [a for a in artifacts if a["format"] == fmt and a["graph"] == Graph.DECODER]
    for mode in modes:
        for fixed in (True, False):
            found = next((a for a in decoders if a["mode"] == mode and bool(a.get("batch")) == fixed), None)
            if found:
                return found
    return decoders[0] if decoders and not exact else None


def _tensor(tensors: list[dict], name: str) -> dict:
    return next((t for t in tensors if t["name"] == name), tensors[0])


def _file_row(artifact: dict) -> str:
    def tensors(items):
        return ", ".join(f"`{t['name']}` {t['dtype']} {t['shape']}" for t in items)

    batch = artifact.get("batch") or "any"
    return (f"| `{artifact['path']}` | {artifact['graph']} | {artifact['mode']} | {batch} | "
            f"{tensors(artifact['inputs'])} | {tensors(artifact['outputs'])} |")


def _quant_note(tensor: dict) -> str:
    q = tensor.get("quantization")
    if not q or tensor["dtype"] not in INT8_TYPES:
        return ""
    return (f"; int8 with scale {q['scale']:.9g} and zero_point {q['zero_point']}: "
            "q = clip(round(x / scale + zero_point), -128, 127), x = (q - zero_point) * scale")


def _size(shape) -> int:
    size = 1
    for d in shape:
        size *= max(int(d), 1)
    return size


def _kotlin_io(z: dict, out: dict, int8: bool) -> str:
    if int8:
        q = z["quantization"]
        return (f"val zFloat = FloatArray({_size(z['shape'])})  // fill with the prior below\n"
                f"val z = ByteBuffer.allocateDirect(zFloat.size).order(ByteOrder.nativeOrder())\n"
                f"zFloat.forEach {{ z.put((Math.round(it / {q['scale']:.9g}f) + {q['zero_point']})"
                ".coerceIn(-128, 127).toByte()) }\n"
                f"val reconstruction = ByteBuffer.allocateDirect({_size(out['shape'])}).order(ByteOrder.nativeOrder())")
    _, height, width, channels = out["shape"]
    return (f"val z = Array(1) {{ FloatArray({z['shape'][-1]}) }}  // {z['dtype']} {z['shape']}; fill with the prior below\n"
            f"val reconstruction = Array(1) {{ Array({height}) {{ Array({width}) {{ FloatArray({channels}) }} }} }}")


def _kotlin_post(out: dict, int8: bool) -> str:
    if int8:
        q = out["quantization"]
        value = f"(reconstruction.get() - ({q['zero_point']})) * {q['scale']:.9g}f"
        if out["name"] == RECONSTRUCTION_LOGITS:  # 256 levels of logits keep dim pixels that 256 of probability lose
            return (f"reconstruction.rewind()  // {RECONSTRUCTION_LOGITS}: the decoder's logits; the sigmoid gives pixels\n"
                    f"val pixels = FloatArray({_size(out['shape'])}) {{ 1f / (1f + exp(-({value}))) }}")
        return (f"reconstruction.rewind()\n"
                f"val pixels = FloatArray({_size(out['shape'])}) {{ {value} }}")
    return "// reconstruction[0][row][col][channel] is a pixel in [0, 1]"


def _swift_io(z: dict, int8: bool) -> str:
    if int8:
        q = z["quantization"]
        return (f"let zFloat = [Float](repeating: 0, count: {_size(z['shape'])})   // fill with the prior below\n"
                f"let zQ = zFloat.map {{ Int8(clamping: Int(($0 / {q['scale']:.9g}).rounded()) + {q['zero_point']}) }}\n"
                f"try runner.copy(zQ.withUnsafeBufferPointer {{ Data(buffer: $0) }}, toInputNamed: \"{z['name']}\")")
    return (f"var z = [Float](repeating: 0, count: {_size(z['shape'])})   // fill with the prior below\n"
            f"try runner.copy(Data(bytes: &z, count: z.count * 4), toInputNamed: \"{z['name']}\")")


def _swift_post(out: dict, int8: bool) -> str:
    if int8:
        q = out["quantization"]
        return (f"let pixels = out.data.map {{ (Float(Int8(bitPattern: $0)) - Float({q['zero_point']})) * {q['scale']:.9g} }}")
    return "let pixels = out.data.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }"
