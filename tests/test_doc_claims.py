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

import argparse
import json
import os
import re
import shlex
import socket
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from omegaconf import OmegaConf

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
                    command = line[2:]
                    while command.endswith(" \\"):  # continued on the next line, as in a shell
                        i += 1
                        command = command[:-1] + lines[i].strip()
                    commands.append([command, [], None])
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


def test_a_config_error_the_help_and_the_config_cost_under_a_second_as_measured():
    """errors.md and lifecycle.md: config errors answer in under a second; so do --help and
    --cfg job (issue 19); RESULTS.md, startup."""
    rows = table_rows(results_section("startup"), "| command | exit code | wall time |")
    walls = {command.strip("`"): (code, float(wall.split()[0])) for command, code, wall in rows}
    refused = [wall for code, wall in walls.values() if code == "2"]
    assert refused and max(refused) < 1.0
    assert walls["python run.py --help"][1] < 1.0 and walls["python run.py --cfg job"][1] < 1.0


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


# ------------------------------------------------------------------------------- tables of defaults


def raw_config(compose_cfg, overrides: list[str] = ()) -> dict:
    """The composed config as written (interpolations unresolved), Hydra's own part included."""
    return OmegaConf.to_container(compose_cfg(list(overrides)), resolve=False)


def at(tree: dict, key: str):
    for part in key.split("."):
        tree = tree[part]
    return tree


def doc_value(cell: str):
    """A default as the docs write it: `x` (YAML), or `$VAR`, else `x` (an ${oc.env:VAR,x})."""
    env = re.fullmatch(r"`\$(\w+)`, else `(.*)`", cell)
    if env:
        variable, fallback = env.group(1), env.group(2).replace("<root_dir>", "${root_dir}")
        return "${oc.env:" + variable + "," + fallback + "}"
    return yaml.safe_load(cell.strip("`"))


def key_default_rows(page: str) -> list[tuple[str, str]]:
    """(key, default cell) of every `| key | default |` table on a page; a row of several keys
    (`a.b` / `.c` / `.d`) gives one pair per key."""
    pairs = []
    body = text(page)
    for start in [m.start() for m in re.finditer(r"^\| key \| default \|", body, flags=re.M)]:
        for row in table_rows(body[start:], "| key | default |"):
            keys, defaults = row[0].split(" / "), row[1].split(" / ")
            if len(keys) == 1:
                pairs.append((keys[0].strip("`"), row[1]))
                continue
            assert len(keys) == len(defaults), row
            parent = keys[0].strip("`").rsplit(".", 1)[0]
            for key, default in zip(keys, defaults, strict=True):
                key = key.strip("`")
                pairs.append((parent + key if key.startswith(".") else key, default))
    return pairs


def test_configure_md_gives_every_default_as_composed(compose_cfg):
    """The data, trainer, callbacks and tracking tables, the top-level seed, and the scheduler and
    loss options' keys: the values conf/ composes to (the generated reference lists them all)."""
    page = "docs/how-to/configure.md"
    pairs = key_default_rows(page)
    assert {key.split(".")[0] for key, _ in pairs} == {"data", "trainer", "callbacks", "tracking"}
    cfg = raw_config(compose_cfg)
    for key, default in pairs:
        assert at(cfg, key) == doc_value(default), key
    assert f"`seed` (default {cfg['seed']};" in text(page)
    for option, keys, _ in table_rows(text(page), "| option | keys (defaults) |"):
        scheduler = raw_config(compose_cfg, [f"scheduler={option.strip('`')}"])["scheduler"]
        shown = dict(re.findall(r"`(\w+)` \(([^)]+)\)", keys))
        assert set(shown) == set(scheduler) - {"name"}, option
        assert all(float(v) == scheduler[k] for k, v in shown.items()), option
    assert "`loss.label_smoothing` (crossentropy only; default `0`, in [0, 1))" in text(page)
    assert raw_config(compose_cfg, ["loss=crossentropy"])["loss"]["label_smoothing"] == 0


def test_configure_md_counts_each_models_parameters_as_validation_does():
    """The model table: every file in conf/model/ and its parameter count (the estimate that
    test_config.py's test_the_size_estimate_is_keras_own_count holds equal to Keras's count)."""
    from mnistlab.config.layers import estimate

    rows = table_rows(text("docs/how-to/configure.md"), "| option | layers | parameters |")
    shown = {option.strip("`"): int(count.replace(",", "")) for option, _, count in rows}
    assert set(shown) == {p.stem for p in (CONF_DIR / "model").glob("*.yaml")}
    for model, count in shown.items():
        layers = yaml.safe_load((CONF_DIR / "model" / f"{model}.yaml").read_text())["layers"]
        assert sum(params for params, _ in estimate(layers, (28, 28, 1))) == count, model
    for page in ("README.md", "docs/tutorial/first-run.md", "docs/reference/records.md"):
        assert f"cnn ({shown['cnn']:,} parameters)" in text(page), page


def test_the_model_size_limit_is_the_schemas():
    from mnistlab.config.schema import ModelConfig

    limit = ModelConfig().max_params
    for page in ("docs/how-to/add-architecture.md", "docs/explanation/what-happens-when.md"):
        assert f"`model.max_params` ({limit:,} by default" in text(page), page


def parser_of(add_arguments) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser


@pytest.mark.parametrize(
    "page,command", [("docs/explanation/comparing.md", "compare"), ("docs/how-to/use-a-model.md", "predict")]
)
def test_an_option_tables_defaults_are_the_parsers(page, command):
    """Each `--flag` row's default: the parser's (the generated CLI reference has them too)."""
    import importlib

    parser = parser_of(importlib.import_module(f"mnistlab.app.commands.{command}").add_arguments)
    defaults = {a.option_strings[0]: a.default for a in parser._actions if a.option_strings}
    rows = [row for row in table_rows(text(page), "| option | default |") if row[0].startswith("`--")]
    assert rows
    for flag, default, _ in rows:
        flag = flag.strip("`").split()[0]
        real = defaults[flag]
        if default.startswith("`$MLFLOW_TRACKING_URI`"):  # resolved when the command runs
            said = parser_help(parser, flag)
            assert real is None and "$MLFLOW_TRACKING_URI, else sqlite:///<project>/mlflow.db" in said
        elif default.startswith("`outputs/"):  # a new folder each time, when the command writes
            assert real is None and "outputs/" in parser_help(parser, flag)
        elif default in ("", "off", "none", "all runs"):
            assert real in (None, False, ""), flag
        else:
            assert str(real) == default.strip("`"), flag


def parser_help(parser: argparse.ArgumentParser, flag: str) -> str:
    return next(a.help for a in parser._actions if flag in a.option_strings)


def test_the_hyperparameter_search_table_gives_cnn_optunas_values():
    """hyperparameter-search.md's "preset value" column, and the presets' trial counts and spaces
    the page names: conf/hparams_search/."""
    page = text("docs/how-to/hyperparameter-search.md")
    rows = {key.strip("`"): value for key, value, _ in table_rows(page, "| key | preset value |")}
    preset = yaml.safe_load((CONF_DIR / "hparams_search" / "cnn_optuna.yaml").read_text())["hydra"]["sweeper"]
    for key in ("direction", "n_trials", "n_jobs", "pruner", "max_failures"):
        assert doc_value(rows[key]) == preset[key], key
    assert preset["study_name"] == "cnn_optuna" and preset["storage"] is None and preset.get("objectives") is None
    sampler = preset["sampler"]
    assert sampler["_target_"] == "optuna.samplers.TPESampler"
    assert rows["sampler"] == f"TPE, `seed: {sampler['seed']}`, `n_startup_trials: {sampler['n_startup_trials']}`"
    assert f"# {preset['n_trials']} trials, stored in a local study" in page
    assert preset["params"]["optimizer.lr"] == "tag(log, interval(0.0001, 0.01))"
    assert "`optimizer.lr` (log 1e-4 to 1e-2)" in page
    pareto = yaml.safe_load((CONF_DIR / "hparams_search" / "tiny_cnn_pareto.yaml").read_text())
    sweeper = pareto["hydra"]["sweeper"]
    assert sweeper["params"]["model.layers.0.filters"] == "range(2, 17, 2)"  # 2-16 filters
    assert sweeper["params"]["model.layers.0.kernel_size"] == "choice(2, 3)"
    assert sweeper["sampler"]["_target_"] == "optuna.samplers.NSGAIISampler"
    assert pareto["model"]["max_params"] == 50_000
    assert (
        f"widths (2-16 filters) and\nthe first kernel (2 or 3), up to 50K parameters, {sweeper['n_trials']} trials "
        "with NSGA-II" in page
    )


def test_the_launcher_tables_give_the_launchers_files(compose_cfg):
    """slurm.md's and ray.md's knobs, and joblib's n_jobs: as conf/hydra/launcher/ composes them
    (the plugins' own defaults included, e.g. signal_delay_s)."""
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    slurm = raw_config(compose_cfg, ["hydra/launcher=slurm"])["hydra"]["launcher"]
    page = text("docs/how-to/scale-out/slurm.md")
    for key, default, *_ in table_rows(page, "| key | default | sbatch |"):
        for k, d in zip(key.split(", "), default.split(", "), strict=True):
            assert slurm[k.strip("`")] == doc_value(d), k
    assert f"`signal_delay_s` ({slurm['signal_delay_s']} s)" in page
    assert f"array_parallelism ({slurm['array_parallelism']}) trials at a time" in page
    assert f"`--array=0-N%{slurm['array_parallelism']}`" in page

    ray = yaml.safe_load((CONF_DIR / "hydra" / "launcher" / "ray.yaml").read_text())["ray"]
    page = text("docs/how-to/scale-out/ray.md")
    rows = {key.strip("`"): value for key, value, _ in table_rows(page, "| key | default |")}
    assert rows["hydra.launcher.ray.init.address"] == f"`{ray['init']['address']}`"
    assert rows["hydra.launcher.ray.remote.num_cpus"] == f"`{ray['remote']['num_cpus']}`"
    assert ray["init"]["object_store_memory"] is None and "`object_store_memory` is `null` in the file" in page

    joblib = raw_config(compose_cfg, ["hydra/launcher=joblib"])["hydra"]["launcher"]
    assert joblib["n_jobs"] == -1
    assert "`hydra.launcher.n_jobs` at a time (default `-1`: one per core" in text("docs/how-to/sweeps.md")


# ----------------------------------------------------------------------------- how many jobs a sweep is


def dry_run(root: Path, *overrides: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(RUN_PY), "-m", *overrides, "hydra/launcher=dry_run"],
        cwd=root,
        env=cli_env(f"sqlite:///{root / 'mlflow.db'}"),
        capture_output=True,
        text=True,
        timeout=120,
    )


#: (page, the sweep as the page gives it, what the page says of its size, the jobs it is)
SWEEPS = [
    ("README.md", "-m model=cnn,tiny_cnn 'seed=range(1,4)'", "2 models x 3 seeds", 6),
    ("docs/index.md", "-m model=cnn,tiny_cnn 'seed=range(1,4)'", "2 models x 3 seeds", 6),
    ("docs/tutorial/seeds.md", "-m model=cnn,tiny_cnn 'seed=range(1,4)'", "six runs", 6),
    ("docs/tutorial/seeds.md", "-m model=cnn,dense optimizer=adam,sgd sweep=seeds", "4 configurations x 5 seeds", 20),
    ("docs/explanation/comparing.md", "-m experiment=best_cnn sweep=seeds", "seeds 1-5", 5),
    ("docs/how-to/sweeps.md", "-m model=dense,cnn,tiny_cnn optimizer=adam,sgd,rmsprop", "# 9 runs", 9),
    ("docs/how-to/sweeps.md", "-m model=dense,cnn,tiny_cnn loss=crossentropy,mse seed=1,2,3", "# 18", 18),
    ("docs/how-to/sweeps.md", "-m experiment=compare_models", "runs its 9 jobs", 9),
    ("docs/how-to/sweeps.md", "-m sweep=baselines", "six published baselines", 6),
    ("docs/how-to/scale-out/slurm.md", "-m model=dense,cnn,tiny_cnn optimizer=adam,sgd,rmsprop", "# 9 jobs", 9),
]


@pytest.mark.parametrize("page,sweep,said,jobs", SWEEPS, ids=[f"{p.split('/')[-1]}-{n}" for p, _, _, n in SWEEPS])
def test_a_sweep_has_the_jobs_the_page_says(tmp_path, page, sweep, said, jobs):
    assert sweep in text(page) and said in text(page)
    proc = dry_run(tmp_path, *shlex.split(sweep)[1:])
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.startswith(f"dry run: {jobs} jobs ")


def test_the_example_preset_of_sweeps_md_is_the_12_runs_it_says(tmp_path):
    """The SGD learning-rate preset shown in full: saved as a preset, it composes and is 12 jobs."""
    preset = next(b for b in blocks("docs/how-to/sweeps.md", "yaml") if "SGD with momentum" in b)
    assert "(12 runs)" in preset
    (tmp_path / "presets" / "experiment").mkdir(parents=True)
    (tmp_path / "presets" / "experiment" / "sgd_lr.yaml").write_text(preset)
    proc = dry_run(tmp_path, "experiment=sgd_lr", f"hydra.searchpath=[file://{tmp_path / 'presets'}]")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.startswith("dry run: 12 jobs ")


def test_the_yaml_shown_as_a_file_of_the_repository_is_that_file():
    """A YAML block headed by the file it shows (`# conf/model/cnn.yaml`), or shown as a preset's
    content, holds that file's values; add-option.md's snippets are lines of the files they name."""
    shown = {}
    for path in PAGES:
        for block in blocks(name(path), "yaml"):
            first = block.split("\n", 1)[0]
            match = re.fullmatch(r"# ((?:conf|experiments)/\S+\.yaml)", first)
            if match and (ROOT / match.group(1)).is_file():
                shown[(name(path), match.group(1))] = block
    assert ("docs/how-to/configure.md", "conf/model/cnn.yaml") in shown
    for (page, file), block in shown.items():
        if "\n...\n" in block:
            continue  # an excerpt: checked line by line below
        assert yaml.safe_load(block) == yaml.safe_load((ROOT / file).read_text()), (page, file)
    preset = next(b for b in blocks("docs/how-to/sweeps.md", "yaml") if "compare_models" in b)
    assert yaml.safe_load(preset) == yaml.safe_load((ROOT / "experiments" / "compare_models.yaml").read_text())

    source = (ROOT / "src" / "mnistlab" / "config" / "optimizers.py").read_text()
    adamw = (CONF_DIR / "optimizer" / "adamw.yaml").read_text()
    python = next(b for b in blocks("docs/how-to/add-option.md", "python") if "AdamWConfig" in b)
    config = shown[("docs/how-to/add-option.md", "conf/optimizer/adamw.yaml")]
    for snippet, whole in ((python, source), (config, adamw)):
        for line in snippet.split("\n"):
            code = line.split("  #")[0].rstrip()
            if code and code.strip() != "..." and not code.startswith("# conf/"):
                assert re.search(rf"^{re.escape(code)}(\s|$)", whole, flags=re.M), line


# ------------------------------------------------------------------------- numbers the code holds


def flat(page: str) -> str:
    """A page's text with its line breaks folded, for phrases that wrap."""
    return " ".join(text(page).split())


def test_one_runs_interval_is_as_wide_as_the_docs_say():
    """±0.23 points at 98.6% and ±0.14 at 99.5% (comparing.md), about ±0.2 (first-run.md,
    compare.md): half the 95% Wilson interval on 10,000 test images."""
    from mnistlab.reports.statistics import LEVEL, wilson_interval

    def half(accuracy: float) -> float:
        low, high = wilson_interval(round(accuracy * 10_000), 10_000)
        return (high - low) / 2 * 100

    assert LEVEL == 0.95
    assert "about ±0.14 points at 99.5% accuracy and ±0.23 points at 98.6%" in flat("docs/explanation/comparing.md")
    assert round(half(0.995), 2) == 0.14 and round(half(0.986), 2) == 0.23
    assert "only to about ±0.2 points" in flat("docs/tutorial/first-run.md")
    assert "(about ±0.2 points at 98.6%)" in flat("docs/tutorial/compare.md")
    assert round(half(0.986), 1) == 0.2


def test_the_verdicts_and_p_values_are_written_as_shown():
    """`tied with #1 (p=0.41)`, `worse than #1 (p=0.003)`, `p=2e-05` style; "tied: p >= 0.05"."""
    from mnistlab.reports.comparison import ALPHA, p_text

    assert (p_text(0.41), p_text(0.003), p_text(4e-05)) == ("p=0.41", "p=0.003", "p=4e-05")
    assert ALPHA == 0.05
    for page in ("README.md", "docs/tutorial/compare.md", "docs/how-to/sweeps.md", "docs/explanation/comparing.md"):
        assert "`tied with #1 (p=0.41)`" in text(page) or "`tied with #1\n(p=0.41)`" in text(page), page


def test_the_numbers_the_code_holds_are_the_ones_the_docs_give():
    """Each claim's phrase, and the constant or default in the code that makes it true."""
    import inspect

    from mnistlab.config.groups import group_id
    from mnistlab.data import images
    from mnistlab.reports import statistics
    from mnistlab.reports.comparison import SHORT_ID
    from mnistlab.reports.evaluation import Misclassified
    from mnistlab.sweeps import optuna_adapter
    from mnistlab.tracking import safe, server

    def default(function, argument: str):
        return inspect.signature(function).parameters[argument].default

    comparing, predict = flat("docs/explanation/comparing.md"), flat("docs/how-to/use-a-model.md")
    # comparing.md: the paired bootstrap, the tag's hash, the misclassified figure
    assert default(statistics.paired_bootstrap_interval, "resamples") == 9_999
    assert "(9,999 resamples of the test images" in comparing
    assert len(group_id({"model.name": "cnn"})) == 12 and "a 12-character hash" in comparing
    assert default(Misclassified.of, "limit") == 64 and "the first 64 misclassified" in comparing
    # run ids cut to 8 characters on a terminal (test_statistics.py checks the table), and --pair's prefix
    assert SHORT_ID == 8 and "shortened to 8 characters" in flat("docs/tutorial/compare.md")
    assert "a unique prefix of at least 6 characters" in comparing
    assert "(or a unique prefix of 6+ characters)" in text("docs/tutorial/compare.md")
    # what-happens-when.md: the server's health check, predict's size limit
    assert default(server.server_problem, "timeout") == 5.0
    assert "asks the server's `/health` (5 s timeout)" in flat("docs/explanation/what-happens-when.md")
    assert images.MAX_PIXELS == 40_000_000 and "above 40 megapixels" in flat("docs/explanation/what-happens-when.md")
    # use-a-model.md and predict.md: how an image becomes MNIST-like
    assert (images.SIZE, images.DIGIT_SIZE, images.INK_FLOOR) == (28, 20, 0.2)
    assert "fainter than 20% of it" in predict and "longer side to 20 px" in predict and "(14, 14)" in predict
    assert "20x20 pixels centred by mass in a 28x28 frame" in flat("docs/tutorial/predict.md")
    # a search's dead trials: no heartbeat for 3 minutes on another host
    assert optuna_adapter.GRACE_S == 3 * 60
    assert "no Optuna heartbeat for 3 minutes" in flat("docs/how-to/hyperparameter-search.md")
    assert "after 3 minutes the trial is marked FAIL" in flat("docs/how-to/scale-out/shared-study.md")
    # tracking-server.md: run names PostgreSQL takes
    long = safe.fitting_name("a" * 300)
    assert safe.MAX_RUN_NAME == 250 and len(long) <= 250 and long != safe.fitting_name("a" * 299)
    assert "names are now cut to 250 with a hash" in flat("docs/how-to/scale-out/tracking-server.md")


def test_the_tests_the_docs_quote_run_what_they_say():
    """240 hostile command lines (what-happens-when.md), 16 runs from 4 workers: those tests' settings."""
    hostile = (ROOT / "tests" / "reliability" / "test_hostile_config.py").read_text()
    assert 'os.environ.get("HOSTILE_EXAMPLES", "240")' in hostile
    concurrency = (ROOT / "tests" / "reliability" / "test_concurrency.py").read_text()
    assert "WORKERS = 4 " in concurrency and "JOBS_PER_WORKER = 4 " in concurrency
    page = flat("docs/explanation/what-happens-when.md")
    assert "throws 240 random command lines" in page and "16 runs from 4 parallel workers" in page


def test_the_secret_looking_names_the_docs_list_are_masked():
    from mnistlab.core.redaction import SECRET_NAME

    for page in ("docs/reference/records.md", "docs/explanation/security.md"):
        listed = re.findall(r"`\*(\w+)\*`", text(page))
        assert len(listed) >= 6, page
        assert all(SECRET_NAME.search(f"MY_{word}_VAR") for word in listed), page


def test_system_metrics_are_sampled_every_10_s():
    """records.md and mlflow-ui.md: MLflow's sampling interval, which mnistlab leaves as it is."""
    import inspect

    from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

    assert inspect.signature(SystemMetricsMonitor).parameters["sampling_interval"].default == 10
    assert "every 10 s" in text("docs/reference/records.md") and "every 10 s" in text("docs/tutorial/mlflow-ui.md")
    assert "SAMPLING_INTERVAL" not in "".join(p.read_text() for p in (ROOT / "src").rglob("*.py"))


def test_mnist_and_its_split_as_the_docs_count_them(compose_cfg):
    """60,000 + 10,000 images of 28x28, the four IDX files, 54,000 trained on and 6,000 held out."""
    from mnistlab.data import DATASETS
    from mnistlab.data.mnist import MNIST_TEST_IMAGES, MNIST_TRAIN_IMAGES

    assert (MNIST_TRAIN_IMAGES, MNIST_TEST_IMAGES) == (60_000, 10_000)
    split = raw_config(compose_cfg)["data"]["val_split"]
    held_out = round(MNIST_TRAIN_IMAGES * split)
    assert (MNIST_TRAIN_IMAGES - held_out, held_out) == (54_000, 6_000)
    assert "on 54,000 training images (the last 6,000 are held out" in flat("docs/tutorial/first-run.md")
    for page in ("README.md", "docs/index.md"):
        assert f"evaluates it on the {MNIST_TEST_IMAGES:,} test images" in flat(page), page
    files = ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz"]
    files.append("t10k-labels-idx1-ubyte.gz")
    assert sorted(f"{f}.gz" for f in DATASETS["mnist"].files.values()) == sorted(files)
    for page in ("docs/tutorial/first-run.md", "docs/how-to/configure.md"):
        assert ", ".join(f"`{f}`" for f in files) in flat(page), page
    rows = {r[0].split()[0].strip("`"): r for r in table_rows(text("docs/reference/datasets.md"), "| `data=` |")}
    assert set(rows) == set(DATASETS.names())
    for dataset, row in rows.items():
        spec = DATASETS[dataset]
        counted = f"{spec.train_images:,} + {spec.test_images:,}, {spec.image_shape[0]}x{spec.image_shape[1]}"
        assert counted in row[1] and f"(`${spec.env_var}`)" in row[2] and spec.num_classes == 10, dataset
        assert ("decompressed" in row[3]) == (spec.checksums_of == "contents"), dataset


# ------------------------------------------------------------- conclusions drawn from RESULTS.md


def test_performance_md_lists_every_benchmark_script_and_each_answers_help():
    """performance.md's table of scripts: each one there is, and `--help` says how to run it
    (without measuring anything)."""
    listed = {
        name
        for row in table_rows(text("docs/explanation/performance.md"), "| script |")
        for name in re.findall(r"`(\w+)\.py`", row[0])
    }
    helpers = {"results", "epoch_times", "plain_keras"}  # imported or called by the scripts, not run alone
    scripts = {path.stem for path in (ROOT / "benchmarks").glob("*.py")} - helpers
    assert listed == scripts
    for name in sorted(scripts):
        proc = subprocess.run(
            [sys.executable, f"benchmarks/{name}.py", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=60
        )
        assert proc.returncode == 0 and "usage:" in proc.stdout, (name, proc.stderr[-2000:])


def test_the_fast_preset_trains_the_epochs_validation_chose():
    """experiment=fast's epochs are the fewest whose mean val_accuracy reached 99.1% in
    time_to_accuracy.py's selection (RESULTS.md), and it then trains on every image."""
    section = results_section("time_to_accuracy")
    candidates = {int(row[0]): float(row[2].split("%")[0]) for row in table_rows(section, "| trainer.epochs |")}
    reaching = [epochs for epochs, mean in candidates.items() if mean >= 99.1]
    preset = yaml.safe_load((ROOT / "experiments" / "fast.yaml").read_text())
    assert preset["trainer"]["epochs"] == (min(reaching) if reaching else max(candidates))
    assert preset["data"]["val_split"] == 0.0
    assert re.search(r"- run\.py: test accuracy [\d.]+% ± [\d.]+ \(lowest seed [\d.]+%\): accuracy target met", section)


def test_the_speed_conclusions_the_docs_draw_are_results_mds():
    """performance.md, configure.md, sweeps.md, reproducibility.md, shared-study.md and
    tracking-server.md state conclusions and link benchmarks/RESULTS.md for the numbers."""
    # with 32 steps per call, run.py's epochs beat the hand-written fit() for the small models at batch 32,
    # and every baseline's epochs and whole process take less time than by hand (issue 19: within 3% and 10%)
    rows = table_rows(results_section("baselines_speed"), "| preset |")
    per_epoch = {row[0].strip("`"): float(re.match(r"\*\*([\d.]+)\*\*", row[4]).group(1)) for row in rows}
    process = {row[0].strip("`"): float(re.match(r"\*\*([\d.]+)\*\*", row[7]).group(1)) for row in rows}
    assert len(rows) == 6
    for preset in ("baseline_mlp12", "baseline_tiny_cnn", "baseline_dense512x2"):
        assert per_epoch[preset] < 0.9, preset
    assert max(per_epoch.values()) < 1.0 and max(process.values()) < 1.0
    assert "every published baseline's epochs, and its whole process, took less time through `run.py`" in flat(
        "docs/explanation/performance.md"
    )
    # on bfloat16 hardware (AMX; AVX512-BF16 alone), trainer.precision=auto picks bfloat16 for a model
    # exactly where it ran at least 5% faster, accuracy tied
    for section, models in (
        ("precision", {"cnn", "tiny_cnn", "dense"}),
        ("precision_avx512_core_bf16", {"cnn", "tiny_cnn", "dense", "cnn_bn16"}),
    ):
        verdicts = re.findall(
            r"- `(\w+)`: mixed_bfloat16 runs an epoch ([\d.]+)x .*?, (tied|NOT tied) \(Welch", results_section(section)
        )
        assert {m for m, _, _ in verdicts} == models, section
        for model, speedup, tie in verdicts:
            picks = yaml.safe_load((ROOT / "conf" / "model" / f"{model}.yaml").read_text())["auto_precision"]
            assert (picks == "mixed_bfloat16") == (float(speedup) >= 1.05 and tie == "tied"), (section, model)
    assert "at least 5% faster" in flat("docs/explanation/performance.md")
    # steps_per_execution: 32, the default, is faster for the small models at batch 32 in the median of
    # the paired ratios, and slower in every pair for no case (performance.md: "large ones no slower")
    spe = table_rows(results_section("steps_per_execution"), "| model | batch |")
    assert yaml.safe_load((ROOT / "conf" / "trainer" / "default.yaml").read_text())["steps_per_execution"] == 32
    ratio = r"\*\*([\d.]+)\*\* \(([\d.]+)-([\d.]+)\)"
    ratios = {(row[0].strip("`"), row[1]): re.fullmatch(ratio, row[4]) for row in spe}
    assert {model for model, batch in ratios if batch == "32"} >= {"tiny_cnn", "mlp12", "dense", "cnn"}
    for (model, batch), found in ratios.items():
        median, low, _ = map(float, found.groups())
        assert low <= 1.0, (model, batch)
        if batch == "32" and model != "cnn":
            assert median < 0.9, model
    assert "slow phases" in results_section("steps_per_execution")
    assert "takes up to twice as long" in flat("docs/explanation/performance.md")
    # two jobs at once on two cores gain less than a third; another thread count changed some accuracies
    sweep = results_section("sweep_speed")
    speedups = [float(row[2].rstrip("x")) for row in table_rows(sweep, "| launcher |")]
    assert speedups[0] == 1.0 and all(s < 1.3 for s in speedups)
    identical = re.search(r"(\d) of 9 test accuracies are identical", sweep)
    assert identical and int(identical.group(1)) == 9
    assert "kept all nine test accuracies on the AMD EPYC, and changed two of them on an Intel Xeon" in flat(
        "docs/explanation/reproducibility.md"
    )
    # a shared study: three workers beat one; the server's backend matters little
    scale = results_section("scale_out")
    workers = {row[0]: float(row[3].rstrip("x")) for row in table_rows(scale, "| workers |")}
    assert workers["1"] == 1.0 and workers["3"] > 1.0
    rates = {row[0]: float(row[1]) for row in table_rows(scale, "| backend |")}
    assert abs(rates["sqlite"] - rates["postgresql"]) / rates["sqlite"] < 0.15
    for page in ("docs/how-to/scale-out/shared-study.md", "docs/how-to/scale-out/tracking-server.md"):
        assert "benchmarks/RESULTS.md" in text(page), page


def readme_performance() -> str:
    """README's Performance section: the one place outside RESULTS.md that quotes its figures."""
    return re.search(r"^## Performance\n(.*?)^## ", text("README.md"), flags=re.M | re.S).group(1)


def test_no_page_copies_a_measured_time_of_results_md():
    """Speed numbers live in benchmarks/RESULTS.md only: a page links it instead of copying them
    (the summary example's time line is that run's, checked against RESULTS.md above; README's
    Performance section quotes them, checked below)."""
    measured = set(re.findall(r"\b\d+\.\d+ s\b|\b\d+\.\d+x\b", RESULTS.read_text())) - {"1.00x"}
    for path in PAGES:
        body = re.sub(r"^time        .*$", "", path.read_text(), flags=re.M)
        if path.name == "README.md":
            body = body.replace(readme_performance(), "")
        copied = sorted(n for n in measured if re.search(rf"(?<![\d.]){re.escape(n)}", body))
        assert not copied, name(path)


def test_every_figure_readmes_performance_section_quotes_is_in_the_results_section_it_names():
    """README quotes the benchmarks in a few lines, each naming its RESULTS.md section in
    backquotes; every measured figure on such a line (a number with a decimal point: a time, a
    ratio, a percentage) is in that section."""
    lines = [line for line in readme_performance().split("\n- ") if re.search(r"\(`\w+`", line)]
    assert len(lines) >= 5
    for line in lines:
        section = results_section(re.search(r"\(`(\w+)`", line).group(1))
        figures = re.findall(r"(?<![\w.])\d+\.\d+(?![\d.])", " ".join(line.split()))
        assert figures, line
        for figure in figures:
            assert re.search(rf"(?<![\d.]){re.escape(figure)}(?![\d])", section), (figure, line[:80])


def test_the_tracking_servers_error_line_is_the_one_shown():
    """what-happens-when.md's line for a server that does not answer (test_tracking_store.py runs it
    through run.py; here the whole line, for the project folder the docs show)."""
    from mnistlab.core.errors import TrackingError
    from mnistlab.tracking.server import reachable_uri

    shown = next(
        line
        for line in block_starting("docs/explanation/what-happens-when.md", "error: tracking.uri=")
        if line.startswith("error: tracking.uri=")
    )
    port = free_port()
    with pytest.raises(TrackingError) as refused:
        reachable_uri(f"http://127.0.0.1:{port}", False, DOC_ROOT)
    assert f"error: {refused.value}".replace(f":{port}", f":{DOC_PORT}") == shown


def test_the_exit_codes_table_is_the_codes_the_errors_carry():
    """errors.md and lifecycle.md: 2 for a refused config or command line, 1 for a failure,
    130 / 143 for Ctrl-C / SIGTERM (test_interrupt_resume.py and test_ending.py check them for real)."""
    from mnistlab.core import exits
    from mnistlab.core.errors import ConfigError, DataError, MnistlabError, TrackingError

    assert (exits.EXIT_USAGE, exits.EXIT_FAILED, exits.EXIT_INTERRUPTED, exits.EXIT_TERMINATED) == (2, 1, 130, 143)
    assert exits.EXIT_CLOSED_PIPE == 141  # test_cli.py closes the pipe for real
    assert ConfigError.exit_code == 2 and DataError.exit_code == TrackingError.exit_code == MnistlabError.exit_code == 1
    rows = {row[0]: row[1] for row in table_rows(text("docs/explanation/errors.md"), "| exit code |")}
    assert set(rows) == {"0", "1", "2", "130 / 143", "141"}
    assert rows["130 / 143"].startswith("interrupted by Ctrl-C / terminated by SIGTERM")
    states = {row[0]: row[2] for row in table_rows(text("docs/explanation/lifecycle.md"), "| state |")}
    assert states == {"`FINISHED`": "0", "`KILLED`": "130 / 143", "`FAILED`": "1", "no run": "1 or 2"}


def test_the_requirements_the_docs_name_are_pyprojects():
    """Python 3.10+, the extras and the versions the scale-out pages name, the UI and docs ports."""
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["requires-python"] == ">=3.10"
    assert "Python 3.10+" in text("README.md") and "Python 3.10 or newer" in text("docs/tutorial/first-run.md")
    extras = project["optional-dependencies"]
    scale_out = text("docs/how-to/scale-out/index.md")
    for extra in ("distributed", "postgres", "slurm", "ray"):
        assert extra in extras and f"pip install -e '.[{extra}]'" in scale_out, extra
    assert {"hydra-ray-launcher==1.2.2", "joblib>=1.3,<1.6", "ray[default]>=2.52,<3"} <= set(extras["ray"])
    ray = text("docs/how-to/scale-out/ray.md")
    assert "hydra-ray-launcher 1.2.2, ray[default] 2.x" in ray and "keeps joblib below 1.6" in ray
    assert "(Ray 2.52+:" in ray
    dependencies = " ".join(project["dependencies"])
    assert "optuna>=4" in dependencies and "hydra-core>=1.3.2,<1.4" in dependencies and "mlflow>=3.17" in dependencies
    assert "on Optuna 4 and hydra-core 1.3" in flat("docs/how-to/hyperparameter-search.md")
    makefile = (ROOT / "Makefile").read_text()
    assert "--host 127.0.0.1 --port 5000" in makefile and "127.0.0.1:8000" in makefile
    from mnistlab.tracking.links import LOCAL_UI

    assert LOCAL_UI == "http://127.0.0.1:5000"
    assert "http://127.0.0.1:5000" in text("README.md") and "127.0.0.1:8000" in text("docs/index.md")


def test_ray_is_given_the_patience_and_settings_ray_md_says():
    """run.py sets RAY_NUM_REDIS_GET_RETRIES=3 unless set (Ray's default: 20); a node drains for up
    to 30 s; the plugin alone would reserve 75 MiB of object store."""
    from mnistlab.app.task import quiet_launcher_plugins

    page = flat("docs/how-to/scale-out/ray.md")
    with pytest.MonkeyPatch.context() as env:  # set, then unset: leaving it restores what was there
        env.setenv("RAY_NUM_REDIS_GET_RETRIES", "unset below")
        env.delenv("RAY_NUM_REDIS_GET_RETRIES")
        quiet_launcher_plugins()
        assert os.environ["RAY_NUM_REDIS_GET_RETRIES"] == "3"
    assert "run.py sets `RAY_NUM_REDIS_GET_RETRIES=3` unless your environment sets it" in page
    assert "(Ray's own default is 20 attempts" in page and "for up to 30 s;" in page
    constants = pytest.importorskip("ray._private.ray_constants")
    source = Path(constants.__file__).read_text()
    assert 'os.environ.get("RAY_NUM_REDIS_GET_RETRIES", "20")' in source
    assert re.search(r'"RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S", 30\.0', source)
    core = pytest.importorskip("hydra_plugins.hydra_ray_launcher._core")
    assert 'setdefault("object_store_memory", 78643200)' in Path(core.__file__).read_text()  # 75 MiB
    assert 78643200 == 75 * 2**20 and "(the plugin alone would set 75 MiB)" in page


def shown_pattern(shown: str) -> re.Pattern:
    """A message as a page quotes it, `...` standing for what it leaves out."""
    return re.compile(".*".join(map(re.escape, shown.split("..."))))


def test_a_corrupt_file_is_refused_with_the_line_configure_md_quotes(mnist_dir):
    """The message for a file whose checksum is not MNIST's (test_bad_data.py refuses a changed
    pixel for real; here its whole wording, against a sum that cannot match)."""
    from mnistlab.core.errors import DataError
    from mnistlab.data.mnist import MNIST_SHA256, load_mnist

    shown = re.search(r"\(`(\.\.\./t10k-images-idx3-ubyte\.gz: SHA-256 .*?)`\)", flat("docs/how-to/configure.md"))
    wrong = {**MNIST_SHA256, "t10k-images-idx3-ubyte": "0" * 64}
    with pytest.raises(DataError) as refused:
        load_mnist(mnist_dir, checksums=wrong)
    assert shown_pattern(shown.group(1)).fullmatch(str(refused.value)), str(refused.value)


def test_ctrl_c_in_a_search_ends_with_the_line_the_page_quotes(compose_cfg, tmp_path, monkeypatch):
    """hyperparameter-search.md: Ctrl-C during a trial ends the search with `error: interrupted; the
    finished trials are kept; rerun the same command to continue the search ...`, exit 130."""
    from mnistlab.app import task
    from mnistlab.core.exits import describe

    compose_cfg([])  # Hydra's config, as a job sees it

    def interrupted(_):
        raise KeyboardInterrupt

    monkeypatch.setattr(task, "validate", interrupted)
    monkeypatch.delenv(task.ONE_LINE_ERRORS, raising=False)
    trial = task.Job(str(tmp_path / "trial"), "x", True, None, object(), 0, 1)
    with pytest.raises(KeyboardInterrupt) as stopped:
        task._task(None, trial)
    message, code = describe(stopped.value)
    page = flat("docs/how-to/hyperparameter-search.md")
    shown = re.search(r"says `(error: interrupted; the finished trials are kept; .*?)` \(exit (\d+)\)", page)
    assert shown
    assert shown_pattern(shown.group(1)).fullmatch(f"error: {message}") and code == int(shown.group(2))


def test_what_use_a_model_md_says_test_predict_checks_is_what_it_checks():
    source = (ROOT / "tests" / "test_predict.py").read_text()
    assert "RENDERED = 500" in source and "rng.random() < 0.3" in source and "rng.integers(50, 91)" in source
    assert "abs(rendered_accuracy - raw_accuracy) <= 0.01" in source
    assert "abs(steps_accuracy - trained.test_accuracy) <= 0.005" in source
    page = flat("docs/how-to/use-a-model.md")
    assert "on 500 MNIST test images rendered as files" in page and "about 30% in colour" in page
    assert "within 1 point of the same 500 as raw arrays" in page and "at most 0.5 points" in page


def test_the_parameter_counts_in_the_model_files_comments_are_right():
    """conf/model/*.yaml's first comment line, which the generated configuration reference shows."""
    from mnistlab.config.layers import estimate

    counted = 0
    for path in sorted((CONF_DIR / "model").glob("*.yaml")):
        said = re.search(r"\(([\d,]+) parameters", path.read_text().split("\n", 1)[0])
        if said:
            layers = yaml.safe_load(path.read_text())["layers"]
            assert sum(p for p, _ in estimate(layers, (28, 28, 1))) == int(said.group(1).replace(",", "")), path.name
            counted += 1
    assert counted >= 5


def test_the_ids_and_links_the_pages_show_have_the_codes_form():
    """A sweep id is its start time and 4 hex digits (tracker.py); a run's UI link is run_page's."""
    from mnistlab.tracking.links import LOCAL_UI, run_page

    tracker = (ROOT / "src" / "mnistlab" / "sweeps" / "tracker.py").read_text()
    assert 'f"{datetime.now():%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"' in tracker
    ids = {i for path in PAGES for i in re.findall(r"\b(2026\d{4}-\d{6}-\w+)", path.read_text())}
    assert ids and all(re.fullmatch(r"\d{8}-\d{6}-[0-9a-f]{4}", i) for i in ids), ids
    link = f"{LOCAL_UI}/{run_page('1', '<run id>')}"
    assert link == "http://127.0.0.1:5000/#/experiments/1/runs/<run id>?workflowType=machine_learning"
    assert f"`{link}`" in text("docs/tutorial/mlflow-ui.md")


def test_baselines_md_quotes_its_measured_numbers_from_results_md():
    """docs/explanation/baselines.md: every accuracy it gives is either a published one (the
    presets' comments name them) or one that benchmarks/replicates.py wrote into RESULTS.md."""
    page = text("docs/explanation/baselines.md")
    measured = "".join(
        re.findall(r"<!-- replicates_\w+:start -->.*?<!-- replicates_\w+:end -->", RESULTS.read_text(), re.S)
    )
    published = "".join(p.read_text() for p in (ROOT / "experiments").glob("baseline_*.yaml"))
    replicates = (ROOT / "benchmarks" / "replicates.py").read_text()
    targets = {f"{float(t):.1%}" for t in re.findall(r'"best_\w+": \((0\.\d+),', replicates)}  # the issue's
    assert targets == {"99.4%", "99.5%", "99.1%"}
    for number in sorted(set(re.findall(r"\d+\.\d+%", page))):
        assert number in measured or number in published or number in targets, number
    # README's table of the best_* presets: every number from a replicates section (or a target), each
    # row's mean ± sd and interval from its own preset's section
    readme = table_rows(text("README.md"), "| preset | test accuracy over 5 seeds |")
    assert {row[0] for row in readme} == {"`best_tiny_cnn`", "`best_cnn`", "`best_dense`"}
    for preset, *cells in readme:
        for number in re.findall(r"\d+\.\d+%|p=[\d.e-]+", " ".join(cells)):
            assert number in measured or number in targets, (preset, number)
        spread = re.search(r"(\d+\.\d+% ± \d\.\d\d), 95% interval (\[[^]]+\])", cells[0])
        if spread:
            section = re.search(rf"<!-- replicates_{preset.strip('`')}:start -->.*?:end -->", measured, re.S).group(0)
            assert f"**{spread.group(1)}**" in section and spread.group(2) in section, preset
    for row in re.findall(r"^\| `(baseline_\w+)` \|.*?\*\*(\d+\.\d+% ± \d\.\d\d)\*\* \| (\[[^]]+\]) \|", page, re.M):
        preset, mean_sd, interval = row
        line = next(line for line in measured.splitlines() if line.startswith(f"| `{preset}` |"))
        assert mean_sd in line and interval in line, preset
