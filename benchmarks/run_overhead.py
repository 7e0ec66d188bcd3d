"""A run's time beyond ``fit()``, part by part: the ``time_<phase>_s`` metrics each run logs, for a
single run and for the jobs of a joblib sweep whose workers are reused. Writes the ``run_overhead``
section of RESULTS.md.

    MNIST_DIR=../shared/datasets/mnist python benchmarks/run_overhead.py --runs 5

Each single run is a fresh ``python run.py`` process (1,000 training images, one epoch of tiny_cnn:
training is a small part of it on purpose); the sweep is one ``-m`` over ``--sweep-jobs`` seeds with
``hydra/launcher=joblib`` (2 workers, each running its next job in the same process: its first job
pays the start-up and the imports, which the later ones skip). The table gives each phase's median
and range, and the whole process's wall time as the user waits for it, measured outside.

The same run written by hand (``plain_keras.py --model tiny_cnn --limit 1000 --epochs 1``) alternates
with each single run: what the user waits for beyond ``fit()`` either way, and the difference, which
is what the framework adds (importing TensorFlow, reading the data and testing are paid by both).

``--against CHECKOUT`` also runs each single run with another checkout of mnistlab (its own
``.venv`` when it has one, else this Python; each side imports mnistlab from its own ``src``),
alternating with this one, for a before/after in one invocation:

    MNIST_DIR=... python benchmarks/run_overhead.py --runs 5 --against ../mnistlab-before
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from results import machine, write_section

ROOT = Path(__file__).resolve().parents[1]
RUN = ["model=tiny_cnn", "data.limit=1000", "trainer.epochs=1", "trainer.verbose=0"]
PHASES = ("startup", "data", "imports", "store", "build", "record", "fit", "test", "log")
PLAIN = ["--model", "tiny_cnn", "--limit", "1000", "--epochs", "1", "--batch-size", "128"]  # RUN, by hand
PLAIN_PHASES = {"imports": "import_time_s", "data": "data_time_s", "fit": "train_time_s", "test": "test_time_s"}


def phases_of(store: str, experiment_name: str) -> list[dict[str, float]]:
    """Each finished training run's ``time_<phase>_s`` metrics, as {phase: seconds} (a sweep's
    parent run has none), in the order the runs started."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=store)
    runs = client.search_runs(
        [client.get_experiment_by_name(experiment_name).experiment_id], order_by=["attributes.start_time ASC"]
    )
    return [
        {p: r.data.metrics[f"time_{p}_s"] for p in PHASES if f"time_{p}_s" in r.data.metrics}
        for r in runs
        if r.info.status == "FINISHED" and "time_fit_s" in r.data.metrics
    ]


def describe(checkout: Path) -> str:
    """The other checkout's commit, as `git describe` names it."""
    proc = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=checkout, capture_output=True, text=True)
    return proc.stdout.strip() or checkout.name


def cell(values: list[float]) -> str:
    if not values:
        return "-"
    return f"{statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="single runs (each side)")
    parser.add_argument("--sweep-jobs", type=int, default=8, help="jobs of the joblib sweep (2 are first jobs)")
    parser.add_argument("--quick", action="store_true", help="print the section instead of writing RESULTS.md")
    parser.add_argument("--against", type=Path, help="another checkout whose single runs alternate with this one's")
    args = parser.parse_args()
    if not os.environ.get("MNIST_DIR"):
        sys.exit("set MNIST_DIR to the folder with the MNIST IDX files")
    with tempfile.TemporaryDirectory() as tmp:
        store = f"sqlite:///{tmp}/mlflow.db"
        env = {**os.environ, "MNISTLAB_ROOT": tmp, "MLFLOW_TRACKING_URI": store}
        sides = [(ROOT, sys.executable, "mnistlab")]
        if args.against:
            other = args.against.resolve()
            venv = other / ".venv" / "bin" / "python"
            sides.append((other, str(venv) if venv.exists() else sys.executable, "against"))
        sides.append((ROOT, sys.executable, "plain"))
        process_walls: dict[str, list[float]] = {name: [] for _, _, name in sides}
        plain: list[dict[str, float]] = []
        for seed in range(1, args.runs + 1):
            for folder, python, name in sides if seed % 2 else sides[::-1]:  # alternating which goes first
                command = (
                    [python, "benchmarks/plain_keras.py", *PLAIN, f"--seed={seed}"]
                    if name == "plain"
                    else [python, "run.py", *RUN, f"seed={seed}", f"tracking.experiment={name}"]
                )
                start = time.perf_counter()
                proc = subprocess.run(
                    command,
                    cwd=folder,
                    # each checkout's own mnistlab, whichever one the Python has installed
                    env={**env, "MNISTLAB_ROOT": f"{tmp}/{name}", "PYTHONPATH": str(folder / "src")},
                    capture_output=True,
                    text=True,
                )
                process_walls[name].append(time.perf_counter() - start)
                if proc.returncode:
                    sys.exit(proc.stderr[-2000:])
                if name == "plain":
                    printed = json.loads(proc.stdout.strip().splitlines()[-1])
                    plain.append({phase: printed[key] for phase, key in PLAIN_PHASES.items()})
        singles = phases_of(store, "mnistlab")
        before = phases_of(store, "against") if args.against else []
        start = time.perf_counter()
        seeds = ",".join(str(s) for s in range(1, args.sweep_jobs + 1))
        proc = subprocess.run(
            [
                sys.executable,
                "run.py",
                "-m",
                *RUN,
                f"seed={seeds}",
                "hydra/launcher=joblib",
                "tracking.experiment=sweep",
            ],
            cwd=ROOT,
            env={**env, "PYTHONPATH": str(ROOT / "src")},
            capture_output=True,
            text=True,
        )
        sweep_wall = time.perf_counter() - start
        if proc.returncode:
            sys.exit(proc.stderr[-2000:])
        jobs = phases_of(store, "sweep")

    def beyond_fit(rows: list[dict[str, float]]) -> list[float]:
        return [sum(v for k, v in r.items() if k != "fit") for r in rows]

    # a worker's first job pays the start-up and the imports (its runs alone log a startup phase)
    first, reused = [r for r in jobs if "startup" in r], [r for r in jobs if "startup" not in r]
    columns = [
        ("single run", singles, "mnistlab"),
        ("joblib: a worker's first job", first, None),
        ("joblib: a reused worker's job", reused, None),
    ]
    if before:
        other_name = describe(args.against)
        columns.append((f"single run, `{other_name}`", before, "against"))
    columns.append(("the same run by hand (plain Keras)", plain, "plain"))
    # what the user waits for beyond fit(), measured outside the process (start-up and exit included)
    waited = {name: [w - r["fit"] for w, r in zip(process_walls[name], rows)] for _, rows, name in columns if name}
    added = [a - b for a, b in zip(waited["mnistlab"], waited["plain"])]  # each seed's two runs, side by side
    lines = [
        f"Machine: {machine()}.",
        "",
        f"`python run.py {' '.join(RUN)}`, {args.runs} single runs (each its own process), then the same "
        f"as one `-m` sweep over {args.sweep_jobs} seeds with `hydra/launcher=joblib` (2 workers, each "
        "running its next job in the same process). Median (min-max) seconds per phase, from each run's own "
        "`time_<phase>_s` metrics.",
        "",
        "| phase | " + " | ".join(heading for heading, _, _ in columns) + " |",
        "|---|" + "---|" * len(columns),
    ]
    for phase in PHASES:
        lines.append(
            f"| {phase} | " + " | ".join(cell([r[phase] for r in rows if phase in r]) for _, rows, _ in columns) + " |"
        )
    lines += [
        "| **beyond fit** (every phase but fit) | "
        + " | ".join("-" if name == "plain" else f"**{cell(beyond_fit(rows))}**" for _, rows, name in columns)
        + " |",
        "| **whole process minus fit** (measured outside) | "
        + " | ".join(f"**{cell(waited[name])}**" if name else "-" for _, _, name in columns)
        + " |",
        "",
        f"Whole process of a single run, measured outside: {cell(process_walls['mnistlab'])} s"
        + (f" (`{other_name}`, alternating with it: {cell(process_walls['against'])} s)" if before else "")
        + f"; by hand: {cell(process_walls['plain'])} s. Beyond fit(), **run.py adds {cell(added)} s** to what "
        "the hand-written run pays (each seed's two runs paired; TensorFlow's import, the data and the test "
        "predictions are paid by both). The sweep: "
        f"{sweep_wall:.1f} s for {args.sweep_jobs} jobs ({sweep_wall / args.sweep_jobs:.1f} s per job, the "
        "sweep's own start and summary included); a reused worker's job spends "
        f"**{cell(beyond_fit(reused))} s** beyond fit().",
    ]
    body = "\n".join(lines)
    if args.quick:
        print(body)
    else:
        write_section("run_overhead", "A run's time beyond fit(), part by part (`benchmarks/run_overhead.py`)", body)


if __name__ == "__main__":
    main()
