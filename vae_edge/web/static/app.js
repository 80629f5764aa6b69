// app.js: the page around vae-edge.js. Query parameters: ?mode=float32|int8 and ?threads=N.
// Exposes window.vaeEdge (the loaded EdgeVAE), window.vaeEdgeReady (a promise of it),
// window.vaeEdgeIdle() and window.VaeEdge (the module: EdgeVAE, priorLatents, VaeEdgeError).
import * as VaeEdge from "./vae-edge.js";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const options = {};
if (params.has("mode")) options.mode = params.get("mode");
if (params.has("threads")) options.numThreads = Number(params.get("threads"));

window.VaeEdge = VaeEdge;
window.vaeEdgeReady = VaeEdge.EdgeVAE.load("./", options);
window.vaeEdgeReady.then(start, (error) => {
  $("status").textContent = `Could not load the model: ${error.message}`;
  $("status").classList.add("error");
  console.error(error.message);
});

// One engine call at a time, in order (a session runs one batch at a time).
let queue = Promise.resolve();
function serial(task) {
  queue = queue.then(task, task);
  return queue;
}
window.vaeEdgeIdle = () => queue; // settles when the page's own drawing is done (benchmarks wait for it)

/** Draw images {data, shape: [N, H, W, C]} in [0, 1] on `canvas` as a grid of `cols` columns. */
function drawImages(canvas, images, cols) {
  const [n, h, w, c] = images.shape;
  const rows = Math.ceil(n / cols);
  canvas.width = cols * w;
  canvas.height = rows * h;
  const ctx = canvas.getContext("2d");
  const picture = ctx.createImageData(canvas.width, canvas.height);
  for (let i = 0; i < n; i++) {
    const x0 = (i % cols) * w;
    const y0 = Math.floor(i / cols) * h;
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        const src = ((i * h + y) * w + x) * c;
        const dst = ((y0 + y) * canvas.width + x0 + x) * 4;
        for (let k = 0; k < 3; k++) picture.data[dst + k] = Math.round(255 * images.data[src + (c === 1 ? 0 : k)]);
        picture.data[dst + 3] = 255;
      }
    }
  }
  ctx.putImageData(picture, 0, 0);
}

function latency(vae, what) {
  const run = vae.lastRun;
  return `${what}: ${run.ms.toFixed(1)} ms (${run.file}, batch ${run.batch})`;
}

function fact(name, value) {
  const row = document.createElement("div");
  row.innerHTML = "<dt></dt><dd></dd>";
  row.firstChild.textContent = name;
  row.lastChild.append(value);
  $("facts").append(row);
}

function start(vae) {
  window.vaeEdge = vae;
  const info = vae.info();
  const model = vae.manifest.model;
  const classes = vae.classNames.length ? `, ${vae.classNames.length} classes` : "";
  $("status").textContent = `${model.variant ?? "VAE"} on ${model.dataset ?? "images"}: latent_dim ${vae.latentDim}, images ${vae.inputShape.join("×")}${classes}`;
  const modes = [...new Set(vae.manifest.artifacts.map((a) => a.mode))];
  const modeLinks = document.createElement("span");
  modes.forEach((mode, i) => {
    const link = document.createElement(mode === info.mode ? "strong" : "a");
    link.textContent = mode;
    if (mode !== info.mode) link.href = `?mode=${mode}${params.has("threads") ? `&threads=${params.get("threads")}` : ""}`;
    modeLinks.append(...(i ? [" · ", link] : [link]));
  });
  fact("mode", modeLinks);
  fact("encoder", info.encoder);
  fact("decoder", info.decoder);
  fact("engine", `onnxruntime-web ${info.ortVersion} wasm, ${info.numThreads || "auto"} thread(s)${info.crossOriginIsolated ? "" : ", not isolated"}`);
  fact("anomaly threshold", `${vae.threshold.toFixed(1)} nats`);
  setUpClasses(vae);
  setUpSamples(vae);
  setUpMorph(vae);
  setUpDrawing(vae);
  setUpManifold(vae);
}

/** A conditional model's class picker; every card draws the picked class and redraws when it changes. */
function setUpClasses(vae) {
  if (!vae.classNames.length) return; // unconditional: the picker stays hidden and no call passes a label
  vae.classNames.forEach((name, index) => $("class").add(new Option(name, String(index))));
  $("class-picker").hidden = false;
}

/** The label option of every call: the picked class, or none for an unconditional model. */
function picked(vae) {
  return vae.classNames.length ? { label: Number($("class").value) } : {};
}

function setUpSamples(vae) {
  const render = () => serial(async () => {
    const seed = Number($("seed").value);
    const temperature = Number($("temperature").value);
    $("temperature-value").textContent = temperature.toFixed(2);
    try {
      drawImages($("grid"), await vae.sample(64, { seed, temperature, ...picked(vae) }), 8);
      $("grid-latency").textContent = latency(vae, "decode 64 samples");
    } catch (error) {
      $("grid-latency").textContent = error.message;
    }
  });
  for (const id of ["seed", "temperature", "class"]) $(id).addEventListener("input", render);
  $("new-seed").addEventListener("click", () => {
    $("seed").value = VaeEdge.randomSeed();
    render();
  });
  return render();
}

function setUpMorph(vae) {
  const steps = 10;
  const render = () => serial(async () => {
    try {
      const a = await vae.sample(1, { seed: Number($("seed-a").value), ...picked(vae) });
      const b = await vae.sample(1, { seed: Number($("seed-b").value), ...picked(vae) });
      const path = await vae.interpolate(a, b, steps, $("method").value, picked(vae));
      drawImages($("morph"), path, steps);
      $("morph-latency").textContent = latency(vae, `decode ${steps} steps`);
    } catch (error) {
      $("morph-latency").textContent = error.message;
    }
  });
  for (const id of ["seed-a", "seed-b", "method", "class"]) $(id).addEventListener("input", render);
  return render();
}

/** The pad's drawing as the model's input: the ink's bounding box scaled into 20×20 and centred in 28×28, like MNIST. */
function padImage(pad, [h, w, c]) {
  const ctx = pad.getContext("2d", { willReadFrequently: true });
  const { data } = ctx.getImageData(0, 0, pad.width, pad.height);
  let [x0, y0, x1, y1] = [pad.width, pad.height, -1, -1];
  for (let y = 0; y < pad.height; y++) {
    for (let x = 0; x < pad.width; x++) {
      if (data[(y * pad.width + x) * 4] > 20) [x0, y0, x1, y1] = [Math.min(x0, x), Math.min(y0, y), Math.max(x1, x), Math.max(y1, y)];
    }
  }
  if (x1 < 0) return null;
  const small = new OffscreenCanvas(w, h);
  const sctx = small.getContext("2d", { willReadFrequently: true });
  sctx.fillStyle = "#000";
  sctx.fillRect(0, 0, w, h);
  const box = Math.max(x1 - x0 + 1, y1 - y0 + 1);
  const scale = (0.72 * Math.min(w, h)) / box;
  const [bw, bh] = [(x1 - x0 + 1) * scale, (y1 - y0 + 1) * scale];
  sctx.imageSmoothingQuality = "high";
  sctx.drawImage(pad, x0, y0, x1 - x0 + 1, y1 - y0 + 1, (w - bw) / 2, (h - bh) / 2, bw, bh);
  const rgba = sctx.getImageData(0, 0, w, h).data;
  const pixels = new Uint8Array(h * w * c);
  for (let i = 0; i < h * w; i++) for (let k = 0; k < c; k++) pixels[i * c + k] = rgba[i * 4 + (c === 1 ? 0 : k)];
  return { data: pixels, shape: [1, h, w, c] };
}

function setUpDrawing(vae) {
  const pad = $("pad");
  const ctx = pad.getContext("2d", { willReadFrequently: true });
  const clear = () => {
    ctx.fillStyle = "#000";
    ctx.fillRect(0, 0, pad.width, pad.height);
  };
  clear();
  const score = () => serial(async () => {
    const image = padImage(pad, vae.inputShape);
    if (!image) return;
    try {
      drawImages($("recon"), await vae.reconstruct(image, picked(vae)), 1);
      const [value] = await vae.anomalyScore(image, picked(vae));
      const anomaly = value > vae.threshold;
      $("verdict").textContent = `score ${value.toFixed(1)} nats vs threshold ${vae.threshold.toFixed(1)}: ${anomaly ? "an anomaly" : "looks like the training data"}`;
      $("verdict").className = `verdict ${anomaly ? "anomaly" : "typical"}`;
      $("draw-latency").textContent = latency(vae, "encode + decode");
    } catch (error) {
      $("verdict").textContent = error.message;
    }
  });
  let last = null;
  const point = (event) => {
    const rect = pad.getBoundingClientRect();
    return [((event.clientX - rect.left) * pad.width) / rect.width, ((event.clientY - rect.top) * pad.height) / rect.height];
  };
  pad.addEventListener("pointerdown", (event) => {
    pad.setPointerCapture(event.pointerId);
    last = point(event);
  });
  pad.addEventListener("pointermove", (event) => {
    if (!last) return;
    const next = point(event);
    Object.assign(ctx, { strokeStyle: "#fff", lineWidth: 22, lineCap: "round", lineJoin: "round" });
    ctx.beginPath();
    ctx.moveTo(...last);
    ctx.lineTo(...next);
    ctx.stroke();
    last = next;
  });
  const lift = () => {
    if (last) score();
    last = null;
  };
  pad.addEventListener("pointerup", lift);
  pad.addEventListener("pointercancel", lift);
  $("class").addEventListener("input", score); // a drawing scores differently as another class; an empty pad is skipped
  $("clear").addEventListener("click", () => {
    clear();
    $("recon").getContext("2d").clearRect(0, 0, 28, 28);
    $("verdict").textContent = "Draw with the mouse or a finger; the score updates when you lift it.";
    $("verdict").className = "verdict";
  });
  // A dropped picture is drawn on the pad in grey; a light background is inverted to MNIST's white on black.
  pad.addEventListener("dragover", (event) => event.preventDefault());
  pad.addEventListener("drop", async (event) => {
    event.preventDefault();
    const file = event.dataTransfer.files[0];
    if (!file) return;
    try {
      const bitmap = await createImageBitmap(file);
      clear();
      const fit = Math.min(pad.width / bitmap.width, pad.height / bitmap.height);
      ctx.drawImage(bitmap, (pad.width - bitmap.width * fit) / 2, (pad.height - bitmap.height * fit) / 2, bitmap.width * fit, bitmap.height * fit);
      const picture = ctx.getImageData(0, 0, pad.width, pad.height);
      const gray = (i) => 0.299 * picture.data[i] + 0.587 * picture.data[i + 1] + 0.114 * picture.data[i + 2];
      let mean = 0;
      for (let i = 0; i < picture.data.length; i += 4) mean += gray(i) / (picture.data.length / 4);
      for (let i = 0; i < picture.data.length; i += 4) {
        const g = mean > 127 ? 255 - gray(i) : gray(i);
        picture.data.fill(g, i, i + 3);
      }
      ctx.putImageData(picture, 0, 0);
      score();
    } catch (error) {
      $("verdict").textContent = `${file.name}: not an image the browser can read (${error.message})`;
    }
  });
}

function setUpManifold(vae) {
  if (vae.latentDim !== 2) return null; // the card stays hidden: a grid over more than two dimensions is not a picture
  $("manifold-card").hidden = false;
  const side = 12;
  const z = new Float32Array(side * side * 2);
  for (let row = 0; row < side; row++) {
    for (let col = 0; col < side; col++) {
      z[(row * side + col) * 2] = -2.5 + (5 * col) / (side - 1);
      z[(row * side + col) * 2 + 1] = 2.5 - (5 * row) / (side - 1);
    }
  }
  $("manifold-note").textContent = `decoded z on a ${side}×${side} grid over [-2.5, 2.5]²`;
  const render = () => serial(async () => drawImages($("manifold"), await vae.decode({ data: z, shape: [side * side, 2] }, picked(vae)), side));
  $("class").addEventListener("input", render);
  return render();
}
