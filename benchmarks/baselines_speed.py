"""Benchmark the framework against plain Keras on every published baseline. Writes the
`baselines_speed` section of RESULTS.md (start-up costs: runner_speed.py --no-training).

    MNIST_DIR=../shared/datasets/mnist python benchmarks/baselines_speed.py --rounds 3

For each baseline preset: `python run.py experiment=<preset> data.val_split=0` (everything logged
to a throw-away MLflow store) and plain_keras.py with the same model, optimizer, loss, epochs,
batch size, seed and data (all 60,000 training images, NumPy arrays to fit()). Every preset runs
once per round, round after round, so a slow phase of this VM (everything up to twice as slow,
for minutes) hits one round of each preset rather than every round of one; within a preset,
which side goes first alternates between rounds. Per-epoch time: the median of a run's epochs
after the first (the first pays for tracing), timed the same way on both sides. Ratios are
run.py / plain Keras within the same round's pair, then the median over rounds. Whole process:
the wall time of the command, start-up, imports, evaluation and (for run.py) everything it logs
included. The raw numbers go to baselines_speed.json.
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


def run(cmd: list[str], env: dict[str, str]) -> tuple[float, str]:
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if proc.returncode:
        sys.exit(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    return time.perf_counter() - start, proc.stdout


def per_epoch(times: list[float]) -> float:
    return statistics.median(times[1:] if len(times) > 1 else times)


def spread(values: list[float], digits: int = 2) -> str:
    """The median and, in brackets, the range: '9.81 (9.39-10.13)'."""
    return f"{statistics.median(values):.{digits}f} ({min(values):.{digits}f}-{max(values):.{digits}f})"


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
        return {"test_accuracy": latest.data.metrics["test_accuracy"], "epoch_times": times, "wall_time_s": wall}


def plain(cfg: dict, val_split: float) -> dict:
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
        "--val-split",
        str(val_split),
    ]
    wall, out = run(cmd, dict(os.environ))
    return {**json.loads(out.strip().splitlines()[-1]), "wall_time_s": wall}


def measure(framework: Framework, presets: list[str], rounds: int) -> tuple[dict, dict]:
    configs = {preset: framework.config(f"experiment={preset}") for preset in presets}
    results: dict[str, dict[str, list[dict]]] = {preset: {"framework": [], "plain": []} for preset in presets}
    for r in range(rounds):
        for i, preset in enumerate(presets):
            for side in ("framework", "plain") if (i + r) % 2 == 0 else ("plain", "framework"):
                if side == "framework":
                    result = framework.train(f"experiment={preset}", "data.val_split=0")
                else:
                    result = plain(configs[preset], val_split=0.0)
                results[preset][side].append(result)
                print(
                    f"round {r + 1}: {preset} {side} {per_epoch(result['epoch_times']):.2f} s/epoch, "
                    f"{result['wall_time_s']:.1f} s, test {result['test_accuracy']:.4f}",
                    flush=True,
                )
    return configs, results


def baselines_table(configs: dict, results: dict, rounds: int) -> list[str]:
    lines = [
        "| preset | epochs x batch | run.py s/epoch | plain Keras s/epoch | per-epoch ratio | run.py process s | "
        "plain process s | whole-process ratio | test accuracy (run.py; plain) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    epoch_ratios, process_ratios, spreads = [], [], []
    for preset, sides in results.items():
        f, p = sides["framework"], sides["plain"]
        f_epoch, p_epoch = [per_epoch(x["epoch_times"]) for x in f], [per_epoch(x["epoch_times"]) for x in p]
        f_wall, p_wall = [x["wall_time_s"] for x in f], [x["wall_time_s"] for x in p]
        epoch_ratio = [a / b for a, b in zip(f_epoch, p_epoch)]  # the same round's pair
        process_ratio = [a / b for a, b in zip(f_wall, p_wall)]
        epoch_ratios.append(statistics.median(epoch_ratio))
        process_ratios.append(statistics.median(process_ratio))
        spreads += [max(v) / min(v) for v in (f_epoch, p_epoch)]
        accuracy = {side: ", ".join(sorted({f"{x['test_accuracy']:.2%}" for x in xs})) for side, xs in sides.items()}
        trainer = configs[preset]["trainer"]
        lines.append(
            f"| `{preset}` | {trainer['epochs']} x {trainer['batch_size']} | {spread(f_epoch)} | {spread(p_epoch)} | "
            f"**{statistics.median(epoch_ratio):.3f}** ({min(epoch_ratio):.3f}-{max(epoch_ratio):.3f}) | "
            f"{spread(f_wall, 1)} | {spread(p_wall, 1)} | **{statistics.median(process_ratio):.3f}** "
            f"({min(process_ratio):.3f}-{max(process_ratio):.3f}) | {accuracy['framework']}; {accuracy['plain']} |"
        )
    lines += [
        "",
        f"Per-epoch ratio run.py / plain Keras (median of {rounds} rounds' pairs): median over the presets "
        f"{statistics.median(epoch_ratios):.3f}, worst {max(epoch_ratios):.3f}. Whole process: median "
        f"{statistics.median(process_ratios):.3f}, worst {max(process_ratios):.3f}. How noisy: one side's median "
        f"epoch differed between rounds by up to {(max(spreads) - 1) * 100:.0f}% (median "
        f"{(statistics.median(spreads) - 1) * 100:.0f}%).",
    ]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=BASELINES)
    parser.add_argument("--rounds", type=int, default=3, help="runs of each preset on each side")
    args = parser.parse_args()
    if not os.environ.get("MNIST_DIR"):
        sys.exit("set MNIST_DIR to the folder with the MNIST IDX files")

    with tempfile.TemporaryDirectory() as tmp:
        framework = Framework(tmp)
        configs, results = measure(framework, args.presets, args.rounds)
        body = [
            f"Machine: {machine()}.",
            "",
            "### Each published baseline: run.py against plain Keras",
            "",
            f"`python run.py experiment=<preset> data.val_split=0 seed=42` against `plain_keras.py` (the same "
            f"model by hand, NumPy arrays to fit()), all 60,000 training images, {args.rounds} rounds; each "
            "cell: the median over rounds (min-max). Per-epoch times are of the epochs after the first. The two "
            "sides draw their batches in different orders (run.py's depends on the seed and the epoch alone, so "
            "that a resumed run sees the same batches), so their test accuracies differ as two seeds' would.",
            "",
            *baselines_table(configs, results, args.rounds),
        ]
    (Path(__file__).parent / "baselines_speed.json").write_text(json.dumps(results, indent=1) + "\n")
    write_section(
        "baselines_speed",
        "Baselines: run.py against plain Keras (`benchmarks/baselines_speed.py`)",
        "\n".join(body) + "\n",
    )


if __name__ == "__main__":
    main()
