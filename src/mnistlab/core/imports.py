"""Imports a run pays for without using, kept out of its start-up; and what it did import, kept out
of the garbage collector's way."""

from __future__ import annotations

import gc
import sys
from collections.abc import Iterator
from contextlib import contextmanager

#: imported by Keras only for what no run uses: its scikit-learn wrappers (keras.wrappers) and its
#: plotting helpers (keras.visualization: matplotlib.pyplot; a run's figures are drawn elsewhere)
UNUSED_BY_KERAS = ("sklearn", "matplotlib")


@contextmanager
def without_unused() -> Iterator[None]:
    """Import Keras inside this block: ``import keras`` imports scikit-learn and matplotlib when
    they are installed (MLflow installs both), a part of a run's start-up spent on wrappers and
    plots no run uses. Inside the block those imports fail, which Keras takes as "not installed";
    afterwards they work again, so code that does use them imports them as usual (and Keras's
    wrappers and plotting helpers then say they are missing)."""
    blocked = [name for name in UNUSED_BY_KERAS if name not in sys.modules]
    for name in blocked:
        sys.modules[name] = None  # type: ignore[assignment]  # None: import raises ImportError
    try:
        yield
    finally:
        for name in blocked:
            if sys.modules.get(name, False) is None:
                del sys.modules[name]


_settled = False


def settle() -> None:
    """Once per process, after the run's imports: the objects they created leave the garbage
    collector's generations (``gc.freeze``). With TensorFlow, Keras and MLflow loaded, a full
    collection walks about 470,000 of them for a quarter of a second, at every Keras
    ``clear_session`` and every automatic collection; they live as long as the process anyway.
    Only once: a later run's objects (a reused worker's last model) must stay collectable."""
    global _settled
    if not _settled:
        gc.freeze()
        _settled = True
