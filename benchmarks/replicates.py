"""The project's own accuracy claims over replicate seeds, with their intervals and tests. Writes
the `replicates_*` sections of RESULTS.md.

    MNIST_DIR=../shared/datasets/mnist python benchmarks/replicates.py baselines --store /tmp/rep
    MNIST_DIR=../shared/datasets/mnist python benchmarks/replicates.py best --store /tmp/rep
    MNIST_DIR=../shared/datasets/mnist python benchmarks/replicates.py compare_models --store /tmp/rep

baselines       each published baseline preset over seeds 1-3: mean, sd, the 95% interval of the
                mean, and whether the published single run lies inside the 95% prediction
                interval of one run (a t-test of one value against the seeds: "reproduced").
best            best_tiny_cnn, best_cnn, best_dense re-established without looking at the test set:
                for each, two candidate settings (CANDIDATES) run with seeds 1 and 2 on 54,000
                training / 6,000 validation images; the candidate with the higher mean final
                val_accuracy is chosen (ties included: validation decides, the test set is not
                read; an exact tie goes to the one with fewer parameters, then to the one that ran
                first, as `mnistlab compare` ranks them); the chosen one then runs seeds 3-5
                (best_tiny_cnn: all five seeds again on all 60,000 images, as its preset trains),
                and only then are the five seeds' test accuracies read and reported, against the
                target and against the baselines of the same class (Welch's t-test).
compare_models  README's models x optimizers grid over seeds 1-3, grouped and tested.

Runs go to <store>/mlflow.db (a sweep per step); a step whose sweep already ran is read back,
not run again (--rerun forces it). Everything reported is computed by mnistlab.reports.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from results import Store as ProjectStore
from results import machine, write_section

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from scipy import stats  # noqa: E402

from mnistlab.reports import comparison, statistics  # noqa: E402
from mnistlab.tracking.parents import runs_filter  # noqa: E402
from mnistlab.tracking.reading import find_runs, predictions_from  # noqa: E402

RUNS = Path(__file__).with_name("replicates_runs.json")
BASELINES = {  # preset: (published test accuracy, what it is)
    "baseline_conv64": (0.985, "test"),
    "baseline_conv32": (0.9826, "test"),
    "baseline_dense512x2": (0.9951, "training set"),
    "baseline_mlp12": (0.7752, "test"),
    "baseline_tiny_cnn": (0.9731, "test"),
    "baseline_dense512": (0.9823, "test"),
}
#: preset: (target mean test accuracy, the candidate overrides, the final runs' extra overrides)
CANDIDATES = {
    "best_tiny_cnn": (0.994, ["data.val_split=0.1", "data.augment.zoom=0.0,0.1"], ["data.val_split=0.0"]),
    "best_cnn": (0.995, ["trainer.epochs=15,18"], []),
    "best_dense": (0.991, ["trainer.epochs=30,40"], []),
}
SAME_CLASS = {
    "best_tiny_cnn": ["baseline_tiny_cnn", "baseline_mlp12"],
    "best_cnn": ["baseline_conv64", "baseline_conv32"],
    "best_dense": ["baseline_dense512x2", "baseline_dense512"],
}


PROCEDURE = (
    "Procedure: two candidate settings, seeds 1 and 2, chosen by mean final validation accuracy (6,000 "
    "held-out training images; an exact tie goes to the candidate that ran first, as `mnistlab compare` ranks "
    "ties); the test set is read only for the chosen settings' five seeds.\n\n"
)


class Store(ProjectStore):
    def __init__(self, folder: Path, quick: bool = False) -> None:
        super().__init__(folder)
        self.quick = ["data.limit=300", "trainer.epochs=1", "tracking.log_model=false"] if quick else []

    def sweep(self, name: str, overrides: list[str], rerun: bool) -> str:
        """The id of sweep ``name`` (tag replicates.step): run it unless it already finished."""
        found = self._sweeps(name)
        if found and not rerun:
            print(f"{name}: sweep {found[0]} already in {self.uri}")
            return found[0]
        cmd = [
            sys.executable,
            str(ROOT / "run.py"),
            "-m",
            *overrides,
            *self.quick,
            f"+tracking.tags.replicates_step={name}",
        ]
        print(f"{name}: {' '.join(cmd[2:])}", flush=True)
        start = time.perf_counter()
        proc = subprocess.run(cmd, cwd=ROOT, env=self.env, capture_output=True, text=True)
        if proc.returncode:
            sys.exit(f"{name} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
        print(f"{name}: {time.perf_counter() - start:.0f} s", flush=True)
        return self._sweeps(name)[0]

    def _sweeps(self, name: str) -> list[str]:
        """Sweeps of step ``name``, newest first, whose every job finished."""
        client = self.client
        experiment = client.get_experiment_by_name("mnistlab") if (self.folder / "mlflow.db").exists() else None
        if experiment is None:
            return []
        parents = client.search_runs(
            [experiment.experiment_id], "tags.`mnistlab.role` = 'sweep'", order_by=["attributes.start_time DESC"]
        )
        done = []
        for parent in parents:
            if not any(
                parent.data.params.get(k) == name
                for k in ("+tracking.tags.replicates_step", "tracking.tags.replicates_step")
            ):
                continue
            children = client.search_runs([experiment.experiment_id], runs_filter(parent.data.tags["sweep_id"]))
            statuses = {c.info.status for c in children if c.info.run_id != parent.info.run_id}
            if statuses == {"FINISHED"}:
                done.append(parent.data.tags["sweep_id"])
        return done

    def rows(self, *sweep_ids: str, metric: str = "test_accuracy") -> list[comparison.RunRow]:
        client = self.client
        experiment = client.get_experiment_by_name("mnistlab").experiment_id
        rows = []
        for sweep_id in sweep_ids:
            rows += find_runs(client, [experiment], runs_filter(sweep_id), metric=metric)
        if not self.quick:
            record(rows)
        return rows


def record(rows: list[comparison.RunRow]) -> None:
    """Keep every run's numbers in RUNS (committed), so they outlive the store they came from."""
    kept = json.loads(RUNS.read_text()) if RUNS.exists() else {}
    for r in rows:
        kept[r.run_id] = {
            "name": r.name,
            "seed": r.seed,
            "test_accuracy": r.test_accuracy,
            "val_accuracy": r.val_accuracy,
            "train_time_s": r.train_time_s,
            "num_params": r.num_params,
        }
    RUNS.write_text(json.dumps(kept, indent=1, sort_keys=True) + "\n")


def pct(value: float) -> str:
    return f"{value:.2%}"


def interval(ci: tuple[float, float] | None) -> str:
    return f"[{ci[0]:.2%}, {ci[1]:.2%}]" if ci else "-"


def preset_of(group: comparison.Group) -> str:
    return next(i.split("=", 1)[1] for i in group.runs[0].name.split(",") if i.startswith("experiment="))


def baselines(store: Store, rerun: bool) -> dict[str, comparison.Group]:
    sweep = store.sweep("baselines", ["sweep=baselines", "seed=1,2,3"], rerun)
    groups = {preset_of(g): g for g in comparison.build_groups(store.rows(sweep))}
    lines = [
        "| preset | published | n | mean ± sd | 95% interval of the mean | min-max | one run's 95% prediction "
        "interval | published vs seeds |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for preset, (published, kind) in BASELINES.items():
        g = groups[preset]
        half = stats.t.ppf(0.975, g.n - 1) * g.sd * (1 + 1 / g.n) ** 0.5
        if kind == "test":
            p = statistics.single_vs_group_p(published, g.values)
            side = "higher" if g.mean > published else "lower"
            verdict = f"reproduced (p={p:.2g})" if p >= 0.05 else f"not reproduced: the seeds are {side} (p={p:.2g})"
        else:
            verdict = f"not comparable (published on the {kind})"
        lines.append(
            f"| `{preset}` | {pct(published)} | {g.n} | {pct(g.mean)} ± {g.sd * 100:.2f} | "
            f"{interval(g.ci)} | {pct(min(g.values))}-{pct(max(g.values))} | "
            f"[{pct(g.mean - half)}, {pct(min(1.0, g.mean + half))}] | {verdict} |"  # no accuracy above 100%
        )
    body = (
        f"Machine: {machine()}.\n\n`python run.py -m sweep=baselines seed=1,2,3` (each preset as published, "
        "holding out the last 6,000 training images for validation), test accuracy on the 10,000 test images. "
        '"Reproduced": the published single run lies inside the 95% prediction interval of one run '
        "(a t-test of one value against the seeds, `mnistlab.reports.statistics.single_vs_group_p`).\n\n"
        + "\n".join(lines)
        + "\n"
    )
    write_section("replicates_baselines", "Baselines over 3 seeds (`benchmarks/replicates.py baselines`)", body)
    return groups


def baseline_values(store: Store) -> dict[str, list[float]]:
    """Each baseline's seed accuracies: from the store's baselines sweep, else from RUNS, so that
    `best` in a new store does not train the six baselines again (about an hour)."""
    if store._sweeps("baselines") or store.quick:
        groups = comparison.build_groups(store.rows(store.sweep("baselines", ["sweep=baselines", "seed=1,2,3"], False)))
        return {preset_of(g): g.values for g in groups}
    kept = [r for r in json.loads(RUNS.read_text()).values() if "replicates_step=baselines," in r["name"]]
    values: dict[str, list[float]] = {}
    for r in sorted(kept, key=lambda r: r["seed"]):
        preset = next(i.split("=", 1)[1] for i in r["name"].split(",") if i.startswith("experiment="))
        values.setdefault(preset, []).append(r["test_accuracy"])
    if set(values) != set(BASELINES):
        sys.exit(f"{RUNS} lacks baselines {sorted(set(BASELINES) - set(values))}: run `replicates.py baselines` first")
    return values


def best(store: Store, rerun: bool, presets: list[str]) -> None:
    baseline_seeds = baseline_values(store)
    for preset in presets:
        target, candidates, final_extra = CANDIDATES[preset]
        selection = store.sweep(f"select_{preset}", [f"experiment={preset}", *candidates, "seed=1,2"], rerun)
        report = comparison.Report(store.rows(selection, metric="val_accuracy"), metric="val_accuracy")
        chosen = report.groups[0]
        overrides = [
            i
            for i in chosen.runs[0].name.split(",")
            if not i.startswith(("seed=", "+tracking.", "tracking.")) and i not in store.quick
        ]
        replaced = {f.split("=", 1)[0] for f in final_extra}
        overrides = [i for i in overrides if i.split("=", 1)[0] not in replaced]
        if final_extra:  # the chosen settings, trained on all images: five new seeds
            final = store.sweep(f"final_{preset}", [*overrides, *final_extra, "seed=1,2,3,4,5"], rerun)
            finals = store.rows(final)
        else:  # the chosen settings' seeds 1-2 are already run: add 3-5
            final = store.sweep(f"final_{preset}", [*overrides, "seed=3,4,5"], rerun)
            finals = store.rows(final) + [r for r in store.rows(selection) if r.group_id == chosen.group_id]
        (group,) = comparison.build_groups(finals)
        times = [r.train_time_s for r in group.runs]
        params = group.runs[0].num_params
        above = stats.ttest_1samp(group.values, target, alternative="greater").pvalue
        rows = ["| candidate (seeds 1, 2) | mean val accuracy | sd | vs #1 |", "|---|---|---|---|"]
        rows += [f"| `{g.name}` | {pct(g.mean)} | {g.sd * 100:.2f} | {g.verdict} |" for g in report.groups]
        versus = []
        for name in SAME_CLASS[preset]:
            other = baseline_seeds[name]
            p = statistics.welch_p(group.values, other)
            versus.append(f"`{name}` {pct(sum(other) / len(other))} (Welch p={p:.2g})")
        section = (
            f"Machine: {machine()}.\n\nChosen on validation: `{chosen.name}`"
            + (f", then trained with `{' '.join(final_extra)}`" if final_extra else "")
            + ".\n\n"
            + "\n".join(rows)
            + "\n\n"
            f"Test accuracy over seeds {', '.join(str(r.seed) for r in sorted(group.runs, key=lambda r: r.seed))}: "
            f"**{pct(group.mean)} ± {group.sd * 100:.2f}** (mean ± sd), 95% interval {interval(group.ci)}, "
            f"min {pct(min(group.values))}, max {pct(max(group.values))}; each seed: "
            f"{', '.join(pct(r.test_accuracy) for r in sorted(group.runs, key=lambda r: r.seed))}. Target "
            f"{pct(target)}: {'reached' if group.mean >= target else 'NOT reached'} by the mean (one-sided t-test "
            f"of mean > target: p={above:.2g}). Training {min(times):.0f}-{max(times):.0f} s per run. "
            f"Against the baselines of its class (3 seeds each): {'; '.join(versus)}.\n"
        )
        write_section(
            f"replicates_{preset}",
            f"`{preset}` ({params:,} parameters), re-established on validation data (`benchmarks/replicates.py best`)",
            PROCEDURE + section,
        )


def compare_models(store: Store, rerun: bool) -> None:
    sweep = store.sweep("compare_models", ["experiment=compare_models", "seed=1,2,3", "hydra/launcher=joblib"], rerun)
    rows = store.rows(sweep)
    report = comparison.Report(
        rows, title=f"experiment=compare_models, seeds 1-3 (sweep {sweep})", predictions=predictions_from(store.client)
    )
    table = report.markdown().split("## Runs")[0].split("\n", 1)[1].strip()
    body = (
        f"Machine: {machine()}.\n\n`python run.py -m experiment=compare_models seed=1,2,3 hydra/launcher=joblib` "
        "(5 epochs each, all of MNIST):\n\n" + table.replace("## Configurations", "####") + "\n"
    )
    write_section("replicates_compare_models", "Models x optimizers over 3 seeds", body)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("step", choices=["baselines", "best", "compare_models"])
    parser.add_argument("--store", type=Path, required=True, help="folder of the runs' mlflow.db and outputs")
    parser.add_argument(
        "--preset", action="append", choices=list(CANDIDATES), help="with best: only this preset (repeatable)"
    )
    parser.add_argument("--rerun", action="store_true", help="run the step's sweeps again even if they finished")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a smoke test of this script: 300 images, 1 epoch (the numbers mean nothing; RESULTS.md is not written)",
    )
    args = parser.parse_args()
    store = Store(args.store, quick=args.quick)
    if args.quick:
        global write_section
        write_section = lambda name, title, body: print(f"## {title}\n\n{body}")  # noqa: E731
    if args.step == "best":
        best(store, args.rerun, args.preset or list(CANDIDATES))
    else:
        {"baselines": baselines, "compare_models": compare_models}[args.step](store, args.rerun)


if __name__ == "__main__":
    main()
