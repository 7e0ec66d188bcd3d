"""The figures a run logs, drawn from hand-built arrays (synthetic images: what is tested is the
drawing, not a model)."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.text import Text

from mnistlab.reports import figures
from mnistlab.reports.evaluation import Misclassified

pytestmark = pytest.mark.fast


def test_misclassified_grid_shows_the_first_wrong_images_labelled_true_to_predicted():
    rng = np.random.default_rng(0)
    images = rng.random((500, 28, 28, 1)).astype(np.float32)
    labels = np.arange(500) % 10
    predicted = labels.copy()
    wrong = np.arange(3, 500, 7)  # 71 wrong: more than the 64 shown
    predicted[wrong] = (labels[wrong] + 1) % 10
    fig = figures.misclassified_figure(Misclassified.of(images, labels, predicted), "model=cnn")
    (ax,) = fig.axes
    texts = [t.get_text() for t in ax.findobj(Text) if t.get_text().startswith("#")]
    assert texts == [f"#{i}: {labels[i]} -> {predicted[i]}" for i in wrong[:64]]
    assert "71 of 500 test images misclassified, the first 64 shown" in fig._suptitle.get_text()
    mosaic = ax.get_images()[0].get_array()
    tiles = [mosaic[r : r + 28, c : c + 28] for r in range(mosaic.shape[0] - 27) for c in range(mosaic.shape[1] - 27)]
    for i in (wrong[0], wrong[63]):  # the first and the last shown are there, pixel for pixel
        assert any(np.array_equal(tile, images[i, :, :, 0]) for tile in tiles)
    assert not any(np.array_equal(tile, images[wrong[64], :, :, 0]) for tile in tiles)


def test_no_misclassified_image_still_draws_a_figure():
    labels = np.arange(10)
    fig = figures.misclassified_figure(Misclassified.of(np.zeros((10, 28, 28, 1)), labels, labels), "perfect")
    assert "0 of 10 test images misclassified" in fig._suptitle.get_text()
