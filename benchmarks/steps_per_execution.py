"""Benchmark trainer.steps_per_execution: one epoch of the default cnn on all 54,000 training
images through run.py, at batch 32 and 128, with 1 and 32 steps per execution. Runs alternate
(1, 32, 1, 32, ...) so that the VM's slow and fast phases hit both alike. Writes its section of
RESULTS.md.

    MNIST_DIR=../shared/datasets/mnist python benchmarks/steps_per_execution.py --repeats 3
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from results import machine, write_section

ROOT = Path(__file__).resolve().parents[1]


def train_time(batch: int, steps: int, env: dict[str, str]) -> float:
    proc = subprocess.run(
        [
            sys.executable,
            "run.py",
            "trainer.epochs=1",
            f"trainer.batch_size={batch}",
            f"trainer.steps_per_execution={steps}",
            "data.val_split=0",
            "trainer.verbose=0",
            "tracking.log_model=false",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    if proc.returncode:
        sys.exit(proc.stderr[-2000:])
    return float(re.search(r"([0-9.]+) s training", proc.stdout).group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if not os.environ.get("MNIST_DIR"):
        sys.exit("set MNIST_DIR to the folder with the MNIST IDX files")
    lines = [
        f"Machine: {machine()}.",
        "",
        "One epoch of `cnn` + adam on 54,000 images (`python run.py trainer.epochs=1 data.val_split=0 ...`), "
        f"{args.repeats} alternating runs each. Results are bit-identical either way "
        "(tests/test_training.py); only the time can differ. This VM has slow phases in which "
        "the same command takes twice as long (no steal time shown), so single runs mislead: "
        "compare medians.",
        "",
        "| batch | steps per execution | training time per run | median |",
        "|---|---|---|---|",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "MNISTLAB_ROOT": tmp, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp}/mlflow.db"}
        for batch in (32, 128):
            times: dict[int, list[float]] = {1: [], 32: []}
            for _ in range(args.repeats):
                for steps in times:
                    times[steps].append(train_time(batch, steps, env))
            for steps, values in times.items():
                lines.append(
                    f"| {batch} | {steps} | {', '.join(f'{t:.1f} s' for t in values)} | "
                    f"{statistics.median(values):.1f} s |"
                )
                print(lines[-1], flush=True)
    write_section("steps_per_execution", "steps_per_execution (`benchmarks/steps_per_execution.py`)", "\n".join(lines))


if __name__ == "__main__":
    main()
