"""Benchmark scaling out on this machine: (1) one hyperparameter search of 12 trials run by 1 worker
against 3 workers sharing one Optuna study on PostgreSQL (wall time, trials per minute); (2) an
`mlflow server`'s write throughput (metric points per second) with a sqlite backend against a
PostgreSQL backend, 4 writer processes at once. Writes its section of RESULTS.md.

    MNIST_DIR=../shared/datasets/mnist python benchmarks/scale_out.py

A throwaway PostgreSQL cluster and the servers are started here (tests/postgres.py, tests/servers.py)
and stopped by their pids. Trials are tiny (tiny_cnn, data.limit, 1-2 epochs), so the numbers show
the coordination's cost as much as training: with 2 cores, 3 workers compete for the same CPUs.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from results import machine, write_section

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from postgres import postgres_cluster  # noqa: E402
from servers import mlflow_server  # noqa: E402


def search(workers: int, storage: str, trials: int, limit: int, epochs: int, root: Path) -> float:
    """Wall time of ``workers`` processes running the same search until the study has ``trials``."""
    env = {**os.environ, "MNISTLAB_ROOT": str(root), "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}"}
    cmd = [
        sys.executable,
        str(ROOT / "run.py"),
        "-m",
        "hparams_search=tiny_cnn_optuna",
        f"data.limit={limit}",
        f"trainer.epochs={epochs}",
        "trainer.verbose=0",
        "tracking.log_model=false",
        "hydra.sweeper.pruner=null",
        f"hydra.sweeper.n_trials={trials}",
        f"hydra.sweeper.storage={storage}",
    ]
    # the store exists before the workers start (parallel creation of a fresh sqlite file races)
    subprocess.run(
        [
            sys.executable,
            "-c",
            f"import mlflow; mlflow.MlflowClient('{env['MLFLOW_TRACKING_URI']}').search_experiments()",
        ],
        check=True,
        env=env,
    )
    start = time.perf_counter()
    procs = [
        subprocess.Popen(cmd, env=env, cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        for _ in range(workers)
    ]
    for proc in procs:
        _, err = proc.communicate()
        if proc.returncode:
            sys.exit(err[-3000:])
    return time.perf_counter() - start


def _writer(url: str, experiment_id: str, points: int, ready, go) -> None:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(url)
    run_id = client.create_run(experiment_id).info.run_id
    ready.put(run_id)
    go.wait()  # all writers start together
    for step in range(points):
        client.log_metric(run_id, "loss", 1.0 / (step + 1), step=step)
    client.set_terminated(run_id)


def throughput(url: str, writers: int, points: int) -> float:
    """Metric points per second that ``writers`` processes, each logging one point per request,
    get through the server together (each point checked to be there afterwards)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(url)
    experiment_id = client.create_experiment(f"throughput-{time.time_ns()}")
    ctx = multiprocessing.get_context("spawn")
    ready, go = ctx.Queue(), ctx.Event()
    procs = [ctx.Process(target=_writer, args=(url, experiment_id, points, ready, go)) for _ in range(writers)]
    for proc in procs:
        proc.start()
    run_ids = [ready.get(timeout=120) for _ in procs]
    start = time.perf_counter()
    go.set()
    for proc in procs:
        proc.join()
    wall = time.perf_counter() - start
    for run_id in run_ids:
        assert len(client.get_metric_history(run_id, "loss")) == points, run_id
    return writers * points / wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--limit", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--points", type=int, default=500, help="metric points per writer")
    parser.add_argument("--writers", type=int, default=4)
    args = parser.parse_args()
    rows_search, rows_server = [], []
    with postgres_cluster() as pg, tempfile.TemporaryDirectory() as tmp:
        for workers in (1, 3):
            storage = pg.create_database(f"optuna_{workers}")
            root = Path(tmp) / f"search_{workers}"
            root.mkdir()
            wall = search(workers, storage, args.trials, args.limit, args.epochs, root)
            rows_search.append((workers, wall, args.trials / wall * 60))
            print(f"{workers} worker(s): {wall:.0f} s, {args.trials / wall * 60:.1f} trials/min", flush=True)
        for backend in ("sqlite", "postgresql"):
            folder = Path(tmp) / f"server_{backend}"
            uri = f"sqlite:///{folder / 'mlflow.db'}" if backend == "sqlite" else pg.create_database("mlflow_bench")
            folder.mkdir()
            with mlflow_server(uri, folder / "artifacts", folder / "server.log") as server:
                rates = [throughput(server.url, args.writers, args.points) for _ in range(2)]
            rows_server.append((backend, statistics.median(rates), rates))
            print(f"{backend}: {statistics.median(rates):.0f} points/s", flush=True)
    one = rows_search[0][1]
    body = [
        f"Machine: {machine()}.",
        "",
        f"One search (`hparams_search=tiny_cnn_optuna`, {args.trials} trials of {args.epochs} epochs on "
        f"`data.limit={args.limit}`, no pruning) against one Optuna study on PostgreSQL 15, runs logged to "
        "one sqlite store; the workers are processes on this 2-core machine, each with its own TensorFlow.",
        "",
        "| workers | wall time | trials per minute | speed-up |",
        "|---|---|---|---|",
    ]
    body += [f"| {w} | {wall:.0f} s | {rate:.1f} | {one / wall:.2f}x |" for w, wall, rate in rows_search]
    body += [
        "",
        "More workers than cores still gained here because a trial is not all training: each job "
        "also builds its model, evaluates, and waits on MLflow and the study, and the other workers use "
        "the cores meanwhile. With full-size trials expect the gain from more machines, not from more "
        "workers on one.",
    ]
    body += [
        "",
        f"`mlflow server` (1 uvicorn worker, job execution off) with {args.writers} writer processes "
        f"logging {args.points} metric points each, one point per request (`MlflowClient.log_metric`); "
        "median of 2 rounds.",
        "",
        "| backend | metric points per second | rounds |",
        "|---|---|---|",
    ]
    body += [f"| {b} | {median:.0f} | {', '.join(f'{r:.0f}' for r in rates)} |" for b, median, rates in rows_server]
    body += [
        "",
        "Every point was read back afterwards (none lost). At one point per request the backend matters "
        "little: each point is an HTTP request to one uvicorn worker. A run logs one request per epoch "
        "(all its metrics in one `log_metrics` batch), so a server like this serves far more workers "
        "than a search on this machine can start.",
    ]
    write_section("scale_out", "Scaling out: a shared study, the tracking server's backend", "\n".join(body))


if __name__ == "__main__":
    main()
