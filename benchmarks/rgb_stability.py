"""Do the big variants train stably on real RGB photos in each precision? Written to
results/rgb_stability.md and .json.

    pip install scikit-image    # its bundled sample photos are the data; nothing is downloaded
    .venv/bin/python benchmarks/rgb_stability.py [--runs large:float32:40,large:mixed_float16:10,...]
                                                 [--unbounded large:float32:40]

The data: square patches (64 px for `large`, 128 px for `xlarge`, stride half a patch) cut
from the eight colour photos that scikit-image ships, flat sky and black space included,
which is what upset training. Each run is the default recipe
(`vae-edge train --variant V --precision P`: Adam, a linear warm-up over 5 % of the steps,
the peak rate, cosine decay, gradient clipping) with its whole schedule compressed into STEPS
batches, so the peak rate, where training blew up, comes within minutes on a CPU. That is
harsher than a full run, whose warm-up lasts longer. Per run: the loss, KL and reconstruction
of every batch, how many were not finite, and the largest KL.

`--save-patches DIR` only writes the patches as `DIR/patches<size>.npy`, for `vae-edge train
--dataset DIR/patches64.npy --variant large` as a user would run it.

`--unbounded` runs use the same network with the encoder's log-variance range widened to
+-1e6, which leaves it unbounded in effect: the "before" of the `SoftRange` fix, measured
side by side.
"""

import argparse
import json
import math
import os
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
PHOTOS = ("astronaut", "coffee", "hubble_deep_field", "immunohistochemistry", "rocket", "colorwheel", "retina", "chelsea")
PATCH_SIZE = {"large": 64, "xlarge": 128}
DEFAULT_RUNS = "large:float32:40,large:mixed_bfloat16:10,large:mixed_float16:10,xlarge:float32:6"
DEFAULT_UNBOUNDED = "large:float32:40,large:mixed_float16:10"
UNBOUNDED_RANGE = (-1e6, 1e6)


def photo_patches(size: int) -> np.ndarray:
    """uint8 (N, size, size, 3) patches of scikit-image's colour sample photos, stride size // 2."""
    import skimage.data

    stride, patches = size // 2, []
    for name in PHOTOS:
        photo = getattr(skimage.data, name)()
        for top in range(0, photo.shape[0] - size + 1, stride):
            for left in range(0, photo.shape[1] - size + 1, stride):
                patches.append(photo[top:top + size, left:left + size])
    return np.stack(patches)


def batch_values(running_means: list[float]) -> list[float]:
    """Keras logs each batch's running mean over the epoch; the batches' own values from those."""
    return [(i + 1) * m - i * previous for i, (m, previous) in enumerate(zip(running_means, [0.0, *running_means]))]


def probe(variant: str, precision: str, steps: int, bounded: bool, batch_size: int = 32, seed: int = 0) -> dict:
    """The default recipe for `variant` in `precision` on photo patches, its schedule spanning `steps` batches."""
    import keras

    from vae_edge.model import networks
    from vae_edge.train import TrainConfig
    from vae_edge.train.loop import build_model

    patches = photo_patches(PATCH_SIZE[variant])
    images = patches[np.random.default_rng(seed).permutation(len(patches))].astype("float32") / 255.0
    config = TrainConfig(variant=variant, precision=precision, batch_size=batch_size, seed=seed)
    keras.utils.set_random_seed(seed)
    saved_range = networks.LOG_VAR_RANGE
    networks.LOG_VAR_RANGE = saved_range if bounded else UNBOUNDED_RANGE
    try:
        model = build_model(config, images.shape[1:], total_steps=steps)
    finally:
        networks.LOG_VAR_RANGE = saved_range
    seen = {"loss": [], "kl_loss": [], "reconstruction_loss": []}
    logger = keras.callbacks.LambdaCallback(
        on_train_batch_end=lambda batch, logs=None: [seen[k].append(float(logs[k])) for k in seen])
    started = time.perf_counter()
    model.fit(images[: steps * batch_size], batch_size=batch_size, epochs=1, shuffle=False, verbose=0, callbacks=[logger])
    seconds = time.perf_counter() - started
    per_batch = {k: batch_values(v) for k, v in seen.items()}
    finite = [v for v in per_batch["loss"] if math.isfinite(v)]
    return {"variant": variant, "precision": precision, "bounded": bounded, "steps": steps, "batch_size": batch_size,
            "patches": len(patches), "patch_size": PATCH_SIZE[variant], "seconds_per_step": seconds / steps,
            "non_finite_batches": steps - len(finite), "first_loss": per_batch["loss"][0],
            "last_loss": per_batch["loss"][-1], "max_kl": max(per_batch["kl_loss"]), "per_batch": per_batch}


def parse_runs(text: str) -> list[tuple[str, str, int]]:
    runs = []
    for item in filter(None, text.split(",")):
        variant, precision, steps = item.split(":")
        if variant not in PATCH_SIZE:
            raise SystemExit(f"--runs: variant {variant!r} is not one of {', '.join(PATCH_SIZE)}")
        runs.append((variant, precision, int(steps)))
    return runs


def write_markdown(results: list[dict], info: dict, command: str, path: Path) -> None:
    rows = ["| variant, patch | precision | log-variance | batches | non-finite | first loss | largest batch KL | "
            "last loss | s/step |", "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        rows.append(f"| {r['variant']}, {r['patch_size']} px | {r['precision']} | "
                    f"{'SoftRange' if r['bounded'] else 'unbounded'} | {r['steps']} x {r['batch_size']} | "
                    f"{r['non_finite_batches']} | {r['first_loss']:.4g} | {r['max_kl']:.4g} | {r['last_loss']:.4g} | "
                    f"{r['seconds_per_step']:.1f} |")
    path.write_text("\n\n".join([
        "# Big variants on RGB photo patches: the default recipe compressed into a few batches",
        f"{info['cpu']}, {info['usable_cores']} usable cores, {' '.join(info['vector_extensions'])}; "
        f"Keras backend {info['backend']}. Losses are nats per image, per batch (not the epoch's running mean).",
        f"Command: `{command}`.",
        "\n".join(rows),
    ]) + "\n")


def main() -> None:
    import sys

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", default=DEFAULT_RUNS, help="VARIANT:PRECISION:STEPS, comma-separated")
    parser.add_argument("--unbounded", default=DEFAULT_UNBOUNDED, help="the same, with the log-variance unbounded")
    parser.add_argument("--save-patches", type=Path, metavar="DIR", help="only write the patches as .npy files")
    args = parser.parse_args()
    if args.save_patches:
        args.save_patches.mkdir(parents=True, exist_ok=True)
        for size in sorted(set(PATCH_SIZE.values())):
            np.save(args.save_patches / f"patches{size}.npy", photo_patches(size))
            print(f"wrote {args.save_patches / f'patches{size}.npy'}")
        return
    import keras

    from vae_edge.bench import machine

    results = []
    for runs, bounded in ((parse_runs(args.unbounded), False), (parse_runs(args.runs), True)):
        for variant, precision, steps in runs:
            results.append(probe(variant, precision, steps, bounded))
            r = results[-1]
            print(f"{variant} {precision} {'bounded' if bounded else 'unbounded'}: non-finite {r['non_finite_batches']}, "
                  f"first {r['first_loss']:.4g}, max KL {r['max_kl']:.4g}, last {r['last_loss']:.4g}, "
                  f"{r['seconds_per_step']:.1f} s/step", flush=True)
    info = {**machine.describe(), "backend": keras.backend.backend()}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "rgb_stability.json").write_text(json.dumps({"machine": info, "results": results}, indent=2) + "\n")
    command = "python benchmarks/rgb_stability.py " + " ".join(sys.argv[1:])
    write_markdown(results, info, command.strip(), RESULTS / "rgb_stability.md")
    print(f"wrote {RESULTS / 'rgb_stability.md'}")


if __name__ == "__main__":
    main()
