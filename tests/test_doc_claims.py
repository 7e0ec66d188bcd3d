"""What README and docs/ say in numbers and quoted output, checked against the code (issue 20:
every claim that names a number or an error message is generated or covered by a test).

- ```console blocks: each ``$ python run.py ...`` or ``$ mnistlab ...`` runs in a subprocess (none
  trains) and the lines shown after it must be lines of its output, in order (``...`` elides);
  ``$ echo $?`` after a command gives its exit code;
- output examples (a run's summary, a comparison table, predict's table, a run's description) are
  rendered by the code that prints them, from the values the example shows;
- tables of defaults are compared with the composed config, the launcher files and the parsers;
- numbers measured elsewhere are compared with benchmarks/RESULTS.md, which its scripts write.

docs/explanation/baselines.md is left out: it is rewritten from benchmarks/RESULTS.md by its own
test. Claims that other tests cover are listed in the docstrings here with those tests' names.
"""

from __future__ import annotations

import json
import re
import shlex
import socket
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from conftest import CONF_DIR, ROOT, RUN_PY, cli_env, error_lines

pytestmark = pytest.mark.fast  # no test here trains: commands refused before training, dry runs

DOCS = ROOT / "docs"
RESULTS = ROOT / "benchmarks" / "RESULTS.md"
#: pages with claims of their own: README and docs/, but not the page being rewritten from RESULTS.md
REWRITTEN_ELSEWHERE = {"explanation/baselines.md"}
OWN = sorted(p for p in DOCS.rglob("*.md") if p.relative_to(DOCS).as_posix() not in REWRITTEN_ELSEWHERE)
PAGES = [ROOT / "README.md", *OWN]
#: what the docs show for the folder a user runs in, and for a tracking server's port
DOC_ROOT = "/home/me/mnistlab"
DOC_PORT = "5001"


def name(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def text(page: str) -> str:
    return (ROOT / page).read_text()


def blocks(page: str, lang: str) -> list[str]:
    """The fenced code blocks of one language on a page, as text."""
    return re.findall(rf"^```{lang}\n(.*?)^```", text(page), flags=re.M | re.S)


def block_starting(page: str, first: str, lang: str = "text") -> list[str]:
    """The lines of the one ``lang`` block on ``page`` whose first line starts with ``first``."""
    found = [b for b in blocks(page, lang) if b.startswith(first)]
    assert len(found) == 1, f"{page}: {len(found)} {lang} blocks start with {first!r}"
    return found[0].rstrip("\n").split("\n")


def results_section(section: str) -> str:
    """One script's section of benchmarks/RESULTS.md (between its start and end markers)."""
    body = RESULTS.read_text()
    match = re.search(rf"<!-- {section}:start -->\n(.*?)<!-- {section}:end -->", body, flags=re.S)
    assert match, f"RESULTS.md has no section {section}"
    return match.group(1)


def table_rows(markdown: str, header: str) -> list[list[str]]:
    """The rows of the Markdown table whose header row starts with ``header``, cells stripped."""
    lines = markdown.split("\n")
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in re.split(r"(?<!\\)\|", line.strip())[1:-1]])
    return rows


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ------------------------------------------------------------------------------------- console blocks


def console_commands() -> list[tuple[str, int, str, list[str], int | None]]:
    """(page, index, command, expected lines, exit code or None) of every ```console block."""
    found = []
    for path in PAGES:
        page = name(path)
        for block in blocks(page, "console"):
            commands: list[list] = []
            lines = block.rstrip("\n").split("\n")
            i = 0
            while i < len(lines):
                line = lines[i]
                if line == "$ echo $?":
                    assert commands, f"{page}: echo $? before any command"
                    commands[-1][2] = int(lines[i + 1])
                    i += 2
                    continue
                if line.startswith("$ "):
                    commands.append([line[2:], [], None])
                else:
                    assert commands, f"{page}: a console block must start with a $ command: {line!r}"
                    commands[-1][1].append(line)
                i += 1
            found += [(page, n, *c) for n, c in enumerate(commands)]
    return found


CONSOLE = console_commands()


def argv(command: str, root: Path, port: int) -> list[str]:
    command = command.replace(DOC_ROOT, str(root)).replace(f"127.0.0.1:{DOC_PORT}", f"127.0.0.1:{port}")
    words = shlex.split(command, comments=True)
    if words[:2] == ["python", "run.py"]:
        return [sys.executable, str(RUN_PY), *words[2:]]
    if words[0] == "mnistlab":
        return [sys.executable, "-m", "mnistlab", *words[1:]]
    raise AssertionError(f"a console block runs python run.py or mnistlab, not {command!r}")


def test_there_are_console_blocks_to_run():
    pages = {page for page, *_ in CONSOLE}
    assert {"docs/explanation/errors.md", "docs/how-to/continue-sweep.md", "docs/tutorial/first-run.md"} <= pages


@pytest.mark.parametrize(
    "page,index,command,expected,code",
    CONSOLE,
    ids=[f"{page.split('/')[-1]}-{index}" for page, index, *_ in CONSOLE],
)
def test_a_console_block_shows_what_the_command_prints(tmp_path, page, index, command, expected, code):
    """The command runs against a fresh store in a folder of its own, as DOC_ROOT in the docs; each
    line shown must be a whole line of its stdout or stderr, in the order shown within each."""
    root = tmp_path / "mnistlab"
    root.mkdir()
    port = free_port()
    proc = subprocess.run(
        argv(command, root, port),
        cwd=root,
        env=cli_env(f"sqlite:///{root / 'mlflow.db'}"),
        capture_output=True,
        text=True,
        timeout=120,
    )

    def as_shown(lines: list[str]) -> list[str]:
        return [line.rstrip().replace(str(root), DOC_ROOT).replace(f":{port}", f":{DOC_PORT}") for line in lines]

    streams = [as_shown(proc.stdout.splitlines()), as_shown(error_lines(proc))]
    positions = [0, 0]
    for line in expected:
        if line.strip() == "...":
            continue
        shown = re.compile(".*".join(map(re.escape, line.split("..."))))  # `...` in a line: anything
        for s, stream in enumerate(streams):
            at = next((i for i in range(positions[s], len(stream)) if shown.fullmatch(stream[i])), None)
            if at is not None:
                positions[s] = at + 1
                break
        else:
            pytest.fail(f"{page}: `{command}` did not print {line!r}:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    if code is not None:
        assert proc.returncode == code, proc.stderr[-2000:]
    else:
        assert (proc.returncode != 0) == any(line.startswith("error:") for line in expected), proc.returncode
    assert not (root / "mlflow.db").exists()  # refused or dry: nothing recorded


# ------------------------------------------------------------------- a run's summary and description


def cnn_params() -> int:
    from mnistlab.config.layers import estimate

    layers = yaml.safe_load((CONF_DIR / "model" / "cnn.yaml").read_text())["layers"]
    return sum(params for params, _ in estimate(layers, (28, 28, 1)))


def runner_speed() -> dict[str, dict[str, float]]:
    """RESULTS.md's default-experiment runs of run.py, by seed: test accuracy, training and process time."""
    rows = table_rows(results_section("runner_speed"), "| seed | script |")
    return {
        seed: {"accuracy": float(acc), "training": float(train.split()[0]), "wall": float(wall.split()[0])}
        for seed, script, acc, train, wall in rows
        if script.startswith("`python run.py")
    }


@pytest.mark.parametrize("page", ["README.md", "docs/tutorial/first-run.md"])
def test_the_default_runs_summary_is_what_run_py_prints_for_its_measured_run(compose_cfg, page):
    """The example is seed 42's run of benchmarks/RESULTS.md (the default seed): its accuracy and
    training time; the interval, the parameter count and the layout are what run.py prints for it."""
    from mnistlab.app.task import summary
    from mnistlab.config import validate
    from mnistlab.reports.statistics import wilson_interval

    shown = block_starting(page, "model       ")
    accuracy, loss = re.search(r"accuracy (\S+) .*, loss (\S+)$", shown[1]).groups()
    wall, training = re.search(r"(\S+) s wall, (\S+) s training", shown[2]).groups()
    run_id, experiment_id = re.search(r"MLflow run  (\w+) \(experiment 'mnistlab', id (\d+)\)", shown[3]).groups()
    low, high = wilson_interval(round(float(accuracy) * 10_000), 10_000)
    cfg = validate(compose_cfg([]))
    metrics = {
        "test_accuracy": float(accuracy),
        "test_accuracy_ci_low": low,
        "test_accuracy_ci_high": high,
        "test_loss": float(loss),
        "wall_time_s": float(wall),
        "train_time_s": float(training),
        "epochs_run": cfg.trainer.epochs,
    }
    result = SimpleNamespace(
        metrics=metrics,
        num_params=cnn_params(),
        run_id=run_id,
        experiment_id=experiment_id,
        tracking_uri=f"sqlite:///{DOC_ROOT}/mlflow.db",
    )
    printed = summary(result, cfg).split("\n")
    assert shown == printed[: len(shown)]
    measured = runner_speed()["42"]
    assert cfg.seed == 42 and float(accuracy) == measured["accuracy"] and float(training) == measured["training"]
    assert measured["training"] <= float(wall) <= measured["wall"]  # wall_time_s: data to logged model


def test_early_stopping_as_the_summary_says_it(compose_cfg):
    """configure.md: "the summary says `3 of 10 epochs (stopped early)` and `weights of epoch 2`"."""
    from mnistlab.app.task import summary
    from mnistlab.config import validate

    page = text("docs/how-to/configure.md")
    assert "`3 of 10 epochs (stopped early)` and `weights of epoch 2`" in page
    cfg = validate(compose_cfg(["callbacks=early_stopping", "trainer.epochs=10"]))
    metrics = dict.fromkeys(("test_accuracy", "test_accuracy_ci_low", "test_accuracy_ci_high", "test_loss"), 0.5)
    metrics.update(wall_time_s=1.0, train_time_s=1.0, epochs_run=3, best_epoch=2)
    result = SimpleNamespace(metrics=metrics, num_params=1, run_id="r", experiment_id="1", tracking_uri="sqlite:///x")
    printed = summary(result, cfg)
    assert "3 of 10 epochs (stopped early) of batch 128" in printed and "(weights of epoch 2)" in printed


def test_the_description_example_is_what_a_run_records(compose_cfg):
    """records.md's description: what runner.record.description writes for the default run of the
    summary's example (seed 42), on MNIST's 54,000 training and 10,000 test images."""
    from mnistlab.config import validate
    from mnistlab.reports.statistics import wilson_interval
    from mnistlab.runner.record import description

    shown = re.search(r'e\.g\. "(.*?)";', " ".join(text("docs/reference/records.md").split()), flags=re.S).group(1)
    accuracy = round(float(re.search(r"test accuracy ([\d.]+)%", shown).group(1)) / 100, 4)
    low, high = wilson_interval(round(accuracy * 10_000), 10_000)
    cfg = validate(compose_cfg([]))
    data = SimpleNamespace(x_train=range(54_000), x_test=range(10_000))
    scores = {"test_accuracy": accuracy, "test_accuracy_ci_low": low, "test_accuracy_ci_high": high}
    assert shown == description(cfg, cnn_params(), data, cfg.trainer.epochs, scores)
    assert accuracy == runner_speed()["42"]["accuracy"]


def test_the_default_run_is_as_measured_in_results():
    """ "about 98.6%" (seed 42, the default), "under two minutes" on the 2-core machine, and the
    seeds comparing.md quotes: benchmarks/RESULTS.md, runner_speed."""
    measured = runner_speed()
    assert round(measured["42"]["accuracy"] * 100, 1) == 98.6
    assert all(run["wall"] < 120 for run in measured.values())
    seeds = ", ".join(f"{measured[s]['accuracy']:.2%}" for s in ("42", "1")) + f" and {measured['2']['accuracy']:.2%}"
    assert f"gave {seeds} over seeds 42, 1 and 2" in " ".join(text("docs/explanation/comparing.md").split())
    for page in ("README.md", "docs/tutorial/first-run.md", "docs/tutorial/seeds.md"):
        assert "two minutes" in text(page) and "benchmarks/RESULTS.md" in text(page), page


def test_a_config_error_costs_under_a_second_as_measured():
    """errors.md and lifecycle.md: config errors answer in under a second (RESULTS.md, runner_speed)."""
    rows = table_rows(results_section("runner_speed"), "| command | exit code | wall time |")
    refused = [float(wall.split()[0]) for command, code, wall in rows if code == "2"]
    assert refused and max(refused) < 1.0


# ------------------------------------------------------------------------------- comparison tables


def rows_of_table(lines: list[str], group_ids: dict[str, str] | None = None, reasons: dict[str, str] | None = None):
    """RunRows from a shown table's ``runs:`` part (and its ``all runs:`` line, and FAILED lines'
    reasons): the inputs the rest of the table is computed from."""
    from mnistlab.reports.comparison import RunRow

    common = next((line[len("all runs: ") :].split(", ") for line in lines if line.startswith("all runs: ")), [])
    start = lines.index("runs:") + 2
    rows = []
    for line in lines[start:]:
        match = re.fullmatch(r"\d+\s+(\S+)\s+(FINISHED|FAILED|KILLED)\s+(?:\d+|-)\s+(\d+)\s+([\d.]+%|-)\s+(\w+)", line)
        if not match:
            break
        run, status, seed, accuracy, run_id = match.groups()
        name = ",".join(sorted([*common, *run.split(",")], key=lambda item: item.split("=")[0]))
        config = ",".join(item for item in run.split(",") if not item.startswith("seed="))
        rows.append(
            RunRow(
                run_id=run_id.ljust(32, "0"),
                name=name,
                status=status,
                num_params=None,
                test_accuracy=float(accuracy[:-1]) / 100 if accuracy != "-" else None,
                test_loss=None,
                train_time_s=None,
                failure_reason=(reasons or {}).get(run, ""),
                group_id=(group_ids or {}).get(config, config),
                seed=int(seed),
                test_images=10_000,
            )
        )
    return rows


@pytest.mark.parametrize("page", ["docs/tutorial/compare.md", "docs/explanation/comparing.md"])
def test_the_comparison_table_is_what_compare_prints_for_its_runs(page):
    """The configurations' n, mean, sd, interval, min-max and test, and the notes, from the runs'
    accuracies, as `mnistlab compare` prints them on a terminal (run ids cut to 8 characters)."""
    from mnistlab.reports.comparison import Report

    shown = block_starting(page, "all runs: ")
    report = Report(rows_of_table(shown))
    assert report.text(width=200).split("\n") == shown


def same(doc, real) -> bool:
    """A shortened JSON example against the real document: "..." stands for anything (as a list's
    last item: the rest of the list; in a string: any text), numbers as rounded as shown."""
    if doc == "...":
        return True
    if isinstance(doc, dict):
        return isinstance(real, dict) and all(k == "..." or (k in real and same(v, real[k])) for k, v in doc.items())
    if isinstance(doc, list):
        if doc and doc[-1] == "...":
            return len(real) >= len(doc) - 1 and all(same(d, r) for d, r in zip(doc[:-1], real))
        return len(doc) == len(real) and all(same(d, r) for d, r in zip(doc, real))
    if isinstance(doc, str) and "..." in doc:
        return isinstance(real, str) and re.fullmatch(".*".join(map(re.escape, doc.split("..."))), real) is not None
    if isinstance(doc, float):
        decimals = len(repr(doc).split(".")[1])
        return isinstance(real, float) and round(real, decimals) == doc
    return doc == real


def test_the_json_example_is_what_compare_writes_for_the_same_sweep():
    from mnistlab.reports.comparison import Report

    page = "docs/explanation/comparing.md"
    doc = json.loads("\n".join(block_starting(page, '{"title"', "json")))
    group_ids = {g["name"]: g["group"] for g in doc["groups"] if isinstance(g, dict)}
    rows = rows_of_table(block_starting(page, "all runs: "), group_ids)
    real = Report(rows, title="sweep 20261122-101500-3f2a").to_json()
    assert same(doc, real), json.dumps(real)[:3000]


def test_a_sweep_with_a_failed_job_prints_its_table_as_shown():
    """sweeps.md's sweep with a diverged job: the table (piped: full names and ids) is the one the
    sweep prints for those two runs; the `error:` lines around it are asserted by test_sweeps.py's
    test_failed_jobs_do_not_stop_the_sweep_and_are_summarised (job line, last line, the parent's reason)."""
    from mnistlab.reports.comparison import Report

    shown = block_starting("docs/how-to/sweeps.md", "$ python run.py -m model=mlp12")
    failed = [re.fullmatch(r"  FAILED (\S+): (.*)", line) for line in shown]
    reasons = {m.group(1): m.group(2) for m in failed if m}
    table = shown[shown.index(next(line for line in shown if line.startswith("all runs: "))) :]
    printed = Report(rows_of_table(table, reasons=reasons)).text(width=None).split("\n")
    at = 0
    for line in table:
        if line.startswith("error:"):
            break
        if line.strip() != "...":
            assert line in printed[at:], line
            at = printed.index(line, at) + 1
    header = re.fullmatch(r"sweep \S+: (\d) runs in (\d) configurations?, ranked by test accuracy", shown[3])
    assert header and header.groups() == ("2", "1")
    assert shown[-1].endswith(": 1 of 2 jobs did not finish (job 1 FAILED; the table above says why)")
    assert "`failure_reason = 1 of 2 jobs did not finish`" in text("docs/how-to/sweeps.md")


# ---------------------------------------------------------------------------------------- predict


@pytest.mark.parametrize("page", ["README.md", "docs/tutorial/predict.md", "docs/how-to/use-a-model.md"])
def test_predicts_table_is_what_it_prints_for_those_probabilities(page):
    """The image table as `mnistlab predict` lays it out; its first line's wording is asserted by
    test_predict.py's test_the_table_names_the_model_and_the_top_three."""
    from mnistlab.app.commands.predict import _table

    shown = block_starting(page, "model: run ")
    assert re.fullmatch(
        r"model: run '[^']+' \(\w+\.\.\.\), test accuracy \d+\.\d\d%, the best FINISHED run with a model in "
        r"experiment 'mnistlab'",
        shown[0],
    )
    rows = []
    for line in shown[2:]:
        image, digit, probability, top = re.fullmatch(r"(\S+)\s+(\d)\s+([\d.]+)%\s+(.*)", line).groups()
        top3 = [{"digit": int(d), "probability": float(p) / 100} for d, p in re.findall(r"(\d) ([\d.]+)%", top)]
        assert int(digit) == top3[0]["digit"] and float(probability) / 100 == top3[0]["probability"]
        rows.append({"image": image, "digit": int(digit), "probability": float(probability) / 100, "top3": top3})
    assert _table(rows).split("\n") == shown[1:]
