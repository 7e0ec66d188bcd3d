"""A run's figures, drawn in a helper process on the core the run leaves idle.

A run's own Python work is one thread: while it imports TensorFlow, the helper loads matplotlib
(a third of a second), and while it tests and logs its model, the helper draws and saves the
figures (0.2 s each). The run then logs the PNG files. Anything the helper cannot do (it did not
start, died, or failed on a figure) is drawn in the run's process instead, so a figure is never
lost and a real error in drawing one is raised there, as before.

The helper is ``python -m mnistlab.reports.drawing``: requests come pickled on its stdin, one
answer per figure goes back on its stdout, and it ends at end of input, so it ends with the
process that started it, however that one ends. A launcher's reused worker keeps it for its next
runs.
"""

from __future__ import annotations

import io
import logging
import pickle
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

from mnistlab.core.redaction import masked_forms, redact_figure

log = logging.getLogger(__name__)


def draw(figure: str, args: tuple, path: Path, forms: list[str]) -> None:
    """``reports.figures.<figure>(*args)`` saved as a PNG at ``path``, its texts redacted."""
    from mnistlab.reports import figures  # matplotlib: in the helper, or here when the helper failed

    redact_figure(getattr(figures, figure)(*args), forms).savefig(path)


class Drawer:
    """Hands figures to the helper process and collects them; one per process (``DRAWER``)."""

    def __init__(self) -> None:
        self._helper: subprocess.Popen | None = None
        self._asked: list[tuple[str, tuple, Path, list[str]]] = []  # sent, not answered yet
        self._folder: Path | None = None  # where the figures asked for since the last drawn() go

    def start(self) -> None:
        """A run begins: the helper, started now unless it runs (it loads matplotlib meanwhile).
        Figures a failed run asked for and never collected are dropped."""
        for _ in range(len(self._asked)):
            self._answer()
        self._asked = []
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)
            self._folder = None
        if self._helper is not None and self._helper.poll() is None:
            return
        try:
            self._helper = subprocess.Popen(
                [sys.executable, "-m", __name__],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,  # its failures show as figures drawn here instead
            )
        except OSError as exc:
            log.debug("no figure helper (%s): figures are drawn in this process", exc)
            self._helper = None

    def ask(self, figure: str, args: tuple, name: str) -> None:
        """Ask for ``reports.figures.<figure>(*args)`` as a PNG file called ``name`` (see ``drawn``)."""
        if self._folder is None:
            self._folder = Path(tempfile.mkdtemp(prefix="mnistlab-figures-"))
        request = (figure, args, self._folder / name, masked_forms())
        self._asked.append(request)
        if self._helper is None:
            return
        try:
            pickle.dump(request, self._helper.stdin, protocol=pickle.HIGHEST_PROTOCOL)
            self._helper.stdin.flush()
        except OSError:  # the helper is gone: drawn() draws what it did not
            self._helper = None

    @contextmanager
    def drawn(self) -> Iterator[list[Path]]:
        """The PNG files of every figure asked for, in order: the helper's, or drawn here where it
        failed; removed after the block."""
        asked, self._asked = self._asked, []
        folder, self._folder = self._folder, None
        try:
            for figure, args, path, forms in asked:
                failure = self._answer()
                if failure is not None:
                    log.debug("the figure helper did not draw %s (%s): drawing it here", path.name, failure)
                    draw(figure, args, path, forms)
            yield [path for _, _, path, _ in asked]
        finally:
            if folder is not None:
                shutil.rmtree(folder, ignore_errors=True)

    def close(self) -> None:
        """End the helper: its input closed, then waited for (killed after 30 s). A process that
        ends ends its helper by itself; this is for those that go on (tests)."""
        helper, self._helper = self._helper, None
        if helper is None:
            return
        try:
            helper.stdin.close()
        except OSError:  # it is gone already
            pass
        try:
            helper.wait(timeout=30)
        except subprocess.TimeoutExpired:
            helper.kill()
            helper.wait()
        helper.stdout.close()

    @property
    def pid(self) -> int | None:
        return self._helper.pid if self._helper is not None else None

    def _answer(self) -> str | None:
        """The helper's answer to the oldest request: None when the figure is saved, else why not."""
        if self._helper is None:
            return "no helper"
        try:
            return pickle.load(self._helper.stdout)
        except (EOFError, OSError, pickle.UnpicklingError) as exc:
            self._helper.poll()  # reaped, if it ended
            self._helper = None  # gone (killed, crashed): the next run starts another
            return f"it ended: {exc!r}"


DRAWER = Drawer()


def serve(requests: BinaryIO, answers: BinaryIO) -> None:
    """The helper's loop: draw each request, answer None or the error's traceback, until end of input.
    Requests are read as they come (a thread), so the run never waits on a full pipe."""
    pending: queue.Queue[Any] = queue.Queue()

    def read() -> None:
        while True:
            try:
                pending.put(pickle.load(requests))
            except (EOFError, OSError, pickle.UnpicklingError):
                pending.put(None)
                return

    threading.Thread(target=read, daemon=True).start()
    # matplotlib, its fonts and PNG writer, and what unpickling a request needs, all loaded before the
    # first request comes (while the run imports TensorFlow): a first figure took twice as long
    from mnistlab.reports import evaluation, figures  # noqa: F401

    figures.learning_curves({"loss": [1.0, 0.5]}, "warm-up").savefig(io.BytesIO(), format="png")

    while (request := pending.get()) is not None:
        try:
            draw(*request)
            answer = None
        except Exception:
            answer = traceback.format_exc()
        pickle.dump(answer, answers)
        answers.flush()


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the run's to handle; the helper ends with it
    serve(sys.stdin.buffer, sys.stdout.buffer)
