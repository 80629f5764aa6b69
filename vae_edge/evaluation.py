"""Model quality in the model's own terms: ELBO, importance-weighted NLL, PSNR, active units.

Works on any pair of `encode`/`decode` callables (numpy in, numpy out), so the same code
scores the Keras model, every exported pipeline in verification, and the runtime.
"""

from collections.abc import Callable

import numpy as np

from vae_edge.elbo import (
    gaussian_kl,
    log_normal,
    psnr,
    reconstruction_nll,
    reparameterize,
)
from vae_edge.errors import BadInputError
from vae_edge.registry import ReconstructionLoss

Encode = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]
Decode = Callable[[np.ndarray], np.ndarray]
MAX_PSNR_DB = 200.0  # caps identical images (infinite PSNR) so results stay valid JSON
ACTIVE_UNIT_THRESHOLD = 0.01  # Burda et al. (2016): Cov_x(E_q[z]) above this counts as active


def evaluate_pipeline(
    encode: Encode,
    decode: Decode,
    images: np.ndarray,
    *,
    reconstruction_loss: str = ReconstructionLoss.BCE,
    importance_samples: int = 0,
    seed: int = 0,
    classes: np.ndarray | None = None,
    class_names=(),
) -> dict:
    """Test ELBO terms (nats/image), reconstruction PSNR of the posterior mean, active units,
    and with `importance_samples` = k > 0 the k-sample importance-weighted NLL bound; with the
    images' `classes`, also `per_class`: each class's image count and negative ELBO, from the
    same draws as the overall figure."""
    rng = np.random.default_rng(seed)
    z_mean, z_log_var = encode(images)
    reconstruction = decode(reparameterize(z_mean, z_log_var, rng))
    nll = reconstruction_nll(images, reconstruction, reconstruction_loss)
    kl = gaussian_kl(z_mean, z_log_var)
    result = {
        "images": int(len(images)),
        "negative_elbo": float(np.mean(nll + kl)),
        "reconstruction_loss": float(np.mean(nll)),
        "kl_loss": float(np.mean(kl)),
        "psnr_db": float(np.mean(np.minimum(psnr(images, decode(z_mean)), MAX_PSNR_DB))),
        "active_units": int(np.sum(np.var(z_mean, axis=0) > ACTIVE_UNIT_THRESHOLD)),
        "latent_dim": int(z_mean.shape[-1]),
    }
    if classes is not None:
        per_image = nll + kl
        result["per_class"] = {
            name: {"images": int(np.sum(classes == k)), "negative_elbo": float(np.mean(per_image[classes == k]))}
            for k, name in enumerate(class_names) if np.any(classes == k)
        }
    if importance_samples > 0:
        result["iw_nll"] = importance_weighted_nll(
            decode, images, z_mean, z_log_var, importance_samples, reconstruction_loss, rng
        )
        result["importance_samples"] = importance_samples
    return result


def importance_weighted_nll(decode, images, z_mean, z_log_var, k: int, reconstruction_loss: str, rng) -> float:
    """-log p(x) ≈ -log mean_k p(x|z_k) p(z_k) / q(z_k|x) (Burda et al., 2016), nats/image."""
    log_weights = np.empty((len(images), k))
    for i in range(k):
        z = reparameterize(z_mean, z_log_var, rng)
        log_likelihood = -reconstruction_nll(images, decode(z), reconstruction_loss)
        log_weights[:, i] = log_likelihood + log_normal(z, 0.0, 0.0) - log_normal(z, z_mean, z_log_var)
    peak = log_weights.max(axis=1, keepdims=True)  # log-sum-exp, shifted for stability
    log_mean = peak[:, 0] + np.log(np.mean(np.exp(log_weights - peak), axis=1))
    return float(-np.mean(log_mean))


def conditioned(encode, decode, labels: np.ndarray | None) -> tuple[Encode, Decode]:
    """`encode`/`decode` of a conditional model bound to the labels of the images being scored, so
    the scoring code above stays the same for both kinds (every call is one row per image)."""
    if labels is None:
        return encode, decode
    return (lambda x: encode(x, labels)), (lambda z: decode(z, labels))


def evaluate_model(model, images: np.ndarray, importance_samples: int = 0, seed: int = 0,
                   labels: np.ndarray | None = None) -> dict:
    """Score a Keras VAE (anything with `encode`, `decode` and `reconstruction_loss`) on `images`;
    a conditional one needs their `labels`, and is also scored per class."""
    encode, decode = conditioned(model.encode, model.decode, labels)
    return evaluate_pipeline(
        encode, decode, images, reconstruction_loss=model.reconstruction_loss, importance_samples=importance_samples,
        seed=seed, classes=labels, class_names=getattr(model, "class_names", ()),
    )


def label_accuracy(predict_classes: Callable[[np.ndarray], np.ndarray], sample: Callable[[np.ndarray], np.ndarray],
                   class_names, per_class: int = 100) -> dict:
    """How often a classifier sees the class a conditional model was asked for: `per_class` samples of
    each class (`sample(labels)` -> images), scored by `predict_classes(images)` -> indices."""
    asked = np.repeat(np.arange(len(class_names)), per_class)
    hits = predict_classes(sample(asked)) == asked
    return {"overall": float(np.mean(hits)), **{name: float(np.mean(hits[asked == k])) for k, name in enumerate(class_names)}}


def evaluate_splits(model, splits, importance_samples: int = 0, seed: int = 0, samples_per_class: int = 100) -> dict:
    """`evaluate_model` on the test split; for a conditional model also per class, and the label
    accuracy of its samples as judged by a classifier trained on the training split."""
    from vae_edge.data import images_for_model

    images = images_for_model(splits.test, model.image_shape, splits.name)
    if not model.conditional:
        return evaluate_model(model, images, importance_samples, seed)
    if not splits.labelled or len(splits.class_names) != model.num_classes:
        raise BadInputError(f"{splits.name} has {len(splits.class_names)} classes and the conditional model "
                            f"{model.num_classes}; evaluate on the labelled data set it was trained on")
    from vae_edge.model.classifier import predict_classes, train_classifier

    scores = evaluate_model(model, images, importance_samples, seed, labels=splits.test_labels)
    judge = train_classifier(splits.train, splits.train_labels, model.num_classes, seed)
    scores["classifier_test_accuracy"] = float(np.mean(predict_classes(judge, images) == splits.test_labels))
    accuracy = label_accuracy(lambda x: predict_classes(judge, x),
                              lambda asked: model.sample(len(asked), seed=seed, labels=asked),
                              model.class_names, samples_per_class)
    scores["label_accuracy"] = accuracy.pop("overall")
    scores["label_accuracy_samples_per_class"] = samples_per_class
    for name, value in accuracy.items():
        scores["per_class"].setdefault(name, {"images": 0})["label_accuracy"] = value
    return scores
