"""The ``mnistlab`` command: tools around the runs (training itself is ``python run.py``), one module
per subcommand. Each imports MLflow and Keras only when it runs, so ``--help`` and a mistyped
argument answer at once."""

from __future__ import annotations

import argparse
import os
from importlib import metadata

from mnistlab.app.commands import compare, continue_sweep, predict, promote
from mnistlab.app.commands.common import run_command
from mnistlab.core.exits import quit_closed_pipe

#: what a bug report needs besides mnistlab's own version (read from the installed metadata: no import)
STACK = ("hydra-core", "keras", "tensorflow", "mlflow", "optuna")


def versions() -> str:
    """``mnistlab 0.1.0 (hydra-core 1.3.8, keras ..., ...)``, as installed."""

    def installed(name: str) -> str:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return "not installed"

    return f"mnistlab {installed('mnistlab')} ({', '.join(f'{name} {installed(name)}' for name in STACK)})"


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ INFO chatter, as for run.py

    parser = argparse.ArgumentParser(
        prog="mnistlab",
        description="Tools around mnistlab's MLflow runs.",
        formatter_class=argparse.RawDescriptionHelpFormatter,  # the --version line stays one line
    )
    parser.add_argument("--version", action="version", version=versions())
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module, add_arguments, handler, summary in [
        (
            "compare",
            compare,
            compare.add_arguments,
            compare.compare,
            "compare runs: configurations with their intervals and tests, the table, the figures",
        ),
        ("predict", predict, predict.add_arguments, predict.predict, "classify image files with a trained model"),
        (
            "preprocess",
            predict,
            predict.add_preprocess_arguments,
            predict.preprocess,
            "the images as the model sees them, as a JSON request for mlflow models serve",
        ),
        (
            "continue",
            continue_sweep,
            continue_sweep.add_arguments,
            continue_sweep.continue_sweep,
            "finish a grid sweep that stopped: finished jobs are kept, the rest run",
        ),
        (
            "promote",
            promote,
            promote.add_arguments,
            promote.promote,
            "register a run's model in the MLflow model registry and set its alias",
        ),
    ]:
        command = commands.add_parser(
            name,
            help=summary,
            description=module.__doc__.replace("``", ""),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        add_arguments(command)
        command.set_defaults(handler=handler)
    try:
        args = parser.parse_args(argv)
        return run_command(args.handler, args)
    except BrokenPipeError:  # `mnistlab compare | head`
        quit_closed_pipe()
