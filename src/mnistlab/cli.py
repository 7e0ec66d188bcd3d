"""How run.py behaves on the command line: validation first, one-line errors, exit codes, summary.

Hydra normally prints its own errors (several lines) and a stripped traceback for anything the
task raises. ``entry`` sets HYDRA_FULL_ERROR=1 so those exceptions reach it instead, and prints
each as one line. Set HYDRA_FULL_ERROR=1 yourself to get Hydra's behaviour and full tracebacks.
"""

from __future__ import annotations

import logging
import math
import os
import re
import shlex
import sys
import traceback
import warnings
from pathlib import Path
from typing import Any
from collections.abc import Callable

import yaml
from omegaconf import DictConfig, OmegaConf

from mnistlab import interrupts
from mnistlab.config import validate
from mnistlab.errors import ConfigError, MnistlabError, Terminated, one_line
from mnistlab.redaction import Redacted
from mnistlab.search import TrialLink
from mnistlab.sweep import Sweep

EXIT_USAGE, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_TERMINATED = 2, 1, 130, 143


ONE_LINE_ERRORS = "MNISTLAB_ONE_LINE_ERRORS"  # set by entry(); inherited by launcher processes
COMMAND = "MNISTLAB_COMMAND"  # likewise
CODE_DIR = "MNISTLAB_CODE_DIR"  # likewise


def entry(hydra_main: Callable[[], Any], root_dir: Path) -> None:
    """Call a ``@hydra.main`` function; turn every failure into one line and an exit code."""
    os.environ.setdefault("MNISTLAB_ROOT", str(root_dir.resolve()))
    os.environ[CODE_DIR] = str(root_dir.resolve())  # the checkout whose git commit the runs record
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ INFO chatter
    # the command line as typed, for the runs' "command" tag (a launcher's worker processes have their own argv)
    os.environ[COMMAND] = shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]])
    _quiet_launcher_plugins()
    if os.environ.get("HYDRA_FULL_ERROR") == "1":  # the user asked for Hydra's full tracebacks
        hydra_main()
        return
    os.environ["HYDRA_FULL_ERROR"] = "1"  # let Hydra's exceptions reach us instead of its printer
    os.environ[ONE_LINE_ERRORS] = "1"
    try:
        hydra_main()
    except (Exception, KeyboardInterrupt) as exc:
        exit_for(exc)


def _quiet_launcher_plugins() -> None:
    """conf/hydra/launcher/ray.yaml extends hydra-ray-launcher's config of the same name on purpose,
    which Hydra 1.3 warns about each time it composes (up to 4 times a sweep); that plugin logs
    every ray.init argument, the jobs' environment variables included: redacted here; and Ray's
    patience with an address where nothing answers is shortened (RAY_NUM_REDIS_GET_RETRIES)."""
    warnings.filterwarnings("ignore", message=r"\s*'hydra/launcher/ray' is validated against ConfigStore schema")
    # a Ray address where no cluster answers: give up after ~2 minutes, not Ray's ~14 (20 attempts of ~40 s)
    os.environ.setdefault("RAY_NUM_REDIS_GET_RETRIES", "3")
    logging.getLogger("hydra_plugins.hydra_ray_launcher._launcher_util").addFilter(Redacted())


def main(argv: list[str] | None = None) -> int:
    """The ``mnistlab`` command: tools around the runs (training itself is ``python run.py``)."""
    import argparse

    from mnistlab import compare, predict, promote

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ INFO chatter, as for run.py

    parser = argparse.ArgumentParser(prog="mnistlab", description="Tools around mnistlab's MLflow runs.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module, add_arguments, handler, summary in [
        ("compare", compare, compare.add_arguments, compare.compare, "rank runs, print the table, write the figure"),
        ("predict", predict, predict.add_arguments, predict.predict, "classify image files with a trained model"),
        ("preprocess", predict, predict.add_preprocess_arguments, predict.preprocess,
         "the images as the model sees them, as a JSON request for mlflow models serve"),
        ("promote", promote, promote.add_arguments, promote.promote,
         "register a run's model in the MLflow model registry and set its alias"),
    ]:
        command = commands.add_parser(name, help=summary, description=module.__doc__.replace("``", ""),
                                      formatter_class=argparse.RawDescriptionHelpFormatter)
        add_arguments(command)
        command.set_defaults(handler=handler)
    args = parser.parse_args(argv)
    return compare.run_command(args.handler, args)


def task(cfg: DictConfig) -> float | None:
    """The Hydra task: validate (fast, no TensorFlow), then train; returns the sweep objective.

    In a sweep a failed job does not raise: its run is FAILED, one line goes to stderr, and the
    sweep goes on (Hydra would stop at the first failure and skip the summary); the summary then
    reports it and the sweep exits non-zero.
    """
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    hydra_cfg = HydraConfig.get()
    output_dir = hydra_cfg.runtime.output_dir
    in_sweep = hydra_cfg.mode == RunMode.MULTIRUN
    sweep = Sweep.load(hydra_cfg.sweep.dir) if in_sweep else None
    trial = TrialLink.load(output_dir) if in_sweep else None  # a job of a hyperparameter search
    if trial is not None and trial.sweep:  # the parent run of the worker that launched it
        sweep = Sweep(**trial.sweep)
    job = trial.number if trial else int(hydra_cfg.job.num) if in_sweep else 0
    # as typed: an override like seed=${oc.env:NOPE} must fail in validation, not while naming the run
    run_name = OmegaConf.to_container(hydra_cfg.job, resolve=False).get("override_dirname") or "defaults"
    try:
        valid = validate(cfg)
        run_name = valid.tracking.run_name or run_name
        if valid.resume:
            from mnistlab.checkpoints import check_overrides

            if in_sweep:
                raise ConfigError("resume", "continues one interrupted run; it cannot be part of a sweep (drop -m)",
                                  valid.resume)
            check_overrides(list(hydra_cfg.overrides.task))
        with interrupts.raised():
            from mnistlab import runner  # TensorFlow and MLflow load here, after validation

            result = runner.run(valid, output_dir=output_dir, run_name=run_name, sweep=sweep, job=job,
                                parallel_jobs=OmegaConf.select(hydra_cfg, "launcher.n_jobs", default=1) or 1,
                                extra_tags=trial.tags() if trial else None,
                                on_epoch=trial.epoch_reporter() if trial else None)
    except (Exception, KeyboardInterrupt) as exc:
        if trial is not None and isinstance(exc, KeyboardInterrupt):  # the search, not this run, is what goes on
            exc.hint = ("the finished trials are kept; rerun the same command to continue the search (this trial's "
                        "parameters are tried again)")
        if sweep is not None and isinstance(exc, Exception):  # Ctrl-C stops the sweep, an error only the job
            return _job_failed(exc, sweep, job, run_name, output_dir, trial.tags() if trial else None)
        if os.environ.get(ONE_LINE_ERRORS) and not in_sweep:
            exit_for(exc, output_dir)  # else Hydra reports it, adding lines of its own
        raise
    print(summary(result, result.config or valid), flush=True)
    return result.objective


def _job_failed(exc: Exception, sweep: Sweep, job: int, run_name: str, output_dir: str,
                tags: dict[str, str] | None = None) -> float:
    """A failed job of a sweep: one line (or the traceback, with HYDRA_FULL_ERROR=1), a FAILED
    child run even when it failed before training, and NaN as its objective."""
    message, _ = describe(exc, output_dir)
    if not os.environ.get(ONE_LINE_ERRORS):
        traceback.print_exception(type(exc), exc, exc.__traceback__)
    print(f"error: job {job} ({run_name}): {message}", file=sys.stderr, flush=True)
    try:
        sweep.record_failed_job(job, run_name, message, tags)
    except Exception as store_exc:
        print(f"error: job {job}: could not record the failure in MLflow: {one_line(store_exc)}",
              file=sys.stderr, flush=True)
    return math.nan


def exit_for(exc: BaseException, output_dir: str | None = None) -> None:
    """Print ``exc`` as one line on stderr and exit with the code that says what happened."""
    message, code = describe(exc, output_dir)
    message = " ".join(message.splitlines())  # one line, whatever text it quotes
    print(f"error: {message}", file=sys.stderr, flush=True)
    sys.exit(code)


def describe(exc: BaseException, output_dir: str | None = None) -> tuple[str, int]:
    """One line for ``exc`` and the exit code that says what happened; an unexpected exception's
    traceback is saved to ``output_dir``."""
    import sysconfig

    import hydra
    import omegaconf
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    hint = f"; {exc.hint}" if getattr(exc, "hint", None) else ""  # where an interrupted run can resume from
    if isinstance(exc, Terminated):
        return "terminated (SIGTERM)" + hint, EXIT_TERMINATED
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted" + hint, EXIT_INTERRUPTED
    if isinstance(exc, MnistlabError):
        return str(exc), exc.exit_code
    if isinstance(exc, (HydraException, OmegaConfBaseException)):
        return hydra_error_line(exc), EXIT_USAGE
    if isinstance(exc, yaml.YAMLError):  # a config file that is not valid YAML (names file and line)
        return "invalid YAML: " + one_line(exc), EXIT_USAGE
    # raised by Hydra itself, or for it by OmegaConf or the standard library (e.g. logging for
    # hydra.verbose=[1]): Hydra refusing the command line (e.g. model=1), told plainly
    def helper(path: Path) -> bool:  # OmegaConf, or the standard library (not the packages installed in it)
        return path.is_relative_to(Path(omegaconf.__file__).parent) or (
            path.is_relative_to(sysconfig.get_paths()["stdlib"])
            and not {"site-packages", "dist-packages"} & set(path.parts))

    frames = [Path(frame.f_code.co_filename) for frame, _ in traceback.walk_tb(exc.__traceback__)]
    raiser = next((path for path in reversed(frames) if not helper(path)), None)
    if isinstance(exc, Exception) and raiser and raiser.is_relative_to(Path(hydra.__file__).parent):
        return hydra_error_line(exc), EXIT_USAGE
    saved = _save_traceback(exc, output_dir) if output_dir else None
    hint = f"traceback in {saved}" if saved else "set HYDRA_FULL_ERROR=1 for the traceback"
    return f"{type(exc).__name__}: {one_line(exc)} ({hint})", EXIT_FAILED


def summary(result: Any, cfg: DictConfig) -> str:
    """What a user wants to read when a run ends: the score, the cost, and where it is recorded."""
    from mnistlab.tracking import where_to_look

    m = result.metrics
    first, *rest = where_to_look(result.tracking_uri or cfg.tracking.uri, result.experiment_id, result.run_id)
    epochs = f"{cfg.trainer.epochs} epochs"
    if m["epochs_run"] < cfg.trainer.epochs:
        epochs = f"{m['epochs_run']:.0f} of {epochs} (stopped early)"
    tested = f" (weights of epoch {m['best_epoch']:.0f})" if "best_epoch" in m else ""
    lines = [
        f"model       {cfg.model.name} ({result.num_params:,} parameters), {cfg.optimizer.name}, "
        f"{cfg.loss.name}, {epochs} of batch {cfg.trainer.batch_size}",
        f"test        accuracy {m['test_accuracy']:.4f} (95% interval {m['test_accuracy_ci_low']:.4f}-"
        f"{m['test_accuracy_ci_high']:.4f}, one seed), loss {m['test_loss']:.4f}{tested}",
        f"time        {m['wall_time_s']:.1f} s wall, {m['train_time_s']:.1f} s training",
        f"MLflow run  {result.run_id} (experiment {cfg.tracking.experiment!r}, id {result.experiment_id})",
        f"look at it  {first}",
        *(f"            {line}" for line in rest),
    ]
    return "\n".join(lines)


def hydra_error_line(exc: BaseException) -> str:
    """Hydra's multi-line composition errors, as one line that keeps what the user needs."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    text = str(exc) or type(exc).__name__
    if not isinstance(exc, (HydraException, OmegaConfBaseException)):  # Hydra's plain errors (e.g. model=1)
        # the override Hydra was applying, if any: name it, instead of printing its repr or nothing
        override = next((frame.f_locals["override"].input_line for frame, _ in
                         reversed(list(traceback.walk_tb(exc.__traceback__)))
                         if hasattr(frame.f_locals.get("override"), "input_line")), None)
        if override:
            return f"{override}: {' '.join(re.sub(r'[ :]*Override[(].*', '', text, flags=re.S).split())}"
        text = "Hydra cannot use this command line: " + text
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


def _save_traceback(exc: BaseException, output_dir: str) -> str | None:
    path = Path(output_dir) / "traceback.txt"
    try:
        path.write_text("".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))
    except OSError:
        return None
    return str(path)
