"""The test scores, from one pass over the test images."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import keras
import numpy as np

from mnistlab.build.losses import make_loss
from mnistlab.data.prepare import Dataset

# inference only, so the batch does not change the results: 2,500 splits the 10,000 test images
# into four equal batches, one input shape for TensorFlow to trace
EVAL_BATCH_SIZE = 2500


def evaluate(model: keras.Model, data: Dataset, loss: Mapping) -> tuple[dict[str, float], np.ndarray]:
    """Test loss and accuracy and the class probabilities, from one pass over the test images.

    One ``predict`` instead of ``evaluate`` + ``predict`` saves a second pass and its tracing
    (~2 s); the loss is Keras's own loss function plus any regularisation, as ``evaluate`` has it.
    """
    with _one_batch_per_call(model):
        probabilities = model.predict(data.x_test, batch_size=EVAL_BATCH_SIZE, verbose=0)
    test_loss = float(keras.ops.convert_to_numpy(make_loss(loss)(data.y_test, probabilities))) + sum(
        float(keras.ops.convert_to_numpy(term)) for term in model.losses
    )
    accuracy = float(np.mean(probabilities.argmax(axis=1) == data.labels_test))
    return {"test_loss": test_loss, "test_accuracy": accuracy}, probabilities


@contextmanager
def _one_batch_per_call(model: keras.Model) -> Iterator[None]:
    """``predict`` one batch per call into TensorFlow: with the training's steps_per_execution=N,
    Keras traces N copies of the model into the graph of predict's first call (0.1-0.3 s of a
    run, a new model in every run). The model's own setting is back afterwards."""
    steps = model.steps_per_execution
    model.steps_per_execution, model.predict_function = 1, None
    try:
        yield
    finally:
        model.steps_per_execution, model.predict_function = steps, None  # the next predict traces its own
