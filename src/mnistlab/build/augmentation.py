"""Random distortions of the training images (data.augment), as Keras layers in front of the model."""

from __future__ import annotations

from collections.abc import Mapping

import keras


def with_augmentation(model: keras.Model, augment: Mapping, seed: int) -> keras.Model:
    """``model`` behind Keras's random image layers, which act in training only.

    In the model graph rather than in a tf.data map: Keras's seeded generators then draw the same
    distortions on every run of a seed (a parallel map does not), at a small cost per step. The
    model logged to MLflow is ``model`` itself, without these layers."""
    layers = []
    if augment["rotation"]:
        layers.append(keras.layers.RandomRotation(augment["rotation"] / 360, fill_mode="constant", seed=seed + 1))
    if augment["shift"]:
        layers.append(
            keras.layers.RandomTranslation(augment["shift"], augment["shift"], fill_mode="constant", seed=seed + 2)
        )
    if augment["zoom"]:
        layers.append(keras.layers.RandomZoom(augment["zoom"], fill_mode="constant", seed=seed + 3))
    if not layers:
        return model
    return keras.Sequential([keras.Input(model.input_shape[1:]), *layers, model], name=f"{model.name}_augmented")
