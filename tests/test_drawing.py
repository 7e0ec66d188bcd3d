"""The figures' helper process (reports.drawing): what it draws is what the run would draw itself,
secrets masked, and whatever goes wrong with it, the run still gets every figure or the real error.
Synthetic arrays: what is tested is the drawing, not a model."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from mnistlab.core.redaction import masked_forms
from mnistlab.reports.drawing import Drawer, draw
from mnistlab.reports.evaluation import Misclassified, confusion_matrix

pytestmark = pytest.mark.fast

SECRET = "s3cret-value-42"
TITLE = f"model=cnn,tracking.tags.note={SECRET} (9,362 parameters)"


@pytest.fixture
def drawer() -> Iterator[Drawer]:
    found = Drawer()
    yield found
    found.close()  # the helper waited for, killed if it does not end


def requests() -> list[tuple[str, tuple, str]]:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, 300)
    predicted = np.where(rng.random(300) < 0.8, labels, (labels + 1) % 10)
    images = rng.random((300, 28, 28, 1)).astype(np.float32)
    history = {"loss": [0.9, 0.5], "val_loss": [0.8, 0.6], "accuracy": [0.7, 0.9], "val_accuracy": [0.75, 0.85]}
    names = tuple(str(k) for k in range(10))
    return [
        ("learning_curves", (history, TITLE), "learning_curves.png"),
        ("confusion_figure", (confusion_matrix(labels, predicted, 10), TITLE, names), "confusion_matrix.png"),
        ("misclassified_figure", (Misclassified.of(images, labels, predicted), TITLE), "misclassified.png"),
    ]


def drawn_here(folder: Path) -> dict[str, bytes]:
    """The same figures drawn in this process, the secret masked as the run's environment has it."""
    folder.mkdir()
    for figure, args, name in requests():
        draw(figure, args, folder / name, masked_forms())
    return {path.name: path.read_bytes() for path in folder.iterdir()}


def test_the_helper_draws_byte_for_byte_what_the_run_would_with_secrets_masked(drawer, tmp_path, monkeypatch):
    monkeypatch.setenv("NOTE_TOKEN", SECRET)
    drawer.start()
    assert drawer.pid is not None and drawer.pid != os.getpid()
    for figure, args, name in requests():
        drawer.ask(figure, args, name)
    with drawer.drawn() as paths:
        assert [p.name for p in paths] == ["learning_curves.png", "confusion_matrix.png", "misclassified.png"]
        helper = {p.name: p.read_bytes() for p in paths}
        folder = paths[0].parent
    assert not folder.exists()  # removed once logged
    here = drawn_here(tmp_path / "here")
    assert helper == here
    monkeypatch.delenv("NOTE_TOKEN")  # unmasked, the titles differ: the comparison above can tell
    assert drawn_here(tmp_path / "unmasked") != here


def test_a_helper_that_died_leaves_every_figure_to_the_run(drawer, tmp_path):
    drawer.start()
    os.kill(drawer.pid, signal.SIGKILL)
    for figure, args, name in requests():
        drawer.ask(figure, args, name)
    with drawer.drawn() as paths:
        got = {p.name: p.read_bytes() for p in paths}
    assert got == drawn_here(tmp_path / "here")
    drawer.start()  # the next run starts another helper
    assert drawer.pid is not None
    figure, args, name = requests()[0]
    drawer.ask(figure, args, name)
    with drawer.drawn() as paths:
        assert paths[0].read_bytes() == got[name]


def test_a_figure_that_cannot_be_drawn_raises_its_error_in_the_run(drawer):
    drawer.start()
    drawer.ask("learning_curves", (None, TITLE), "learning_curves.png")  # no history
    with pytest.raises(AttributeError, match="'NoneType' object has no attribute 'get'"):
        with drawer.drawn():
            pass


def test_figures_a_failed_run_asked_for_do_not_reach_the_next_run(drawer, tmp_path):
    drawer.start()
    curves, confusion, _ = requests()
    drawer.ask(*curves)  # then the run failed before logging its figures
    drawer.start()  # the next run
    drawer.ask(*confusion)
    with drawer.drawn() as paths:
        assert [p.name for p in paths] == ["confusion_matrix.png"]
        assert paths[0].read_bytes() == drawn_here(tmp_path / "here")["confusion_matrix.png"]
