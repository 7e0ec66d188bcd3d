"""How run.py behaves on the command line: validation first, one-line errors, exit codes, summary.

Hydra normally prints its own errors (several lines) and a stripped traceback for anything the
task raises. ``entry`` sets HYDRA_FULL_ERROR=1 so those exceptions reach it instead, and prints
each as one line. Set HYDRA_FULL_ERROR=1 yourself to get Hydra's behaviour and full tracebacks.
"""

from __future__ import annotations

import os
import re
import signal
import sys
import traceback
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from collections.abc import Callable, Iterator

import yaml
from omegaconf import DictConfig

from mnistlab.config import validate
from mnistlab.errors import MnistlabError, one_line

EXIT_USAGE, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_TERMINATED = 2, 1, 130, 143


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so the run is ended (KILLED) instead of left RUNNING."""


ONE_LINE_ERRORS = "MNISTLAB_ONE_LINE_ERRORS"  # set by entry(); inherited by launcher processes


def entry(hydra_main: Callable[[], Any], root_dir: Path) -> None:
    """Call a ``@hydra.main`` function; turn every failure into one line and an exit code."""
    os.environ.setdefault("MNISTLAB_ROOT", str(root_dir.resolve()))
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ INFO chatter
    if os.environ.get("HYDRA_FULL_ERROR") == "1":  # the user asked for Hydra's full tracebacks
        hydra_main()
        return
    os.environ["HYDRA_FULL_ERROR"] = "1"  # let Hydra's exceptions reach us instead of its printer
    os.environ[ONE_LINE_ERRORS] = "1"
    try:
        hydra_main()
    except (Exception, KeyboardInterrupt) as exc:
        exit_for(exc)


def task(cfg: DictConfig) -> float | None:
    """The Hydra task: validate (fast, no TensorFlow), then train; returns the sweep objective."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    hydra_cfg = HydraConfig.get()
    output_dir = hydra_cfg.runtime.output_dir
    try:
        valid = validate(cfg)
        run_name = valid.tracking.run_name or hydra_cfg.job.override_dirname or "defaults"
        with _sigterm_as_interrupt():
            from mnistlab import runner  # TensorFlow and MLflow load here, after validation

            result = runner.run(valid, output_dir=output_dir, run_name=run_name)
    except (Exception, KeyboardInterrupt) as exc:
        # single run: report here, or Hydra adds lines of its own; sweeps: Hydra records the failure
        if os.environ.get(ONE_LINE_ERRORS) and hydra_cfg.mode == RunMode.RUN:
            exit_for(exc, output_dir)
        raise
    print(summary(result, valid), flush=True)
    return result.objective


def exit_for(exc: BaseException, output_dir: str | None = None) -> None:
    """Print ``exc`` as one line on stderr and exit with the code that says what happened."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    if isinstance(exc, Terminated):
        message, code = "terminated (SIGTERM)", EXIT_TERMINATED
    elif isinstance(exc, KeyboardInterrupt):
        message, code = "interrupted", EXIT_INTERRUPTED
    elif isinstance(exc, MnistlabError):
        message, code = str(exc), exc.exit_code
    elif isinstance(exc, (HydraException, OmegaConfBaseException)):
        message, code = hydra_error_line(exc), EXIT_USAGE
    elif isinstance(exc, yaml.YAMLError):  # a config file that is not valid YAML (names file and line)
        message, code = "invalid YAML: " + one_line(exc), EXIT_USAGE
    else:
        saved = _save_traceback(exc, output_dir) if output_dir else None
        hint = f"traceback in {saved}" if saved else "set HYDRA_FULL_ERROR=1 for the traceback"
        message, code = f"{type(exc).__name__}: {one_line(exc)} ({hint})", EXIT_FAILED
    print(f"error: {message}", file=sys.stderr, flush=True)
    sys.exit(code)


def summary(result: Any, cfg: DictConfig) -> str:
    """What a user wants to read when a run ends: the score, the cost, and where it is recorded."""
    from mnistlab.tracking import where_to_look

    m = result.metrics
    first, *rest = where_to_look(cfg.tracking.uri, result.experiment_id, result.run_id)
    lines = [
        f"model       {cfg.model.name} ({result.num_params:,} parameters), {cfg.optimizer.name}, "
        f"{cfg.loss.name}, {cfg.trainer.epochs} epochs of batch {cfg.trainer.batch_size}",
        f"test        accuracy {m['test_accuracy']:.4f}, loss {m['test_loss']:.4f}",
        f"time        {m['wall_time_s']:.1f} s wall, {m['train_time_s']:.1f} s training",
        f"MLflow run  {result.run_id} (experiment {cfg.tracking.experiment!r}, id {result.experiment_id})",
        f"look at it  {first}",
        *(f"            {line}" for line in rest),
    ]
    return "\n".join(lines)


def hydra_error_line(exc: BaseException) -> str:
    """Hydra's multi-line composition errors, as one line that keeps what the user needs."""
    text = str(exc)
    if exc.__cause__ is not None:
        text += "\n" + str(exc.__cause__)
    unknown = re.search(r"Could not override '([^']+)'", text)
    if unknown and "not in struct" in text:
        key = unknown.group(1)
        return (f"{key}: no such key in the config (`python run.py --cfg job` shows them all; "
                f"prefix the override with + to add a new key: +{key}=...)")
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


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    def handler(signum: int, frame: Any) -> None:
        raise Terminated()

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread (some launchers): leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _save_traceback(exc: BaseException, output_dir: str) -> str | None:
    path = Path(output_dir) / "traceback.txt"
    try:
        path.write_text("".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))
    except OSError:
        return None
    return str(path)
