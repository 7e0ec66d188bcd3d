"""Benchmark a sweep: the 9-run grid (model=dense,cnn,tiny_cnn x optimizer=adam,sgd,rmsprop) on a
small data.limit, jobs one after another (Hydra's basic launcher) against hydra/launcher=joblib with
2 workers, whose jobs get cores / 2 TensorFlow threads each (trainer.threads=auto) or, to show what
that sharing is worth, all the cores each. Writes its section of RESULTS.md.

    MNIST_DIR=../shared/datasets/mnist python benchmarks/sweep_speed.py --limit 5000 --epochs 2 --repeat 2

Wall and CPU time are the whole `python run.py -m ...` process and its children (getrusage);
per-run time is each child run's own wall_time_s as logged in MLflow (start-up of the job's
process not included). Timings on a shared 2-core VM vary by 10-20% from run to run.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from results import machine, write_section

ROOT = Path(__file__).resolve().parents[1]
GRID = ("model=dense,cnn,tiny_cnn", "optimizer=adam,sgd,rmsprop")
PARALLEL = ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]
MODES = {
    "sequential (basic launcher), 2 threads per run": [],
    "joblib, 2 workers, threads=auto (1 per run)": PARALLEL,
    "joblib, 2 workers, 2 threads per run (cores oversubscribed)": [*PARALLEL, "trainer.threads=2"],
}


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def sweep(extra: list[str], limit: int, epochs: int) -> dict:
    """One sweep into a fresh store; its wall and CPU time and what its runs logged."""
    from mlflow.tracking import MlflowClient

    with tempfile.TemporaryDirectory() as tmp:
        store = f"sqlite:///{tmp}/mlflow.db"
        env = {**os.environ, "MNISTLAB_ROOT": tmp, "MLFLOW_TRACKING_URI": store}
        cmd = [
            sys.executable,
            "run.py",
            "-m",
            *GRID,
            f"data.limit={limit}",
            f"trainer.epochs={epochs}",
            "trainer.verbose=0",
            "tracking.log_model=false",
            *extra,
        ]
        cpu, start = children_cpu(), time.perf_counter()
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
        wall, cpu = time.perf_counter() - start, children_cpu() - cpu
        if proc.returncode:
            sys.exit(proc.stderr[-3000:])
        client = MlflowClient(store)
        runs = client.search_runs(
            [client.get_experiment_by_name("mnistlab").experiment_id], "attributes.status = 'FINISHED'"
        )
        children = [r for r in runs if "wall_time_s" in r.data.metrics]
        assert len(children) == 9, [r.info.run_name for r in runs]
        return {
            "wall": wall,
            "cpu": cpu,
            "per_run": [r.data.metrics["wall_time_s"] for r in children],
            "accuracy": {r.info.run_name: r.data.metrics["test_accuracy"] for r in children},
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=5000, help="data.limit: training images per run")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=2, help="sweeps per mode (alternating modes)")
    args = parser.parse_args()
    if not os.environ.get("MNIST_DIR"):
        sys.exit("set MNIST_DIR to the folder with the MNIST IDX files")

    results: dict[str, list[dict]] = {mode: [] for mode in MODES}
    for i in range(args.repeat):
        for mode, extra in MODES.items():
            results[mode].append(sweep(extra, args.limit, args.epochs))
            r = results[mode][-1]
            print(f"{mode} #{i + 1}: {r['wall']:.1f} s wall, {r['cpu']:.1f} s CPU", flush=True)

    sequential = statistics.median(r["wall"] for r in results[next(iter(MODES))])
    lines = [
        f"Machine: {machine()}.",
        "",
        f"The 9-run grid `python run.py -m {' '.join(GRID)}` with `data.limit={args.limit} "
        f"trainer.epochs={args.epochs} tracking.log_model=false`, {args.repeat} sweeps per mode, each into "
        "a fresh store. Wall and CPU time: the whole sweep process with its workers; per run: the "
        "runs' own `wall_time_s` in MLflow (median, min-max).",
        "",
        "| launcher | wall time (each sweep) | speed-up | CPU time | per run | mean test accuracy |",
        "|---|---|---|---|---|---|",
    ]
    for mode, runs in results.items():
        wall = statistics.median(r["wall"] for r in runs)
        per_run = [t for r in runs for t in r["per_run"]]
        accuracy = statistics.mean(a for r in runs for a in r["accuracy"].values())
        each = ", ".join(f"{r['wall']:.1f}" for r in runs)
        lines.append(
            f"| {mode} | {wall:.1f} s ({each}) | "
            f"{sequential / wall:.2f}x | {statistics.median(r['cpu'] for r in runs):.1f} s | "
            f"{statistics.median(per_run):.1f} s ({min(per_run):.1f}-{max(per_run):.1f}) | "
            f"{accuracy:.4f} |"
        )
    first, second = (sorted(runs[0]["accuracy"].items()) for runs in list(results.values())[:2])
    same = sum(a == b for a, b in zip(first, second, strict=True))
    lines += [
        "",
        f"Same runs, same seed: {same} of 9 test accuracies are identical between the sequential "
        "and the parallel sweep (another number of TensorFlow threads can change the order of float sums).",
    ]
    print("\n".join(lines))
    write_section("sweep_speed", "Sweep speed (`benchmarks/sweep_speed.py`)", "\n".join(lines))


if __name__ == "__main__":
    main()
