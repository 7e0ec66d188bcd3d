"""Benchmark the framework against plain Keras on every published baseline, plus mixed precision
and start-up costs. Writes the `baselines_speed` section of RESULTS.md.

    MNIST_DIR=../shared/datasets/mnist python benchmarks/baselines_speed.py

For each baseline preset, alternating: `python run.py experiment=<preset>` (everything logged to a
throw-away MLflow store) and plain_keras.py with the same model, optimizer, loss, epochs, batch
size, seed and data. Both sides time an epoch the same way (training plus the validation pass).
Per-epoch time: the median and the fastest of the epochs after the first (the first pays for
tracing). This VM has phases in which everything runs up to twice as slow, for minutes; they move
medians of single runs by tens of percent, while the fastest epoch of a run is the one least
disturbed, so the ratio of the fastest epochs is the fairer measure of what run.py adds. The raw
epoch times go to baselines_speed.json.
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

import yaml

from results import machine, write_section

ROOT = Path(__file__).resolve().parents[1]
BASELINES = [
    "baseline_conv64",
    "baseline_conv32",
    "baseline_dense512x2",
    "baseline_mlp12",
    "baseline_tiny_cnn",
    "baseline_dense512",
]
REPORTED = {
    "baseline_conv64": "98.5%",
    "baseline_conv32": "98.26%",
    "baseline_dense512x2": "99.51% (train)",
    "baseline_mlp12": "77.52%",
    "baseline_tiny_cnn": "97.31%",
    "baseline_dense512": "98.23%",
}


def run(cmd: list[str], env: dict[str, str]) -> tuple[float, str]:
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if proc.returncode:
        sys.exit(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    return time.perf_counter() - start, proc.stdout


def per_epoch(times: list[float]) -> float:
    return statistics.median(times[1:] if len(times) > 1 else times)


def fastest_epoch(times: list[float]) -> float:
    return min(times[1:] if len(times) > 1 else times)


class Framework:
    """run.py in a throw-away project root; results read back from its MLflow store."""

    def __init__(self, root: str) -> None:
        self.store = f"sqlite:///{root}/mlflow.db"
        self.env = {**os.environ, "MNISTLAB_ROOT": root, "MLFLOW_TRACKING_URI": self.store}

    def config(self, *overrides: str) -> dict:
        return yaml.safe_load(run([sys.executable, "run.py", *overrides, "--cfg", "job"], self.env)[1])

    def train(self, *overrides: str) -> dict:
        from mlflow.tracking import MlflowClient

        wall, _out = run([sys.executable, "run.py", *overrides, "trainer.verbose=0", "seed=42"], self.env)
        client = MlflowClient(self.store)
        experiment = client.get_experiment_by_name("mnistlab")
        latest = client.search_runs([experiment.experiment_id], order_by=["attributes.start_time DESC"], max_results=1)[
            0
        ]
        times = [
            m.value for m in sorted(client.get_metric_history(latest.info.run_id, "epoch_time_s"), key=lambda m: m.step)
        ]
        metrics = latest.data.metrics
        return {
            "test_accuracy": metrics["test_accuracy"],
            "train_accuracy": metrics["accuracy"],
            "epoch_times": times,
            "wall_time_s": wall,
        }


def plain(cfg: dict, precision: str = "float32") -> dict:
    cmd = [
        sys.executable,
        "benchmarks/plain_keras.py",
        "--model",
        cfg["model"]["name"],
        "--optimizer",
        cfg["optimizer"]["name"],
        "--loss",
        cfg["loss"]["name"],
        "--epochs",
        str(cfg["trainer"]["epochs"]),
        "--batch-size",
        str(cfg["trainer"]["batch_size"]),
        "--seed",
        "42",
        "--precision",
        precision,
    ]
    wall, out = run(cmd, dict(os.environ))
    return {**json.loads(out.strip().splitlines()[-1]), "wall_time_s": wall}


def baselines_table(framework: Framework, presets: list[str], raw: dict) -> list[str]:
    lines = [
        "| preset | epochs x batch | run.py s/epoch: median, fastest | plain Keras s/epoch: median, fastest | "
        "ratio of fastest (of medians) | run.py test acc | plain test acc | difference | published |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    ratios = []
    for i, preset in enumerate(presets):
        cfg = framework.config(f"experiment={preset}")
        order = ["framework", "plain"] if i % 2 == 0 else ["plain", "framework"]  # alternate who goes first
        result = {}
        for side in order:
            result[side] = framework.train(f"experiment={preset}") if side == "framework" else plain(cfg)
            print(
                preset,
                side,
                f"{per_epoch(result[side]['epoch_times']):.2f} s/epoch",
                f"{result[side]['test_accuracy']:.4f}",
                flush=True,
            )
        f, p = result["framework"], result["plain"]
        raw[preset] = result
        ratio = fastest_epoch(f["epoch_times"]) / fastest_epoch(p["epoch_times"])
        ratios.append(ratio)
        lines.append(
            f"| `{preset}` | {cfg['trainer']['epochs']} x {cfg['trainer']['batch_size']} | "
            f"{per_epoch(f['epoch_times']):.2f}, {fastest_epoch(f['epoch_times']):.2f} | "
            f"{per_epoch(p['epoch_times']):.2f}, {fastest_epoch(p['epoch_times']):.2f} | {ratio:.3f} "
            f"({per_epoch(f['epoch_times']) / per_epoch(p['epoch_times']):.3f}) | "
            f"{f['test_accuracy']:.2%} | {p['test_accuracy']:.2%} | "
            f"{(f['test_accuracy'] - p['test_accuracy']) * 100:+.2f} pt | {REPORTED[preset]} |"
        )
    lines += [
        "",
        f"Ratio run.py / plain Keras of the fastest epochs: median {statistics.median(ratios):.3f} "
        f"(min {min(ratios):.3f}, max {max(ratios):.3f}).",
    ]
    return lines


def precision_table(framework: Framework, models: list[str], epochs: int, raw: dict) -> list[str]:
    lines = ["| model | precision | s/epoch: median, fastest | test accuracy |", "|---|---|---|---|"]
    for model in models:
        for precision in ("float32", "mixed_bfloat16"):
            r = framework.train(f"model={model}", f"trainer.precision={precision}", f"trainer.epochs={epochs}")
            raw[f"{model} {precision}"] = r
            print(
                model, precision, f"{per_epoch(r['epoch_times']):.2f} s/epoch", f"{r['test_accuracy']:.4f}", flush=True
            )
            lines.append(
                f"| `{model}` | {precision} | {per_epoch(r['epoch_times']):.2f}, "
                f"{fastest_epoch(r['epoch_times']):.2f} | {r['test_accuracy']:.2%} |"
            )
    return lines


def startup_table(env: dict[str, str], repeat: int) -> list[str]:
    lines = ["| what | median wall time |", "|---|---|"]
    commands = {
        "`python run.py --help`": [sys.executable, "run.py", "--help"],
        "`python run.py --cfg job`": [sys.executable, "run.py", "--cfg", "job"],
        "`import tensorflow`": [sys.executable, "-c", "import tensorflow"],
        "`import keras` (imports TensorFlow)": [sys.executable, "-c", "import keras"],
        "`import mlflow`": [sys.executable, "-c", "import mlflow"],
        "everything a training run imports (`mnistlab.runner.model`, `.record`)": [
            sys.executable,
            "-c",
            "import mnistlab.runner.model, mnistlab.runner.record",
        ],
    }
    for label, cmd in commands.items():
        wall = statistics.median(run(cmd, env)[0] for _ in range(repeat))
        lines.append(f"| {label} | {wall:.2f} s |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=BASELINES)
    parser.add_argument("--precision-models", nargs="*", default=["dense", "cnn", "tiny_cnn"])
    parser.add_argument("--precision-epochs", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=5, help="repetitions of each start-up command")
    args = parser.parse_args()
    if not os.environ.get("MNIST_DIR"):
        sys.exit("set MNIST_DIR to the folder with the MNIST IDX files")

    raw: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        framework = Framework(tmp)
        body = [
            f"Machine: {machine()}.",
            "",
            "### Each published baseline: run.py against plain Keras",
            "",
            "Seed 42, 54,000 training images (6,000 held out for validation, both sides), alternating which "
            "side runs first. Per-epoch times are of the epochs after the first.",
            "",
        ]
        body += baselines_table(framework, args.presets, raw)
        if args.precision_models:
            body += ["", f"### trainer.precision ({args.precision_epochs} epochs of batch 128, seed 42)", ""]
            body += precision_table(framework, args.precision_models, args.precision_epochs, raw)
        body += ["", f"### Start-up (median of {args.repeat})", ""]
        body += startup_table(framework.env, args.repeat)
    (Path(__file__).parent / "baselines_speed.json").write_text(json.dumps(raw, indent=1) + "\n")
    write_section(
        "baselines_speed",
        "Baselines: run.py against plain Keras (`benchmarks/baselines_speed.py`)",
        "\n".join(body) + "\n",
    )


if __name__ == "__main__":
    main()
