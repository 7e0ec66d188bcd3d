"""Benchmark trainer.steps_per_execution: 1 step per call into TensorFlow (what a hand-written
Keras script does) against 32 (the default) for small and large models at batch 32 and 128.
Writes its section of RESULTS.md.

    MNIST_DIR=../shared/datasets/mnist python benchmarks/steps_per_execution.py --repeats 3

Each (model, batch) is one sweep, `python run.py -m seed=1,2,3 trainer.steps_per_execution=1,32
...`, whose jobs alternate 1, 32, 1, 32, ... so the VM's slow and fast phases hit both alike. Per
run: its second epoch's time (the first pays for tracing). Ratio: the 32-step run's epoch over the
1-step run's of the same seed, the median over seeds. Each seed's two runs must end with the same
test accuracy to the last image (the maths is the same, tests/test_training.py): the script stops
if they do not.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from results import machine, write_section

ROOT = Path(__file__).resolve().parents[1]
CASES = [("tiny_cnn", 32), ("mlp12", 32), ("dense", 32), ("cnn", 32), ("tiny_cnn", 128), ("cnn", 128)]
STEPS = (1, 32)


def sweep(model: str, batch: int, seeds: list[int], tmp: str) -> dict[tuple[int, int], dict]:
    """One sweep's runs, by (seed, steps per execution): their second epoch's time and test accuracy."""
    from mlflow.tracking import MlflowClient

    store = f"sqlite:///{tmp}/mlflow.db"
    env = {**os.environ, "MNISTLAB_ROOT": tmp, "MLFLOW_TRACKING_URI": store}
    tag = f"{model}-{batch}"
    cmd = [
        sys.executable,
        "run.py",
        "-m",
        f"model={model}",
        f"seed={','.join(map(str, seeds))}",
        f"trainer.steps_per_execution={','.join(map(str, STEPS))}",
        f"trainer.batch_size={batch}",
        "trainer.epochs=2",
        "trainer.precision=float32",
        "data.val_split=0",
        "trainer.verbose=0",
        "tracking.log_model=false",
        f"+tracking.tags.spe_case={tag}",
    ]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if proc.returncode:
        sys.exit(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    client = MlflowClient(store)
    experiment = client.get_experiment_by_name("mnistlab").experiment_id
    found = {}
    for run in client.search_runs([experiment], f"tags.spe_case = '{tag}'"):
        if run.data.tags.get("mnistlab.role") == "sweep":  # the sweep's parent run
            continue
        key = (int(run.data.params["seed"]), int(run.data.params["trainer.steps_per_execution"]))
        epochs = sorted(client.get_metric_history(run.info.run_id, "epoch_time_s"), key=lambda m: m.step)
        found[key] = {"epoch_s": epochs[-1].value, "test_accuracy": run.data.metrics["test_accuracy"]}
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="seeds, each run with both settings")
    args = parser.parse_args()
    if not os.environ.get("MNIST_DIR"):
        sys.exit("set MNIST_DIR to the folder with the MNIST IDX files")
    seeds = list(range(1, args.repeats + 1))
    lines = [
        f"Machine: {machine()}.",
        "",
        f"`python run.py -m model=<model> trainer.batch_size=<batch> seed={','.join(map(str, seeds))} "
        "trainer.steps_per_execution=1,32 trainer.epochs=2 data.val_split=0 trainer.precision=float32`: "
        "the two settings alternate job by job, on all 60,000 training images; per run, its second epoch "
        "(the first pays for tracing). Each seed's two runs ended with the same test accuracy "
        "(checked by the script): only the time differs. This VM has slow phases in which the same epoch "
        "takes twice as long or more, so read the median of the paired ratios, not single runs.",
        "",
        "| model | batch | s/epoch, 1 step per execution | s/epoch, 32 | epoch time 32 / 1: median (min-max) |",
        "|---|---|---|---|---|",
    ]
    for model, batch in CASES:
        with tempfile.TemporaryDirectory() as tmp:
            runs = sweep(model, batch, seeds, tmp)
        missing = [(s, k) for s in seeds for k in STEPS if (s, k) not in runs]
        if missing:
            sys.exit(f"{model} at batch {batch}: no finished run for (seed, steps) {missing}")
        for seed in seeds:
            one, many = runs[(seed, 1)], runs[(seed, 32)]
            if one["test_accuracy"] != many["test_accuracy"]:
                sys.exit(f"{model} batch {batch} seed {seed}: test accuracy {one} against {many}: not the same maths")
        epochs = {k: [runs[(s, k)]["epoch_s"] for s in seeds] for k in STEPS}
        ratios = [b / a for a, b in zip(epochs[1], epochs[32])]
        lines.append(
            f"| `{model}` | {batch} | {', '.join(f'{t:.2f}' for t in epochs[1])} | "
            f"{', '.join(f'{t:.2f}' for t in epochs[32])} | **{statistics.median(ratios):.2f}** "
            f"({min(ratios):.2f}-{max(ratios):.2f}) |"
        )
        print(lines[-1], flush=True)
    write_section("steps_per_execution", "steps_per_execution (`benchmarks/steps_per_execution.py`)", "\n".join(lines))


if __name__ == "__main__":
    main()
