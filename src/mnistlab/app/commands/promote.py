"""``mnistlab promote``: register a run's model in the MLflow model registry and point an alias
(``champion`` by default) at the new version.

    mnistlab promote <run id> --name mnist-cnn
    mnistlab predict my_digit.png --model models:/mnist-cnn@champion
    MLFLOW_TRACKING_URI=sqlite:///$PWD/mlflow.db \\
        mlflow models serve -m models:/mnist-cnn@champion -p 5001 --env-manager local
"""

from __future__ import annotations

import argparse

from mnistlab.app.commands.common import default_uri, store_origin

DEFAULT_ALIAS = "champion"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_id", metavar="RUN_ID", help="a FINISHED run that logged a model")
    parser.add_argument("--name", required=True, help="registered model name, e.g. mnist-cnn (created if new)")
    parser.add_argument(
        "--alias", default=DEFAULT_ALIAS, help=f"alias to point at the new version (default: {DEFAULT_ALIAS})"
    )
    parser.add_argument(
        "--uri",
        default=None,
        help="tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite:///<project>/mlflow.db); "
        "the registry lives in the same store",
    )


def promote(args: argparse.Namespace) -> int:
    from mnistlab.tracking import registry, store

    client = store.existing_store(args.uri or default_uri(), store_origin(args.uri))
    for line in registry.promote(client, args.run_id, args.name, args.alias):
        print(line)
    return 0
