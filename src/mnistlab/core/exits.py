"""How a failure reaches the terminal: one line on stderr, and the exit code that says what happened
(2: a usage or config error, 1: a failure, 130: Ctrl-C, 143: SIGTERM, 141: the reader of stdout went
away). Used by run.py's task, the sweep tracker and the ``mnistlab`` commands alike."""

from __future__ import annotations

import atexit
import os
import re
import sys
import sysconfig
import threading
import traceback
from pathlib import Path
from typing import NoReturn

import hydra
import omegaconf
import yaml
from hydra.errors import HydraException
from omegaconf.errors import OmegaConfBaseException

from mnistlab.core.errors import MnistlabError, Terminated, one_line
from mnistlab.core.redaction import redact

EXIT_USAGE, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_TERMINATED = 2, 1, 130, 143
EXIT_CLOSED_PIPE = 141  # 128 + SIGPIPE: what a Unix tool killed by it returns (`git log | head`)


def quit_closed_pipe() -> None:
    """stdout's reader went away (``python run.py --help | head``): stop without a word, as Unix
    tools do, instead of an error line about a pipe the user closed on purpose."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())  # Python flushes stdout once more at exit: into nothing
    sys.exit(EXIT_CLOSED_PIPE)


def exit_now(code: int = 0) -> NoReturn:
    """End a finished command as Python's shutdown would, without its last step: the threads'
    shutdown (concurrent.futures' workers, then every non-daemon thread joined), the atexit handlers
    (logging's files, MLflow's queues, temporary folders), stdout and stderr flushed; then exit.
    The step skipped is the teardown of every module and of TensorFlow's C++ state: 1-2 s after a
    run (benchmarks/RESULTS.md, run_overhead), with nothing left to write."""
    threading._shutdown()  # what Python's own shutdown calls first (private, present since 3.4)
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a reader that went away, a closed stream: nothing to lose
            pass
    os._exit(code)


def exit_for(exc: BaseException, output_dir: str | None = None) -> None:
    """Print ``exc`` as one line on stderr and exit with the code that says what happened."""
    message, code = describe(exc, output_dir)
    message = " ".join(redact(message).splitlines())  # one line, whatever text it quotes
    print(f"error: {message}", file=sys.stderr, flush=True)
    sys.exit(code)


def describe(exc: BaseException, output_dir: str | None = None) -> tuple[str, int]:
    """One line for ``exc`` and the exit code that says what happened; an unexpected exception's
    traceback is saved to ``output_dir``."""
    hint = f"; {exc.hint}" if getattr(exc, "hint", None) else ""  # where an interrupted run can resume from
    if isinstance(exc, Terminated):
        return "terminated (SIGTERM)" + hint, EXIT_TERMINATED
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted" + hint, EXIT_INTERRUPTED
    if isinstance(exc, MnistlabError):
        cause = getattr(exc, "cause", None)
        saved = _save_traceback(cause, output_dir) if cause is not None and output_dir else None
        return str(exc) + (f" (traceback in {saved})" if saved else ""), exc.exit_code
    if isinstance(exc, (HydraException, OmegaConfBaseException)):
        return hydra_error_line(exc), EXIT_USAGE
    if isinstance(exc, yaml.YAMLError):  # a config file that is not valid YAML (names file and line)
        return "invalid YAML: " + one_line(exc), EXIT_USAGE

    # raised by Hydra itself, or for it by OmegaConf or the standard library (e.g. logging for
    # hydra.verbose=[1]): Hydra refusing the command line (e.g. model=1), told plainly
    def helper(path: Path) -> bool:  # OmegaConf, or the standard library (not the packages installed in it)
        return path.is_relative_to(Path(omegaconf.__file__).parent) or (
            path.is_relative_to(sysconfig.get_paths()["stdlib"])
            and not {"site-packages", "dist-packages"} & set(path.parts)
        )

    frames = [Path(frame.f_code.co_filename) for frame, _ in traceback.walk_tb(exc.__traceback__)]
    raiser = next((path for path in reversed(frames) if not helper(path)), None)
    if isinstance(exc, Exception) and raiser and raiser.is_relative_to(Path(hydra.__file__).parent):
        return hydra_error_line(exc), EXIT_USAGE
    saved = _save_traceback(exc, output_dir) if output_dir else None
    hint = f"traceback in {saved}" if saved else "set HYDRA_FULL_ERROR=1 for the traceback"
    return f"{type(exc).__name__}: {one_line(exc)} ({hint})", EXIT_FAILED


def hydra_error_line(exc: BaseException) -> str:
    """Hydra's multi-line composition errors, as one line that keeps what the user needs."""
    text = str(exc) or type(exc).__name__
    if not isinstance(exc, (HydraException, OmegaConfBaseException)):  # Hydra's plain errors (e.g. model=1)
        # the override Hydra was applying, if any: name it, instead of printing its repr or nothing
        override = next(
            (
                frame.f_locals["override"].input_line
                for frame, _ in reversed(list(traceback.walk_tb(exc.__traceback__)))
                if hasattr(frame.f_locals.get("override"), "input_line")
            ),
            None,
        )
        if override:
            return f"{override}: {' '.join(re.sub(r'[ :]*Override[(].*', '', text, flags=re.S).split())}"
        text = "Hydra cannot use this command line: " + text
    if exc.__cause__ is not None:
        text += "\n" + str(exc.__cause__)
    unknown = re.search(r"Could not override '([^']+)'", text)
    if unknown and "not in struct" in text:
        key = unknown.group(1)
        return (
            f"{key}: no such key in the config (`python run.py --cfg job` shows them all; "
            f"prefix the override with + to add a new key: +{key}=...)"
        )
    parts: list[str] = []
    listing = False
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("full_key:", "object_type=", "reference_type=")):
            continue
        if line.startswith("Config search path"):
            break
        if listing and raw[:1].isspace():
            parts[-1] += (" " if parts[-1].endswith(":") else ", ") + line
            continue
        listing = line.endswith(":")
        parts.append(line)
    return " ".join(p if p.endswith((".", ":")) else p + "." for p in parts)


def _save_traceback(exc: BaseException, output_dir: str) -> str | None:
    path = Path(output_dir) / "traceback.txt"
    try:
        path.write_text(redact("".join(traceback.format_exception(type(exc), exc, exc.__traceback__))))
    except OSError:
        return None
    return str(path)
