"""``mnistlab compare``: rank runs from the MLflow store, print the table, write the figure.

    mnistlab compare                          # every run of experiment "mnistlab"
    mnistlab compare --sweep last             # the runs of the latest sweep
    mnistlab compare --sweep 20261122-101500-ab12 --out plots/
    mnistlab compare --filter "params.model.name = 'cnn' and metrics.test_accuracy > 0.98"
    python -m mnistlab.compare ...            # the same
"""

from __future__ import annotations

import argparse
import os
import sys
from datetime import datetime
from pathlib import Path

from mnistlab.errors import MnistlabError, one_line


class NothingToCompare(MnistlabError):
    """The store, the experiment or the filter found no runs."""


class BadFilter(MnistlabError):
    exit_code = 2


def project_root() -> Path:
    """As run.py has it: $MNISTLAB_ROOT, else the current folder."""
    return Path(os.environ.get("MNISTLAB_ROOT", ".")).resolve()


def default_uri() -> str:
    """As run.py has it: $MLFLOW_TRACKING_URI, else mlflow.db in the project root."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{project_root() / 'mlflow.db'}"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--uri", default=None,
                        help="tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite:///<project>/mlflow.db)")
    parser.add_argument("--experiment", default="mnistlab", help="MLflow experiment name (default: mnistlab)")
    parser.add_argument("--sweep", metavar="ID", help="only this sweep's runs (its sweep_id tag), or 'last'")
    parser.add_argument("--filter", default="", metavar="STRING",
                        help="MLflow search filter, e.g. \"params.model.name = 'cnn'\"")
    parser.add_argument("--max-runs", type=int, default=1000, help="read at most this many runs (default: 1000)")
    parser.add_argument("--out", type=Path, default=None,
                        help="folder for runs.csv, runs.md, test_accuracy.png, val_accuracy.png "
                             "(default: outputs/compare/<time>)")


def compare(args: argparse.Namespace) -> int:
    from mlflow.exceptions import MlflowException

    from mnistlab import comparison, tracking
    from mnistlab.sweep import runs_filter

    uri = args.uri or default_uri()
    client = tracking.existing_store(uri)
    try:
        experiment = client.get_experiment_by_name(args.experiment)
        if experiment is None:
            names = ", ".join(repr(e.name) for e in client.search_experiments()) or "none"
            raise NothingToCompare(f"--experiment {args.experiment!r}: no such experiment in {uri} "
                                   f"(experiments there: {names})")
        ids = [experiment.experiment_id]
        filters = [args.filter.strip()] if args.filter.strip() else []
        sweep_id = _sweep_id(client, ids, args.sweep) if args.sweep else None
        if sweep_id:
            filters.append(runs_filter(sweep_id))
        filter_string = " and ".join(filters)
        rows = comparison.find_runs(client, ids, filter_string, max_results=args.max_runs)
        if not rows:
            raise NothingToCompare(f"no runs in experiment {args.experiment!r}"
                                   + (f" match {filter_string!r}" if filter_string else ""))
        title = f"sweep {sweep_id}" if sweep_id else f"experiment {args.experiment}"
        report = comparison.Report(rows, comparison.val_curves(client, rows), title=title)
    except MlflowException as exc:
        if exc.error_code == "INVALID_PARAMETER_VALUE" and args.filter:
            raise BadFilter(f"--filter {args.filter!r}: {one_line(exc)}") from None
        raise MnistlabError(f"{uri}: {one_line(exc)}") from None
    print(f"{len(rows)} runs in experiment {args.experiment!r}"
          + (f" matching {filter_string!r}" if filter_string else "") + ", ranked by test accuracy")
    print(report.text())
    out = args.out or project_root() / "outputs" / "compare" / f"{datetime.now():%Y-%m-%d_%H-%M-%S}"
    written = report.write_to(out)
    print(f"wrote {out}/ ({', '.join(path.name for path in written)})")
    return 0


def _sweep_id(client, experiment_ids: list[str], wanted: str) -> str:
    """``last``: the sweep whose parent run started last; any other value is taken as it is."""
    if wanted != "last":
        return wanted
    from mnistlab.sweep import ROLE_TAG, SWEEP_ROLE

    parents = client.search_runs(experiment_ids, f"tags.`{ROLE_TAG}` = '{SWEEP_ROLE}'",
                                 order_by=["attributes.start_time DESC"], max_results=1)
    if not parents:
        raise NothingToCompare("--sweep last: no sweep in this experiment yet (python run.py -m ...)")
    return parents[0].data.tags["sweep_id"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mnistlab compare", description=__doc__.replace("``", ""),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    return run_command(compare, parser.parse_args(argv))


def run_command(command, args: argparse.Namespace) -> int:
    """Errors a user can fix as one line on stderr, with their exit code."""
    try:
        return command(args)
    except MnistlabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
