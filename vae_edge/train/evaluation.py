"""Model quality of a trained Keras VAE: the scores of `vae_edge.elbo.evaluate_pipeline` on a data
set's test split, per class and with the label accuracy of a conditional model's samples."""

from collections.abc import Callable

import numpy as np

from vae_edge.elbo import conditioned, evaluate_pipeline
from vae_edge.errors import BadInputError


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
