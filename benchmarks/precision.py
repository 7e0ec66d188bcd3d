"""float32 against mixed_bfloat16 per model: speed and accuracy over 5 seeds, with the comparison's
tie test. Writes the `precision` section of RESULTS.md; `trainer.precision=auto` rests on it.

    MNIST_DIR=../shared/datasets/mnist python benchmarks/precision.py --store /tmp/precision
    MNIST_DIR=... python benchmarks/precision.py --store /tmp/precision-avx512 --max-isa AVX512_CORE_BF16

`--max-isa` caps the instructions oneDNN (TensorFlow's CPU kernels) may use, through its
ONEDNN_MAX_CPU_ISA variable: on a CPU with AMX, AVX512_CORE_BF16 measures what a CPU with only
AVX512-BF16 would do, AVX512_CORE one with no bfloat16 instructions at all. Each cap writes its
own section (`precision_<isa>`), and so does a CPU without AMX measured as it is
(`precision_avx512_core_bf16` for AVX512-BF16 alone).

For each model, one sweep `python run.py -m model=<model> seed=1,2,3,4,5
trainer.precision=float32,mixed_bfloat16` (the default experiment otherwise: 5 epochs of batch
128, 54,000 training images). Hydra runs the product with the last override varying fastest, so
the two precisions alternate run by run and share the machine's slow and fast phases. Speed: each
run's median epoch time after the first epoch (which pays for tracing); the speed-up is the median
over seeds of float32's time divided by mixed_bfloat16's in the same seed's pair. Accuracy: the
two precisions as two configurations of `mnistlab.reports.comparison` (Welch's t-test over the
seeds, as `mnistlab compare` shows it). A model's sweep already finished in the store is read back,
not run again.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from results import Store as ProjectStore
from results import bf16_hardware, machine, write_section

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from mnistlab.reports import comparison  # noqa: E402
from mnistlab.tracking.parents import runs_filter  # noqa: E402
from mnistlab.tracking.reading import find_runs  # noqa: E402

MODELS = ["cnn", "tiny_cnn", "dense", "cnn_bn16"]
PRECISIONS = ["float32", "mixed_bfloat16"]
SEEDS = "1,2,3,4,5"


class Store(ProjectStore):
    def __init__(self, folder: Path, max_isa: str | None = None) -> None:
        super().__init__(folder)
        if max_isa:
            self.env["ONEDNN_MAX_CPU_ISA"] = max_isa

    def finished_sweep(self, model: str) -> str | None:
        experiment = self.experiment_id()
        if experiment is None:
            return None
        parents = self.client.search_runs(
            [experiment],
            f"tags.`mnistlab.role` = 'sweep' and params.model = '{model}'",
            order_by=["attributes.start_time DESC"],
        )
        for parent in parents:
            rows = self.rows(parent.data.tags["sweep_id"])
            if len(rows) == 2 * len(SEEDS.split(",")) and all(r.status == "FINISHED" for r in rows):
                return parent.data.tags["sweep_id"]
        return None

    def sweep(self, model: str, extra: list[str]) -> str:
        found = self.finished_sweep(model)
        if found:
            print(f"{model}: sweep {found} already in {self.uri}", flush=True)
            return found
        cmd = [
            sys.executable,
            str(ROOT / "run.py"),
            "-m",
            f"model={model}",
            f"seed={SEEDS}",
            f"trainer.precision={','.join(PRECISIONS)}",  # last: varies fastest, the precisions alternate
            "trainer.verbose=0",
            "tracking.log_model=false",
            *extra,
        ]
        print(" ".join(cmd[2:]), flush=True)
        start = time.perf_counter()
        proc = subprocess.run(cmd, cwd=ROOT, env=self.env, capture_output=True, text=True)
        if proc.returncode:
            sys.exit(f"{model} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
        print(f"{model}: {time.perf_counter() - start:.0f} s", flush=True)
        return self.finished_sweep(model)

    def rows(self, sweep_id: str) -> list[comparison.RunRow]:
        experiment = self.experiment_id()
        rows = find_runs(self.client, [experiment], runs_filter(sweep_id))
        return [r for r in rows if r.seed is not None]

    def epoch_time(self, run_id: str) -> float:
        """The median epoch after the first."""
        history = sorted(self.client.get_metric_history(run_id, "epoch_time_s"), key=lambda m: m.step)
        times = [m.value for m in history]
        return statistics.median(times[1:] if len(times) > 1 else times)


def precision_of(row: comparison.RunRow) -> str:
    return next(i.split("=", 1)[1] for i in row.name.split(",") if i.startswith("trainer.precision="))


def model_section(store: Store, model: str, extra: list[str]) -> tuple[list[str], str]:
    rows = store.rows(store.sweep(model, extra))
    times = {(precision_of(r), r.seed): store.epoch_time(r.run_id) for r in rows}
    seeds = sorted({r.seed for r in rows})
    speedups = [times["float32", s] / times["mixed_bfloat16", s] for s in seeds]
    report = comparison.Report(rows)
    by_precision = {precision_of(g.runs[0]): g for g in report.groups}
    p = next(g.p for g in report.groups if g.p is not None)
    f32, bf16 = by_precision["float32"], by_precision["mixed_bfloat16"]
    lines = []
    for precision in PRECISIONS:
        g = by_precision[precision]
        per_seed = [times[precision, s] for s in seeds]
        spread = f"{min(per_seed):.2f}-{max(per_seed):.2f}"
        lines.append(
            f"| `{model}` | {precision} | {statistics.median(per_seed):.2f} s ({spread}) "
            f"| {g.mean:.2%} ± {g.sd * 100:.2f} | [{g.ci[0]:.2%}, {g.ci[1]:.2%}] | "
            + ("best" if g.rank == 1 else g.verdict)
            + " |"
        )
    speedup = statistics.median(speedups)
    tied = p >= comparison.ALPHA
    verdict = (
        f"`{model}`: mixed_bfloat16 runs an epoch {speedup:.2f}x as fast as float32 (median of {len(seeds)} "
        f"paired seeds, {min(speedups):.2f}-{max(speedups):.2f}); test accuracy {bf16.mean:.2%} against "
        f"{f32.mean:.2%}, {'tied' if tied else 'NOT tied'} (Welch p={comparison.p_text(p).removeprefix('p=')})."
    )
    return lines, verdict


def found_isa() -> str | None:
    """What this CPU's bfloat16 hardware would be as a ``--max-isa`` cap: None with AMX (whose section
    is `precision`), AVX512_CORE_BF16 for AVX512-BF16 alone, AVX512_CORE for none."""
    found = bf16_hardware()
    if "AMX" in found:
        return None
    return "AVX512_CORE_BF16" if "AVX512-BF16" in found else "AVX512_CORE"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", type=Path, required=True, help="folder of the runs' mlflow.db and outputs")
    parser.add_argument("--max-isa", help="cap oneDNN's instruction set (ONEDNN_MAX_CPU_ISA), e.g. AVX512_CORE_BF16")
    parser.add_argument("--models", default=",".join(MODELS), help=f"comma-separated (default: {','.join(MODELS)})")
    parser.add_argument("overrides", nargs="*", help="more overrides for every run (smoke test: data.limit=300)")
    args = parser.parse_args()
    if not os.environ.get("MNIST_DIR"):
        sys.exit("set MNIST_DIR to the folder with the MNIST IDX files")
    store = Store(args.store, args.max_isa)
    table = [
        "| model | precision | s/epoch: median over seeds (min-max) | test accuracy, mean ± sd | 95% interval | vs the "
        "better precision |",
        "|---|---|---|---|---|---|",
    ]
    verdicts = []
    for model in args.models.split(","):
        lines, verdict = model_section(store, model, args.overrides)
        table += lines
        verdicts.append(f"- {verdict}")
    body = (
        f"Machine: {machine()}; bfloat16 in hardware: {bf16_hardware()}"
        + (f"; oneDNN capped at {args.max_isa} (ONEDNN_MAX_CPU_ISA)" if args.max_isa else "")
        + ".\n\n"
        f"`python run.py -m model=<model> seed={SEEDS} trainer.precision=float32,mixed_bfloat16` "
        f"{' '.join(args.overrides)} (5 epochs of batch 128 on 54,000 images; the precisions alternate run by run). "
        "Per-epoch time: each run's median epoch after the first.\n\n" + "\n".join([*table, "", *verdicts]) + "\n"
    )
    if args.overrides:
        print(body)
        return
    isa = args.max_isa or found_isa()  # one section per kind of bfloat16 hardware
    name = f"precision_{isa.lower()}" if isa else "precision"
    kind = f", oneDNN capped at {args.max_isa}" if args.max_isa else f", {bf16_hardware()} without AMX" if isa else ""
    write_section(name, f"trainer.precision per model{kind} (`benchmarks/precision.py`)", body)


if __name__ == "__main__":
    main()
