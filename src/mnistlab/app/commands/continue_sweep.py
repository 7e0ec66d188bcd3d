"""mnistlab continue: finish a grid sweep that stopped (Ctrl-C, a reboot, a lost node).

    mnistlab continue                 the latest sweep in outputs/multiruns/
    mnistlab continue 20261202-0715   a sweep by (the start of) its id, or by its folder

It runs the sweep's own command again (the overrides in its multirun.yaml) with
hydra.sweep.dir=<its folder>, which is what continues a sweep: jobs whose run FINISHED are skipped
and keep their runs, KILLED ones resume from their last checkpoint, FAILED ones and those that never
started run; the same parent run gets one summary of every job. See docs/how-to/continue-sweep.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from pathlib import Path

import yaml

import mnistlab
from mnistlab.app.commands.common import find_project
from mnistlab.core.errors import MnistlabError
from mnistlab.tracking.parents import SWEEP_FILE

#: the hydra overrides a continue sets itself
OWN = ("hydra.mode=", "hydra.sweep.dir=")


class NoSuchSweep(MnistlabError):
    exit_code = 2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "sweep", nargs="?", default="last", help="last (default), a sweep id or its start, or the sweep's folder"
    )
    parser.add_argument("--print", action="store_true", help="print the command instead of running it")


def continue_sweep(args: argparse.Namespace) -> int:
    root, why = find_project()
    folder = _find(args.sweep, root / "outputs" / "multiruns", why)
    saved = folder / "multirun.yaml"
    if not saved.is_file():
        raise NoSuchSweep(f"{folder}: no multirun.yaml, so the command that made this sweep is unknown")
    overrides = (yaml.safe_load(saved.read_text()) or {}).get("hydra", {}).get("overrides", {})
    task = list(overrides.get("task") or [])
    hydra_overrides = [o for o in overrides.get("hydra") or [] if not o.startswith(OWN)]
    argv = [sys.executable, str(_run_py(root)), "-m", *task, *hydra_overrides, f"hydra.sweep.dir={folder}"]
    if args.print:
        print(shlex.join(["python", *argv[1:]]))
        return 0
    print(f"continuing sweep {folder.name}: {shlex.join(['python', *argv[1:]])}", flush=True)
    os.execv(argv[0], argv)  # the sweep's own process from here: its output, its signals, its exit code
    return 0  # not reached


def _find(name: str, multiruns: Path, why: str) -> Path:
    """The sweep folder ``name`` means: a folder, ``last``, or a sweep id (or its start)."""
    given = Path(name).expanduser()
    if given.is_dir():
        if not (given / SWEEP_FILE).is_file():
            raise NoSuchSweep(f"{given}: not a sweep's folder (no {SWEEP_FILE})")
        return given.resolve()
    sweeps = sorted((f.parent for f in multiruns.glob(f"*/{SWEEP_FILE}")), key=lambda f: f.stat().st_mtime)
    if not sweeps:
        raise NoSuchSweep(f"no sweep in {multiruns} (the project of {why}); give the sweep's folder")
    if name == "last":
        return sweeps[-1]
    matches = [f for f in sweeps if json.loads((f / SWEEP_FILE).read_text()).get("sweep_id", "").startswith(name)]
    if len(matches) != 1:
        found = "no sweep" if not matches else f"{len(matches)} sweeps"
        raise NoSuchSweep(f"{found} in {multiruns} with an id starting {name!r}; give more of it, or the folder")
    return matches[0]


def _run_py(root: Path) -> Path:
    """run.py of the project's checkout, else of the checkout this package is installed from."""
    for folder in (root, Path(mnistlab.__file__).resolve().parents[2]):
        if (folder / "run.py").is_file():
            return folder / "run.py"
    raise NoSuchSweep(f"no run.py in {root}: run the sweep's command from its checkout, with hydra.sweep.dir=...")
