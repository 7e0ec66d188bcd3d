"""``mnistlab predict``: classify image files with a trained model; ``mnistlab preprocess``: the
same images as a request body for ``mlflow models serve``.

    mnistlab predict my_digit.png                      # the best FINISHED run of experiment "mnistlab"
    mnistlab predict digits/*.png --run <run id>
    mnistlab predict photo.jpg --model models:/mnist-cnn@champion --show
    mnistlab predict digits/*.png --json
    mnistlab preprocess my_digit.png > request.json    # {"inputs": [...]}, for curl
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime
from pathlib import Path

import numpy as np

from mnistlab.app.commands.common import default_uri, project_root, store_origin
from mnistlab.core import quiet
from mnistlab.data.images import ImageError, Prepared, prepare, save_png

TOP = 3


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("images", nargs="+", type=Path, metavar="IMAGE", help="PNG, JPEG, BMP, ... files")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--run", metavar="RUN_ID", help="the model logged by this run")
    which.add_argument(
        "--model",
        metavar="URI",
        help="any MLflow model URI: models:/NAME@champion, models:/NAME/3, runs:/RUN_ID/model, ...",
    )
    parser.add_argument(
        "--experiment",
        default="mnistlab",
        help="without --run/--model: the best FINISHED run of this experiment (default: mnistlab)",
    )
    parser.add_argument(
        "--uri", default=None, help="tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite:///<project>/mlflow.db)"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of the table")
    parser.add_argument(
        "--trust-model",
        action="store_true",
        help="load a model that is not a .keras file (another MLflow flavour, a SavedModel): it "
        "runs code of its own when it loads; only for models you trust",
    )
    _add_show(parser)


def add_preprocess_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("images", nargs="+", type=Path, metavar="IMAGE", help="PNG, JPEG, BMP, ... files")
    _add_show(parser)


def _add_show(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--show", action="store_true", help="also write each 28x28 image the model sees, as PNG (into --out)"
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="folder for --show's images (default: outputs/predict/<time>)"
    )


def predict(args: argparse.Namespace) -> int:
    prepared, failures = _prepare_all(args.images)  # bad files are found before Keras and MLflow load
    if not prepared:
        return _report(failures)
    with quiet.stderr_filtered():  # TensorFlow loads here (mlflow.keras): its start-up lines dropped
        from mnistlab.tracking import registry, store  # MLflow, once the images are known good

    uri = args.uri or default_uri()
    if args.model:
        chosen = registry.of_uri(args.model)
        if args.model.startswith(("models:/", "runs:/")):  # resolved in the store (and its registry)
            store.existing_store(uri, store_origin(args.uri))
        store.use(uri)
    else:
        client = store.existing_store(uri, store_origin(args.uri))
        chosen = registry.of_run(client, args.run) if args.run else registry.best_run(client, args.experiment)
        store.use(uri)
    with quiet.stderr_filtered():  # TensorFlow looks for devices
        model = registry.load(chosen, trust=args.trust_model)
    shown = _show(args, prepared)
    probabilities = model(np.stack([p.model_input() for p in prepared]))
    rows = [_row(p, probs, shown.get(p.path)) for p, probs in zip(prepared, probabilities)]
    if args.json:
        print(
            json.dumps(
                {
                    "model": {
                        "uri": chosen.uri,
                        "description": chosen.description,
                        "run_id": chosen.run_id,
                        "test_accuracy": chosen.test_accuracy,
                    },
                    "predictions": rows,
                    "errors": [{"image": str(p), "error": e} for p, e in failures],
                },
                indent=2,
            )
        )
    else:
        print(f"model: {chosen.description}")
        print(_table(rows))
        if shown:
            print(f"the 28x28 images the model saw: {next(iter(shown.values())).parent}/")
    return _report(failures)


def preprocess(args: argparse.Namespace) -> int:
    """The request body MLflow's scoring server takes for a tensor model: {"inputs": [...]}."""
    prepared, failures = _prepare_all(args.images)
    if not prepared:
        return _report(failures)
    shown = _show(args, prepared)
    batch = np.stack([p.model_input() for p in prepared])
    print(json.dumps({"inputs": np.round(batch, 6).tolist()}, separators=(",", ":")))
    for path in shown.values():
        print(f"wrote {path}", file=sys.stderr)
    return _report(failures)


def _prepare_all(paths: list[Path]) -> tuple[list[Prepared], list[tuple[Path, str]]]:
    prepared, failures = [], []
    for path in paths:
        try:
            prepared.append(prepare(path))
        except ImageError as exc:
            failures.append((path, str(exc)))
    return prepared, failures


def _report(failures: list[tuple[Path, str]]) -> int:
    """The images that could not be used, one line each on stderr; non-zero when there were any."""
    for _, message in failures:
        print(f"error: {message}", file=sys.stderr)
    return ImageError.exit_code if failures else 0


def _show(args: argparse.Namespace, prepared: list[Prepared]) -> dict[Path, Path]:
    if not args.show:
        return {}
    out = args.out or project_root() / "outputs" / "predict" / f"{datetime.now():%Y-%m-%d_%H-%M-%S}"
    written, names = {}, set()
    for index, item in enumerate(prepared):
        name = f"{item.path.stem}.28x28.png"
        if name in names:  # the same file name from two folders
            name = f"{item.path.stem}-{index}.28x28.png"
        names.add(name)
        written[item.path] = save_png(item.pixels, out / name)
    return written


def _row(item: Prepared, probabilities: np.ndarray, shown: Path | None) -> dict:
    order = np.argsort(probabilities)[::-1][:TOP]
    row = {
        "image": str(item.path),
        "digit": int(order[0]),
        "probability": round(float(probabilities[order[0]]), 6),
        "top3": [{"digit": int(d), "probability": round(float(probabilities[d]), 6)} for d in order],
        "probabilities": [round(float(p), 6) for p in probabilities],
        "inverted": item.inverted,
    }
    if shown is not None:
        row["seen_as"] = str(shown)
    return row


def _table(rows: list[dict]) -> str:
    width = max([len("image"), *(len(row["image"]) for row in rows)])
    lines = [f"{'image':<{width}}  digit  probability  top-3"]
    for row in rows:
        top = ", ".join(f"{t['digit']} {t['probability']:.1%}" for t in row["top3"])
        lines.append(f"{row['image']:<{width}}  {row['digit']:>5}  {row['probability']:>11.1%}  {top}")
    return "\n".join(lines)
