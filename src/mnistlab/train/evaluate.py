"""The test scores, from one pass over the test images."""

from __future__ import annotations

from collections.abc import Mapping

import keras
import numpy as np
import tensorflow as tf

from mnistlab.build.losses import make_loss
from mnistlab.data.prepare import Dataset

# inference only, so the batch does not change the results: 2,500 splits the 10,000 test images
# into four equal batches
EVAL_BATCH_SIZE = 2500


def evaluate(model: keras.Model, data: Dataset, loss: Mapping) -> tuple[dict[str, float], np.ndarray]:
    """Test loss and accuracy and the class probabilities, from one pass over the test images.

    One pass instead of ``evaluate`` + ``predict`` saves a second pass and its tracing (~2 s); the
    loss is Keras's own loss function plus any regularisation, as ``evaluate`` has it.
    """
    probabilities = predict(model, data.x_test)
    test_loss = float(keras.ops.convert_to_numpy(make_loss(loss)(data.y_test, probabilities))) + sum(
        float(keras.ops.convert_to_numpy(term)) for term in model.losses
    )
    accuracy = float(np.mean(probabilities.argmax(axis=1) == data.labels_test))
    return {"test_loss": test_loss, "test_accuracy": accuracy}, probabilities


def predict(model: keras.Model, images: np.ndarray) -> np.ndarray:
    """What ``model.predict(images)`` returns, bit for bit, from one traced function of the model's
    inference call: without predict()'s tf.data pipeline and callbacks, set up again for every
    run's new model (0.05-0.1 s of a run), and without its steps_per_execution, which traced one
    copy of the model per batch into its first call."""
    signature = tf.TensorSpec((None, *images.shape[1:]), tf.as_dtype(images.dtype))  # any batch: one trace
    forward = tf.function(
        lambda batch: model(batch, training=False), input_signature=[signature], jit_compile=model.jit_compile
    )
    batches = range(0, len(images), EVAL_BATCH_SIZE)
    return np.concatenate([forward(images[start : start + EVAL_BATCH_SIZE]).numpy() for start in batches])
