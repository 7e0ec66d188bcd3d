"""Imports a run pays for without using: kept out of its start-up."""

from __future__ import annotations

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
