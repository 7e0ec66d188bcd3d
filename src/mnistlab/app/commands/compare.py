"""``mnistlab compare``: runs from the MLflow store grouped by configuration (replicate seeds are
one group), ranked by mean with 95% intervals, each tested against the best; the tables, a JSON
document and the figures.

    mnistlab compare                          # every run of experiment "mnistlab"
    mnistlab compare --sweep last             # the runs of the latest sweep
    mnistlab compare --sweep last --json      # every number as one JSON document
    mnistlab compare --pair RUN_A RUN_B       # two runs (or configurations) head to head
    mnistlab compare --metric val_accuracy    # rank by validation accuracy (choosing settings)
    mnistlab compare --sweep 20261122-101500-ab12 --out plots/
    mnistlab compare --filter "params.model.name = 'cnn' and metrics.test_accuracy > 0.98"
    python -m mnistlab compare ...            # the same
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime
from pathlib import Path

from mnistlab.app.commands.common import default_uri, project_root, run_command, store_origin
from mnistlab.core import transcript
from mnistlab.core.errors import MnistlabError

METRICS = ("test_accuracy", "val_accuracy")  # what a comparison can rank and test by


class NothingToCompare(MnistlabError):
    """The store, the experiment or the filter found no runs."""


class BadUsage(MnistlabError):
    """An option that cannot be used as given (an unknown side of --pair)."""

    exit_code = 2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--uri", default=None, help="tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite:///<project>/mlflow.db)"
    )
    parser.add_argument("--experiment", default="mnistlab", help="MLflow experiment name (default: mnistlab)")
    parser.add_argument("--sweep", metavar="ID", help="only this sweep's runs (its sweep_id tag), or 'last'")
    parser.add_argument(
        "--filter", default="", metavar="STRING", help="MLflow search filter, e.g. \"params.model.name = 'cnn'\""
    )
    parser.add_argument("--max-runs", type=int, default=1000, help="read at most this many runs (default: 1000)")
    parser.add_argument(
        "--metric",
        choices=METRICS,
        default="test_accuracy",
        help="what to rank and test by (default: test_accuracy; val_accuracy to choose settings "
        "without looking at the test set)",
    )
    parser.add_argument(
        "--pair",
        nargs=2,
        metavar=("A", "B"),
        help="compare two runs or configurations head to head: run ids, configuration ids or "
        "configuration names as the table shows them",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="print one JSON document with every number the tables show, and nothing else",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="folder for runs.csv, groups.csv, runs.md, comparison.json and the figures "
        "(default: outputs/compare/<time>; with --json or --pair only when given)",
    )


def compare(args: argparse.Namespace) -> int:
    from mnistlab.reports.comparison import Report  # MLflow and matplotlib only when the command runs
    from mnistlab.tracking import reading, store
    from mnistlab.tracking.parents import runs_filter

    uri = args.uri or default_uri()
    client = store.existing_store(uri, store_origin(args.uri))
    with reading.errors(uri, args.filter):
        experiment = client.get_experiment_by_name(args.experiment)
        if experiment is None:
            names = ", ".join(repr(e.name) for e in client.search_experiments()) or "none"
            raise NothingToCompare(
                f"--experiment {args.experiment!r}: no such experiment in {uri} (experiments there: {names})"
            )
        ids = [experiment.experiment_id]
        filters = [args.filter.strip()] if args.filter.strip() else []
        sweep_id = _sweep_id(client, ids, args.sweep) if args.sweep else None
        if sweep_id:
            filters.append(runs_filter(sweep_id))
        filter_string = " and ".join(filters)
        rows = reading.find_runs(client, ids, filter_string, max_results=args.max_runs, metric=args.metric)
        if not rows:
            raise NothingToCompare(
                f"no runs in experiment {args.experiment!r}" + (f" match {filter_string!r}" if filter_string else "")
            )
        title = f"sweep {sweep_id}" if sweep_id else f"experiment {args.experiment}"
        predictions = reading.predictions_from(client)
        if args.pair:
            return _pair(args, rows, predictions)
        report = Report(
            rows, reading.val_curves(client, rows), title=title, metric=args.metric, predictions=predictions
        )
    out = args.out
    if out is None and not args.json:
        out = project_root() / "outputs" / "compare" / f"{datetime.now():%Y-%m-%d_%H-%M-%S}"
    written = report.write_to(out) if out else []
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
        return 0
    print(
        f"{len(rows)} runs in experiment {args.experiment!r}"
        + (f" matching {filter_string!r}" if filter_string else "")
        + f", {len(report.groups)} configurations"
    )
    print(report.text(transcript.columns()))
    print(f"wrote {out}/ ({', '.join(path.name for path in written)})")
    return 0


def _pair(args: argparse.Namespace, rows: list, predictions) -> int:
    from mnistlab.reports import pair
    from mnistlab.reports.comparison import build_groups

    if args.metric != "test_accuracy":
        raise BadUsage("--pair compares test predictions: it takes no --metric")
    groups = build_groups(rows)
    try:
        a, b = (pair.side(spec, groups) for spec in args.pair)
    except pair.UnknownSide as exc:
        raise BadUsage(str(exc)) from None
    if {r.run_id for r in a.runs} & {r.run_id for r in b.runs}:
        raise BadUsage(
            f"--pair {args.pair[0]} {args.pair[1]}: the two sides share runs; name two different runs or configurations"
        )
    compared = pair.Pair(a, b, predictions)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "pair.json").write_text(json.dumps(compared.to_json(), indent=2) + "\n")
    print(json.dumps(compared.to_json(), indent=2) if args.json else compared.text())
    return 0


def _sweep_id(client, experiment_ids: list[str], wanted: str) -> str:
    """``last``: the sweep whose parent run started last; any other value is taken as it is."""
    from mnistlab.tracking import reading

    if wanted != "last":
        return wanted
    found = reading.latest_sweep_id(client, experiment_ids)
    if found is None:
        raise NothingToCompare("--sweep last: no sweep in this experiment yet (python run.py -m ...)")
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="mnistlab compare",
        description=__doc__.replace("``", ""),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(parser)
    return run_command(compare, parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
