// vae-edge.js: an exported VAE in the browser, on onnxruntime-web's WASM backend.
//
// The same API as the Python runtime (vae_edge/runtime/edge.py, EdgeVAE), so a page gets the
// same images for the same seed as a phone or a server. Every input is checked here before it
// reaches the engine and fails with a VaeEdgeError that names what was expected. Tensors are
// plain objects {data: Float32Array, shape: number[]}; images are channels last, float pixels
// in [0, 1] or uint8 pixels 0..255 (a Uint8Array / Uint8ClampedArray `data`).
//
// A conditional bundle (manifest `model.class_names`) needs a class with every call, as in
// Python: `label` (an index or a class name) for every row, or `labels` with one per row.
import * as ort from "./ort/ort.wasm.bundle.min.mjs";

const SCHEMA_VERSION = 1;
const FORMAT = "onnx"; // the only format onnxruntime-web runs
const MODES = ["float32", "int8"]; // registry order: ties in size go to the first
const GRAPHS = { encoder: { input: "image", outputs: ["z_mean", "z_log_var"] }, decoder: { input: "z", outputs: ["reconstruction"] } };
// A conditional graph's second input: one-hot float32 rows (N, K), as vae_edge/labels.py feeds it.
const LABEL = "label";
const LABEL_OPTIONS = ["label", "labels"];
const INTERPOLATIONS = ["linear", "slerp"];
const BCE_EPSILON = 1e-7;
const SEED_LIMIT = 2 ** 32;
// Errors only: onnxruntime's warnings (deprecated attributes tf2onnx writes) would read as console errors.
const SESSION_OPTIONS = { executionProviders: ["wasm"], graphOptimizationLevel: "all", logSeverityLevel: 3 };
ort.env.logLevel = "error";

export const ORT_VERSION = ort.env.versions?.web ?? "unknown";

/** An error a caller can fix; `name` is BadInputError, IntegrityError or MissingFileError as in Python. */
export class VaeEdgeError extends Error {
  constructor(message, name = "BadInputError") {
    super(message);
    this.name = name;
  }
}

// ---- the portable seeded prior (vae_edge/prior.py has the algorithm and the reference) ----

function mix32(x) {
  x ^= x >>> 16;
  x = Math.imul(x, 0x7feb352d);
  x ^= x >>> 15;
  x = Math.imul(x, 0x846ca68b);
  x ^= x >>> 16;
  return x >>> 0;
}

function uniform(key, k) {
  const bits = mix32(key ^ mix32((k + 0x9e3779b9) >>> 0));
  return ((bits >>> 8) + 0.5) / 16777216;
}

/** z ~ N(0, temperature² I) as a (n, latentDim) tensor: the same numbers as Python's prior_latents. */
export function priorLatents(n, latentDim, seed, temperature = 1.0) {
  const count = n * latentDim;
  const data = new Float32Array(count);
  const key = mix32(seed >>> 0);
  for (let p = 0; 2 * p < count; p++) {
    const radius = Math.sqrt(-2.0 * Math.log(uniform(key, 2 * p)));
    const angle = 2.0 * Math.PI * uniform(key, 2 * p + 1);
    data[2 * p] = radius * Math.cos(angle) * temperature;
    if (2 * p + 1 < count) data[2 * p + 1] = radius * Math.sin(angle) * temperature;
  }
  return { data, shape: [n, latentDim] };
}

export function randomSeed() {
  return crypto.getRandomValues(new Uint32Array(1))[0];
}

// ---- input checks ----

function isInt(value) {
  return typeof value === "number" && Number.isInteger(value);
}

function positiveInt(value, name) {
  if (!isInt(value) || value <= 0) throw new VaeEdgeError(`${name} must be a positive integer, got ${value}`);
  return value;
}

function nestedShape(value) {
  const shape = [];
  for (let v = value; Array.isArray(v); v = v[0]) shape.push(v.length);
  return shape;
}

/** {data, shape} from a tensor-like object or nested arrays; `uint8` says the pixels are 0..255. */
function asTensor(value, expected) {
  if (value && !Array.isArray(value) && (ArrayBuffer.isView(value.data) || Array.isArray(value.data)) && Array.isArray(value.shape)) {
    const size = value.shape.reduce((a, b) => a * b, 1);
    if (value.data.length !== size) {
      throw new VaeEdgeError(`expected ${expected}: data has ${value.data.length} values but shape [${value.shape}] needs ${size}`);
    }
    const uint8 = value.data instanceof Uint8Array || value.data instanceof Uint8ClampedArray;
    if (Array.isArray(value.data) && value.data.some((v) => typeof v !== "number")) throw new VaeEdgeError(`expected ${expected}: data must be numbers`);
    return { data: Array.isArray(value.data) ? Float64Array.from(value.data) : value.data, shape: [...value.shape], uint8 };
  }
  if (Array.isArray(value)) {
    const shape = nestedShape(value);
    const flat = value.flat(Infinity);
    if (flat.length !== shape.reduce((a, b) => a * b, 1) || flat.some((v) => typeof v !== "number")) {
      throw new VaeEdgeError(`expected ${expected} as a rectangular array of numbers`);
    }
    return { data: Float64Array.from(flat), shape, uint8: false };
  }
  throw new VaeEdgeError(`expected ${expected} as nested arrays or {data, shape}, got ${typeof value}`);
}

/** A method's options object; unknown keys are refused, since a misspelt `label` would read as no label. */
function optionsOf(options, allowed, method) {
  if (options === undefined || options === null) return {};
  if (typeof options !== "object" || Array.isArray(options)) {
    throw new VaeEdgeError(`${method}: options must be an object such as {${allowed.join(", ")}}, got ${shown(options)}`);
  }
  const unknown = Object.keys(options).filter((key) => !allowed.includes(key));
  if (unknown.length) throw new VaeEdgeError(`${method}: unknown option ${unknown.join(", ")}; it takes ${allowed.join(", ")}`);
  return options;
}

function shown(value) {
  return typeof value === "string" ? JSON.stringify(value) : String(value);
}

function checkFinite(data, what) {
  for (let i = 0; i < data.length; i++) {
    if (!Number.isFinite(data[i])) throw new VaeEdgeError(`${what} contain NaN or Inf values`);
  }
}

// ---- the model ----

function artifactsOf(manifest, mode) {
  return manifest.artifacts.filter((a) => a.format === FORMAT && a.mode === mode);
}

function batchOf(artifact) {
  return artifact.batch ?? (artifact.inputs[0].shape[0] > 0 ? artifact.inputs[0].shape[0] : null);
}

function pipelineOf(manifest, mode) {
  return manifest.verification?.pipelines?.[`${FORMAT}/${mode}`] ?? {};
}

/** Modes with an encoder and a decoder of a dynamic batch, in registry order. */
function completeModes(manifest) {
  return MODES.filter((mode) =>
    Object.keys(GRAPHS).every((graph) => artifactsOf(manifest, mode).some((a) => a.graph === graph && batchOf(a) === null)));
}

/** The smallest complete mode whose pipeline passed verification, else float32 (as the Python runtime). */
export function defaultMode(manifest) {
  const sizes = completeModes(manifest)
    .filter((mode) => pipelineOf(manifest, mode).passed)
    .map((mode) => [mode, artifactsOf(manifest, mode).filter((a) => batchOf(a) === null).reduce((s, a) => s + a.size_bytes, 0)]);
  sizes.sort((a, b) => a[1] - b[1] || MODES.indexOf(a[0]) - MODES.indexOf(b[0]));
  return sizes.length ? sizes[0][0] : "float32";
}

async function sha256Hex(buffer) {
  const digest = await crypto.subtle.digest("SHA-256", buffer);
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

async function fetchOk(url, what) {
  let response;
  try {
    response = await fetch(url);
  } catch (error) {
    throw new VaeEdgeError(`${url}: cannot fetch ${what} (${error.message}); serve the folder with \`vae-edge serve\``, "MissingFileError");
  }
  if (!response.ok) throw new VaeEdgeError(`${url}: ${what} is missing (HTTP ${response.status}); re-export the bundle`, "MissingFileError");
  return response;
}

export class EdgeVAE {
  /**
   * Open the bundle at `url` (a folder with manifest.json): its ONNX encoder and decoder of
   * `mode` (default: the most compact verified one), each checked against the manifest's sha256.
   * `numThreads` (0: onnxruntime-web's choice) applies to the whole page and is set by the first load.
   */
  static async load(url = "./", { mode, numThreads } = {}) {
    const base = new URL(url, document.baseURI);
    if (!base.pathname.endsWith("/")) base.pathname += "/";
    const manifestUrl = new URL("manifest.json", base);
    let manifest;
    try {
      manifest = await (await fetchOk(manifestUrl, "the bundle's manifest")).json();
    } catch (error) {
      if (error instanceof VaeEdgeError) throw error;
      throw new VaeEdgeError(`${manifestUrl}: not valid JSON (${error.message})`);
    }
    if (manifest.schema_version !== SCHEMA_VERSION) {
      throw new VaeEdgeError(`${manifestUrl}: schema_version ${manifest.schema_version} is not ${SCHEMA_VERSION}; re-export the bundle`);
    }
    const modes = completeModes(manifest);
    mode = mode ?? defaultMode(manifest);
    if (!modes.includes(mode)) {
      throw new VaeEdgeError(`no ${FORMAT} ${mode} encoder and decoder in this bundle; it has ${modes.join(", ") || "none"}`);
    }
    // Only the .wasm is a separate file: the bundled build has the Emscripten glue inside.
    ort.env.wasm.wasmPaths = { wasm: new URL("./ort/ort-wasm-simd-threaded.wasm", import.meta.url).href };
    if (numThreads !== undefined) ort.env.wasm.numThreads = positiveIntOrZero(numThreads);
    const sessions = { encoder: [], decoder: [] };
    for (const artifact of artifactsOf(manifest, mode)) {
      const fileUrl = new URL(artifact.path, base);
      if (!fileUrl.href.startsWith(base.href)) throw new VaeEdgeError(`artifact path ${artifact.path} points outside the bundle`, "IntegrityError");
      const bytes = await (await fetchOk(fileUrl, `the ${artifact.graph} model`)).arrayBuffer();
      if ((await sha256Hex(bytes)) !== artifact.sha256) {
        throw new VaeEdgeError(`${artifact.path}: sha256 does not match the manifest; the file was changed after export`, "IntegrityError");
      }
      const session = await ort.InferenceSession.create(new Uint8Array(bytes), SESSION_OPTIONS);
      // Caught here, where the message can name the file, rather than as an engine error at the first call.
      const inputs = [GRAPHS[artifact.graph].input, ...(manifest.model.class_names?.length ? [LABEL] : [])];
      if ([...session.inputNames].sort().join() !== [...inputs].sort().join()) {
        throw new VaeEdgeError(`${artifact.path}: takes inputs ${session.inputNames.join(", ")} where the manifest's model needs `
          + `${inputs.join(", ")}; re-export the bundle`, "IntegrityError");
      }
      sessions[artifact.graph].push({ artifact, session, batch: batchOf(artifact) });
    }
    return new EdgeVAE(manifest, mode, sessions);
  }

  constructor(manifest, mode, sessions) {
    this.manifest = manifest;
    this.backend = FORMAT;
    this.mode = mode;
    this.sessions = sessions;
    const model = manifest.model;
    this.inputShape = model.input_shape.map(Number);
    this.latentDim = Number(model.latent_dim);
    this.reconstructionLoss = model.reconstruction_loss;
    this.classNames = (model.class_names ?? []).map(String); // empty: an unconditional model
    // This pipeline's own threshold where verification measured one: quantized scores shift a little.
    this.threshold = Number(pipelineOf(manifest, mode).anomaly_threshold ?? manifest.anomaly.threshold);
    this.lastRun = null; // {graph, file, batch, ms} of the latest engine call
  }

  /** What runs: mode, model files, threads and the onnxruntime-web version. */
  info() {
    const file = (graph) => (this.sessions[graph].find((s) => s.batch === null) ?? this.sessions[graph][0]).artifact.path;
    return {
      backend: this.backend, mode: this.mode, encoder: file("encoder"), decoder: file("decoder"),
      numThreads: ort.env.wasm.numThreads, crossOriginIsolated: globalThis.crossOriginIsolated === true, ortVersion: ORT_VERSION,
    };
  }

  /** `n` new images from z ~ N(0, temperature² I); a seed gives the same z as Python's EdgeVAE.sample. */
  async sample(n, options) {
    const { seed, temperature = 1.0, ...labelled } = optionsOf(options, ["seed", "temperature", ...LABEL_OPTIONS], "sample");
    n = positiveInt(n, "n");
    if (seed !== undefined && seed !== null && (!isInt(seed) || seed < 0 || seed >= SEED_LIMIT)) {
      throw new VaeEdgeError(`seed must be an integer in [0, 2^32), got ${seed}`);
    }
    if (typeof temperature !== "number" || !Number.isFinite(temperature) || temperature < 0) {
      throw new VaeEdgeError(`temperature must be a finite number >= 0, got ${temperature}`);
    }
    const classes = this._labels(n, labelled);
    return this._decode(priorLatents(n, this.latentDim, seed ?? randomSeed(), temperature), classes);
  }

  /** Latent vectors (N, latentDim) -> images (N, H, W, C) float32 in [0, 1]. */
  async decode(z, options) {
    const labelled = optionsOf(options, LABEL_OPTIONS, "decode");
    z = this.checkLatents(z);
    return this._decode(z, this._labels(z.shape[0], labelled));
  }

  /** Images -> {z_mean, z_log_var}, each (N, latentDim). */
  async encode(images, options) {
    const labelled = optionsOf(options, LABEL_OPTIONS, "encode");
    const x = this.checkImages(images);
    return this._encode(x, this._labels(x.shape[0], labelled));
  }

  /** Images -> their reconstructions, decoded from the posterior mean (deterministic). */
  async reconstruct(images, options) {
    const labelled = optionsOf(options, LABEL_OPTIONS, "reconstruct");
    const x = this.checkImages(images);
    const classes = this._labels(x.shape[0], labelled);
    return this._decode((await this._encode(x, classes)).z_mean, classes);
  }

  /**
   * `steps` images morphing from image `a` to image `b` (both ends included) through latent space;
   * "slerp" keeps the codes at the norm the prior expects, "linear" is the straight line.
   * A conditional model takes one `label` for both ends and every step.
   */
  async interpolate(a, b, steps = 8, method = "linear", options) {
    const { label } = optionsOf(options, ["label"], "interpolate");
    steps = positiveInt(steps, "steps");
    if (steps < 2) throw new VaeEdgeError(`steps must be at least 2 (the two ends), got ${steps}`);
    if (!INTERPOLATIONS.includes(method)) throw new VaeEdgeError(`unknown interpolation ${method}; choose one of ${INTERPOLATIONS.join(", ")}`);
    const ends = [this._singleImage(a, "a"), this._singleImage(b, "b")];
    const size = ends[0].data.length;
    const both = new Float32Array(2 * size);
    both.set(ends[0].data, 0);
    both.set(ends[1].data, size);
    const classes = this._labels(2, { label });
    const { z_mean: codes } = await this._encode({ data: both, shape: [2, ...this.inputShape] }, classes);
    const L = this.latentDim;
    const za = Float64Array.from(codes.data.subarray(0, L));
    const zb = Float64Array.from(codes.data.subarray(L, 2 * L));
    const dot = za.reduce((s, v, i) => s + v * zb[i], 0);
    const norm = (v) => Math.sqrt(v.reduce((s, x) => s + x * x, 0));
    const omega = Math.acos(Math.min(1, Math.max(-1, dot / (norm(za) * norm(zb) + 1e-12))));
    const slerp = method === "slerp" && Math.sin(omega) > 1e-6; // undefined between (anti)parallel codes
    const z = new Float32Array(steps * L);
    for (let s = 0; s < steps; s++) {
      const t = s / (steps - 1);
      const [wa, wb] = slerp ? [Math.sin((1 - t) * omega) / Math.sin(omega), Math.sin(t * omega) / Math.sin(omega)] : [1 - t, t];
      for (let d = 0; d < L; d++) z[s * L + d] = wa * za[d] + wb * zb[d];
    }
    return this._decode({ data: z, shape: [steps, L] }, classes && new Int32Array(steps).fill(classes[0]));
  }

  /** Negative ELBO per image (nats) with the decoder at the posterior mean: higher is stranger. */
  async anomalyScore(images, options) {
    const labelled = optionsOf(options, LABEL_OPTIONS, "anomalyScore");
    const x = this.checkImages(images);
    const classes = this._labels(x.shape[0], labelled);
    const { z_mean, z_log_var } = await this._encode(x, classes);
    const r = (await this._decode(z_mean, classes)).data;
    const [n, L] = z_mean.shape;
    const pixels = x.data.length / n;
    const scores = new Float64Array(n);
    for (let i = 0; i < n; i++) {
      let nll = 0;
      for (let j = i * pixels; j < (i + 1) * pixels; j++) {
        if (this.reconstructionLoss === "mse") {
          nll += (x.data[j] - r[j]) ** 2;
        } else {
          const p = Math.min(1 - BCE_EPSILON, Math.max(BCE_EPSILON, r[j]));
          nll -= x.data[j] * Math.log(p) + (1 - x.data[j]) * Math.log1p(-p);
        }
      }
      let kl = 0;
      for (let d = i * L; d < (i + 1) * L; d++) {
        const m = z_mean.data[d];
        const lv = z_log_var.data[d];
        kl += 1 + lv - m * m - Math.exp(lv);
      }
      scores[i] = nll - 0.5 * kl;
    }
    return scores;
  }

  /** true per image whose anomaly score is above the bundle's `threshold`. */
  async isAnomaly(images, options) {
    return Array.from(await this.anomalyScore(images, optionsOf(options, LABEL_OPTIONS, "isAnomaly")), (s) => s > this.threshold);
  }

  /** Latency in ms of `repeats` engine calls of `graph` at `batch` after `warmup` calls. */
  async benchmark(graph, batch, { warmup = 5, repeats = 30 } = {}) {
    if (!(graph in GRAPHS)) throw new VaeEdgeError(`unknown graph ${graph}; choose one of ${Object.keys(GRAPHS).join(", ")}`);
    batch = positiveInt(batch, "batch");
    const input = graph === "decoder"
      ? priorLatents(batch, this.latentDim, 0)
      : { data: new Float32Array(batch * this.inputShape.reduce((a, b) => a * b, 1)).fill(0.5), shape: [batch, ...this.inputShape] };
    // Every row as class 0, as the native benchmark (vae_edge/web/bench.py) feeds a conditional decoder.
    const feeds = this._feeds(graph, input, this.classNames.length ? new Int32Array(batch) : null);
    const times = [];
    for (let i = 0; i < warmup + repeats; i++) {
      await this._run(graph, feeds);
      if (i >= warmup) times.push(this.lastRun.ms);
    }
    return times;
  }

  /** Images as float32 {data, shape: [N, H, W, C]} in [0, 1], or a VaeEdgeError naming what was expected. */
  checkImages(images) {
    const expected = `images of shape (N, ${this.inputShape.join(", ")})`;
    const x = asTensor(images, expected);
    if (x.shape.length === 3 && x.shape.every((d, i) => d === this.inputShape[i])) {
      throw new VaeEdgeError(`expected ${expected}, got one image of shape (${x.shape.join(", ")}) without the batch axis; `
        + `pass it as shape (1, ${this.inputShape.join(", ")})`);
    }
    if (x.shape.length === 3 && this.inputShape[2] === 1) x.shape.push(1);
    if (x.shape.length !== 4 || x.shape.slice(1).some((d, i) => d !== this.inputShape[i])) {
      throw new VaeEdgeError(`expected ${expected}, got shape (${x.shape.join(", ")})`);
    }
    if (x.shape[0] === 0) throw new VaeEdgeError(`expected ${expected} with N >= 1, got an empty batch`);
    if (x.uint8) return { data: Float32Array.from(x.data, (v) => v / 255), shape: x.shape };
    checkFinite(x.data, "images");
    let lo = Infinity;
    let hi = -Infinity;
    for (const v of x.data) {
      lo = Math.min(lo, v);
      hi = Math.max(hi, v);
    }
    if (lo < 0 || hi > 1) {
      throw new VaeEdgeError(`float pixels must be in [0, 1], found ${lo.toPrecision(4)}..${hi.toPrecision(4)} (divide 0..255 pixels by 255, or pass them as uint8)`);
    }
    return { data: Float32Array.from(x.data), shape: x.shape };
  }

  /** Latent vectors as float32 {data, shape: [N, latentDim]}, or a VaeEdgeError naming what was expected. */
  checkLatents(z) {
    const expected = `latent vectors of shape (N, ${this.latentDim})`;
    const t = asTensor(z, expected);
    if (t.shape.length !== 2 || t.shape[1] !== this.latentDim) throw new VaeEdgeError(`expected ${expected}, got shape (${t.shape.join(", ")})`);
    if (t.shape[0] === 0) throw new VaeEdgeError(`expected ${expected} with N >= 1, got an empty batch`);
    checkFinite(t.data, "latent vectors");
    return { data: Float32Array.from(t.data), shape: t.shape };
  }

  /** A label given as an index (a number or a digit string) or a class name -> its index. */
  _labelIndex(label) {
    const names = this.classNames;
    if (typeof label === "string" && names.includes(label)) return names.indexOf(label);
    const index = typeof label === "string" && /^\d+$/.test(label.trim()) ? Number(label) : label;
    if (!isInt(index) || index < 0 || index >= names.length) {
      throw new VaeEdgeError(`label ${shown(label)} is not a class of this model; use an index 0..${names.length - 1} or a name: ${names.join(", ")}`);
    }
    return index;
  }

  /**
   * The class index of each of `count` rows from a call's {label, labels} (null for an unconditional
   * model, which refuses any label), with vae_edge/labels.py's checks and messages.
   */
  _labels(count, { label, labels }) {
    const given = (value) => value !== undefined && value !== null;
    if (given(label) && given(labels)) throw new VaeEdgeError("pass either label (one class for every row) or labels (one per row), not both");
    if (!this.classNames.length) {
      if (given(label) || given(labels)) throw new VaeEdgeError("this model is unconditional (trained without labels); drop the label");
      return null;
    }
    if (!given(label) && !given(labels)) {
      throw new VaeEdgeError(`this model is conditional: give a class with label (an index 0..${this.classNames.length - 1} `
        + `or a name: ${this.classNames.join(", ")}), or labels with one per row`);
    }
    if (given(label)) return new Int32Array(count).fill(this._labelIndex(label));
    if (!Array.isArray(labels) && !ArrayBuffer.isView(labels)) {
      throw new VaeEdgeError(`labels must be an array with one label per row, got ${typeof labels === "string" ? "a string" : typeof labels}`);
    }
    if (labels.length !== count) throw new VaeEdgeError(`labels: expected ${count} (one per row), got ${labels.length}`);
    return Int32Array.from(Array.from(labels), (item) => this._labelIndex(item));
  }

  _singleImage(image, name) {
    const t = asTensor(image, `one image of shape (${this.inputShape.join(", ")})`);
    const single = t.shape.length === 3 || (t.shape.length === 2 && this.inputShape[2] === 1);
    const x = this.checkImages(single ? { data: t.data, shape: [1, ...t.shape] } : image);
    if (x.shape[0] !== 1) throw new VaeEdgeError(`${name}: expected one image, got a batch of ${x.shape[0]}`);
    return x;
  }

  /** The named inputs of `graph`: its first input and, for class indices `classes`, their one-hot rows. */
  _feeds(graph, input, classes) {
    const feeds = { [GRAPHS[graph].input]: input };
    if (classes) {
      const K = this.classNames.length;
      const data = new Float32Array(classes.length * K);
      classes.forEach((c, i) => { data[i * K + c] = 1; });
      feeds[LABEL] = { data, shape: [classes.length, K] };
    }
    return feeds;
  }

  async _encode(x, classes) {
    const out = await this._run("encoder", this._feeds("encoder", x, classes));
    return { z_mean: out.z_mean, z_log_var: out.z_log_var };
  }

  async _decode(z, classes) {
    return (await this._run("decoder", this._feeds("decoder", z, classes))).reconstruction;
  }

  /** Run `graph` on a batch of `feeds` ({name: tensor}, the same rows each): a fixed-batch file of exactly
   * that batch, else the dynamic one, else the largest fixed-batch file in chunks (the last one padded). */
  async _run(graph, feeds) {
    const n = feeds[GRAPHS[graph].input].shape[0];
    const options = this.sessions[graph];
    const chosen = options.find((s) => s.batch === n) ?? options.find((s) => s.batch === null)
      ?? options.reduce((a, b) => (a.batch > b.batch ? a : b));
    const chunk = chosen.batch ?? n;
    const spec = GRAPHS[graph];
    const parts = Object.fromEntries(spec.outputs.map((name) => [name, []]));
    const start = performance.now();
    for (let row = 0; row < n; row += chunk) {
      // Every input is cut and padded alike, so each chunk's images keep their own classes.
      const tensors = Object.fromEntries(Object.entries(feeds).map(([name, input]) => {
        const rowSize = input.data.length / n;
        const data = new Float32Array(chunk * rowSize);
        data.set(input.data.subarray(row * rowSize, Math.min(n, row + chunk) * rowSize));
        return [name, new ort.Tensor("float32", data, [chunk, ...input.shape.slice(1)])];
      }));
      const results = await chosen.session.run(tensors);
      for (const name of spec.outputs) parts[name].push(results[name]);
    }
    const ms = performance.now() - start;
    this.lastRun = { graph, file: chosen.artifact.path, batch: n, ms };
    return Object.fromEntries(spec.outputs.map((name) => {
      const shape = [n, ...parts[name][0].dims.slice(1)];
      const rowLength = shape.slice(1).reduce((a, b) => a * b, 1);
      const data = new Float32Array(n * rowLength);
      parts[name].forEach((t, i) => data.set(t.data.subarray(0, Math.min(chunk, n - i * chunk) * rowLength), i * chunk * rowLength));
      parts[name].forEach((t) => t.dispose());
      return [name, { data, shape }];
    }));
  }
}

function positiveIntOrZero(value) {
  if (!isInt(value) || value < 0) throw new VaeEdgeError(`numThreads must be a non-negative integer, got ${value}`);
  return value;
}
