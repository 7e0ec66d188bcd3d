"""The test scores, from one pass over the test images."""

from __future__ import annotations

from collections.abc import Mapping

import keras
import numpy as np

from mnistlab.build.losses import make_loss
from mnistlab.data.prepare import Dataset

EVAL_BATCH_SIZE = 1024  # inference only: a large batch is faster and does not change the results


def evaluate(model: keras.Model, data: Dataset, loss: Mapping) -> tuple[dict[str, float], np.ndarray]:
    """Test loss and accuracy and the class probabilities, from one pass over the test images.

    One ``predict`` instead of ``evaluate`` + ``predict`` saves a second pass and its tracing
    (~2 s); the loss is Keras's own loss function plus any regularisation, as ``evaluate`` has it.
    """
    probabilities = model.predict(data.x_test, batch_size=EVAL_BATCH_SIZE, verbose=0)
    test_loss = float(keras.ops.convert_to_numpy(make_loss(loss)(data.y_test, probabilities))) + sum(
        float(keras.ops.convert_to_numpy(term)) for term in model.losses
    )
    accuracy = float(np.mean(probabilities.argmax(axis=1) == data.labels_test))
    return {"test_loss": test_loss, "test_accuracy": accuracy}, probabilities
