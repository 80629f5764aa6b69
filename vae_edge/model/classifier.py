"""The judge of a conditional VAE's samples: a small CNN trained on the same training split.

It exists only to score `sample(label=k)`; it is seeded and trained for a few epochs, so its
own test accuracy (reported beside the label accuracy) says how far to trust the score.
"""

import keras
import numpy as np
from keras import layers

EPOCHS = 4
BATCH_SIZE = 64


def train_classifier(images: np.ndarray, labels: np.ndarray, num_classes: int, seed: int = 0) -> keras.Model:
    """A two-stage CNN (conv-pool, conv-pool, dense softmax) fitted to `images` and `labels`."""
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([
        keras.Input(images.shape[1:]),
        layers.Conv2D(32, 3, activation="relu", padding="same"),
        layers.MaxPooling2D(),
        layers.Conv2D(64, 3, activation="relu", padding="same"),
        layers.MaxPooling2D(),
        layers.Flatten(),
        layers.Dropout(0.3),
        layers.Dense(num_classes, activation="softmax"),
    ], name="label_judge")
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy")
    model.fit(images, labels, epochs=EPOCHS, batch_size=BATCH_SIZE, shuffle=True, verbose=0)
    return model


def predict_classes(model: keras.Model, images: np.ndarray) -> np.ndarray:
    return np.argmax(model.predict(images, batch_size=256, verbose=0), axis=-1)
