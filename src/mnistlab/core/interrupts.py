"""Ctrl-C and SIGTERM during a run: raised as exceptions, remembered, or held back during writes.

Remembering matters because TensorFlow does not always let a KeyboardInterrupt through: raised
inside Python code that TensorFlow called, it can come out as another error, or not at all. A run
that failed while a signal had arrived was interrupted and ends KILLED, not FAILED; one whose
interrupt was lost stops at the next epoch's end (``check``).
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from mnistlab.core.errors import Terminated

_received: list[int] = []  # the signals that arrived inside ``raised()``


def _raise(signum: int, frame: Any) -> None:
    _received.append(signum)
    raise Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()


@contextmanager
def raised() -> Iterator[None]:
    """Ctrl-C raises KeyboardInterrupt and SIGTERM ``Terminated`` (so runs end KILLED, not left
    RUNNING); any other error the block raises after one of them arrived leaves it as that interrupt."""
    if threading.current_thread() is not threading.main_thread():  # some launchers: leave signals alone
        yield
        return
    _received.clear()
    previous = {sig: signal.signal(sig, _raise) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    except Exception as exc:
        interrupt = as_interrupt(exc)
        if interrupt is exc:
            raise
        raise interrupt from exc
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        _received.clear()


def check() -> None:
    """Raise the interrupt for a signal that arrived but whose exception never came out (raised
    inside code that discarded it)."""
    if _received:
        raise Terminated() if _received[0] == signal.SIGTERM else KeyboardInterrupt()


def as_interrupt(exc: BaseException) -> BaseException:
    """``exc`` itself, or, when a signal arrived while it was raised, the interrupt it stands for."""
    if isinstance(exc, KeyboardInterrupt) or not _received:
        return exc
    interrupt = Terminated() if _received[0] == signal.SIGTERM else KeyboardInterrupt()
    interrupt.__cause__ = exc
    return interrupt


class Deferral:
    """Ctrl-C and SIGTERM held from ``start()`` to ``stop()``, then raised as they would have been:
    for a stretch that must not be cut (a sqlite commit, a run's last writes and its end), also
    one that does not fit one ``with`` block."""

    def __init__(self) -> None:
        self.held: list[int] = []
        self._previous: dict[int, Any] = {}

    def start(self) -> None:
        if threading.current_thread() is not threading.main_thread():  # signals only reach the main thread
            return
        self._previous = {
            sig: signal.signal(sig, lambda signum, frame: self.held.append(signum))
            for sig in (signal.SIGINT, signal.SIGTERM)
        }

    def stop(self, raise_held: bool = True) -> None:
        """Restore the handlers; with ``raise_held``, deliver a signal that arrived meanwhile."""
        previous, self._previous = self._previous, {}
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if not (previous and self.held and raise_held):
            return
        handler = previous[self.held[0]]
        if callable(handler):
            handler(self.held[0], None)  # Python's KeyboardInterrupt, or ``raised()``'s
        elif handler == signal.SIG_DFL:
            os.kill(os.getpid(), self.held[0])


@contextmanager
def deferred() -> Iterator[None]:
    """Hold Ctrl-C and SIGTERM until the block ends. A signal in the middle of a sqlite commit
    leaves that transaction open in this process, and its own next writes (marking the run KILLED)
    then wait for the lock and fail: the run would be left RUNNING."""
    deferral = Deferral()
    deferral.start()
    try:
        yield
    except BaseException:
        deferral.stop(raise_held=False)  # the block's own error says more than a signal held meanwhile
        raise
    deferral.stop()
