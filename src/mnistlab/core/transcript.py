"""What the terminal shows during a job, also written to the job's log file (``run.log``): Keras's
epochs, the summary, the error line, beside the log records Hydra's file handler writes there."""

from __future__ import annotations

import io
import logging
import re
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

ANSI_STYLE = re.compile(r"\x1b\[[0-9;]*m")  # Keras's bold and colours on a terminal


class Tee(io.TextIOBase):
    """A text stream that writes to ``stream`` as it is and to ``file`` line by line, as the line
    finally reads: a live progress bar's redraws (``\\r``, backspaces) leave only their last state."""

    def __init__(self, stream: IO[str], file: IO[str]) -> None:
        self.stream, self.file, self.pending = stream, file, ""

    def write(self, text: str) -> int:
        self.stream.write(text)
        self.pending += text
        *lines, self.pending = self.pending.split("\n")
        for line in lines:
            self.file.write(final_state(line) + "\n")
        if lines:
            self.file.flush()
        return len(text)

    def flush(self) -> None:
        self.stream.flush()

    def close_line(self) -> None:
        """What is left of an unfinished line, written to the file."""
        if self.pending.strip():
            self.file.write(final_state(self.pending) + "\n")
            self.file.flush()
        self.pending = ""

    def isatty(self) -> bool:  # Keras draws a live bar only on a terminal
        return self.stream.isatty()

    def fileno(self) -> int:
        return self.stream.fileno()

    def __getattr__(self, name: str) -> Any:  # encoding, errors, buffer, ...
        return getattr(self.stream, name)


def final_state(line: str) -> str:
    """The text a terminal shows for ``line`` once drawn: after its last carriage return, with
    each backspace removing the character before it; without colours."""
    shown: list[str] = []
    for char in ANSI_STYLE.sub("", line.rsplit("\r", 1)[-1]):
        if char == "\b":
            if shown:
                shown.pop()
        else:
            shown.append(char)
    return "".join(shown).rstrip()


def columns() -> int | None:
    """The width tables are fitted to: the terminal's ($COLUMNS wins); None when stdout is not a
    terminal (a log, a pipe, a test: nothing is cut, whatever $COLUMNS says)."""
    if sys.stdout.isatty():
        return shutil.get_terminal_size().columns
    return None


def log_file() -> Path | None:
    """The file Hydra's job logging writes to (``<output dir>/<job name>.log``), if any."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            return Path(handler.baseFilename)
    return None


@contextmanager
def transcript() -> Iterator[None]:
    """stdout and stderr also go to the job's log file while the block runs."""
    path = log_file()
    if path is None:
        yield
        return
    with open(path, "a", encoding="utf-8") as file:
        out, err = sys.stdout, sys.stderr
        sys.stdout, sys.stderr = Tee(out, file), Tee(err, file)
        try:
            yield
        finally:
            for tee in (sys.stdout, sys.stderr):
                if isinstance(tee, Tee):
                    tee.flush()
                    tee.close_line()
            sys.stdout, sys.stderr = out, err
