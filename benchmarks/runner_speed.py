"""Benchmark run.py: how fast it answers without training, and the default experiment against
the same training written by hand (plain_keras.py). Writes its section of RESULTS.md; with
--no-training, only the answers without training and the imports, as the `startup` section.

    MNIST_DIR=../shared/datasets/mnist python benchmarks/runner_speed.py --seeds 42 1 2
    MNIST_DIR=../shared/datasets/mnist python benchmarks/runner_speed.py --no-training

Timings on a shared 2-core VM vary by 10-20% from run to run; the table gives each run.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from results import machine, write_section

ROOT = Path(__file__).resolve().parents[1]


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, subprocess.CompletedProcess]:
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    return time.perf_counter() - start, proc


def without_training(env: dict[str, str], repeat: int) -> list[str]:
    """run.py's answers that load neither TensorFlow nor MLflow, and what the imports cost."""
    lines = [
        f"### run.py without training (median of {repeat})",
        "",
        "| command | exit code | wall time |",
        "|---|---|---|",
    ]
    for extra in (["--help"], ["--cfg", "job"], ["trainer.epochs=0"], ["model=nope"]):
        runs = [timed([sys.executable, "run.py", *extra], env) for _ in range(repeat)]
        wall = statistics.median(t for t, _ in runs)
        lines.append(f"| `python run.py {' '.join(extra)}` | {runs[0][1].returncode} | {wall:.2f} s |")
    lines += ["", f"### Imports (median of {repeat})", "", "| what | median wall time |", "|---|---|"]
    imports = {
        "`import tensorflow`": "import tensorflow",
        "`import keras` (imports TensorFlow)": "import keras",
        "`import mlflow`": "import mlflow",
        "everything a training run imports (`mnistlab.runner.model`, `.record`)": (
            "import mnistlab.runner.model, mnistlab.runner.record"
        ),
    }
    for label, code in imports.items():
        wall = statistics.median(timed([sys.executable, "-c", code], env)[0] for _ in range(repeat))
        lines.append(f"| {label} | {wall:.2f} s |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[42])
    parser.add_argument("--repeat", type=int, default=5, help="repetitions of each no-training command")
    parser.add_argument(
        "--no-training",
        action="store_true",
        help="only run.py's answers without training and the imports: the `startup` section",
    )
    args = parser.parse_args()
    if not os.environ.get("MNIST_DIR"):
        sys.exit("set MNIST_DIR to the folder with the MNIST IDX files")
    trainer = yaml.safe_load((ROOT / "conf" / "trainer" / "default.yaml").read_text())
    lines = [f"Machine: {machine()}.", ""]

    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "MNISTLAB_ROOT": tmp, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp}/mlflow.db"}
        lines += without_training(env, args.repeat)
        if args.no_training:
            write_section("startup", "Start-up (`benchmarks/runner_speed.py --no-training`)", "\n".join(lines) + "\n")
            return

        lines += [
            "",
            f"### Default experiment (cnn, adam, {trainer['epochs']} epochs of batch "
            f"{trainer['batch_size']}) against the same training written by hand",
            "",
            "| seed | script | test accuracy | training | wall time (process) |",
            "|---|---|---|---|---|",
        ]
        for seed in args.seeds:
            wall, proc = timed([sys.executable, "run.py", f"seed={seed}", "trainer.verbose=0"], env)
            if proc.returncode:
                sys.exit(proc.stderr[-2000:])
            acc = float(re.search(r"test\s+accuracy ([0-9.]+)", proc.stdout).group(1))
            train = float(re.search(r"([0-9.]+) s training", proc.stdout).group(1))
            lines.append(
                f"| {seed} | `python run.py seed={seed}` (logs everything to MLflow) | {acc:.4f} | "
                f"{train:.1f} s | {wall:.1f} s |"
            )
            wall, proc = timed(
                [
                    sys.executable,
                    "benchmarks/plain_keras.py",
                    "--model=cnn",
                    f"--seed={seed}",
                    f"--epochs={trainer['epochs']}",
                    f"--batch-size={trainer['batch_size']}",
                ],
                env,
            )
            if proc.returncode:
                sys.exit(proc.stderr[-2000:])
            hand = json.loads(proc.stdout.strip().splitlines()[-1])
            lines.append(
                f"| {seed} | `plain_keras.py --model cnn` (plain Keras, no tracking) | "
                f"{hand['test_accuracy']:.4f} | {hand['train_time_s']:.1f} s | {wall:.1f} s |"
            )
            print("\n".join(lines[-2:]), flush=True)

    write_section("runner_speed", "run.py speed (`benchmarks/runner_speed.py`)", "\n".join(lines))


if __name__ == "__main__":
    main()
