"""Hostile config: random command-line overrides never end in a traceback or a RUNNING run.

What this proves: whatever a user types after ``python run.py`` (random keys, existing keys with
values of the wrong type, huge and negative numbers, nan and inf, empty strings, unicode, lists,
dicts, Hydra grammar such as ``choice(...)`` or ``${...}``, ``+key``/``++key``/``~key``, config
groups with existing and missing options, ``resume`` and ``tracking.uri`` values, a few of Hydra's
own keys, with or without ``--cfg job``), the command either

* exits 0, and then it trained a run that is FINISHED in the store and printed its summary (or, with
  ``--cfg job``, printed the config and trained nothing), or
* exits non-zero with stderr being exactly one line that starts with ``error: `` (TensorFlow's C++
  start-up lines aside, as in ``conftest.error_lines``), no ``Traceback`` anywhere, and the line is not
  the last resort for an unexpected exception (``TypeError: ... (traceback in ...)``),

and after every case no run in any MLflow store under tmp is left RUNNING.

How:

* In-process, for speed (``test_random_overrides_fail_in_one_line_or_run``): hypothesis draws
  ``HOSTILE_EXAMPLES`` cases (default 240; at least 200 in CI), derandomized and without an example
  database, so CI runs the same cases every time (``HOSTILE_RANDOM=1`` draws new ones and shrinks
  failures: for hunting bugs locally). Each goes through the real entry point, ``cli.entry(run.main)``
  with ``sys.argv`` set, exactly what ``python run.py`` calls; stdout and stderr are read at the file
  descriptor level (capfd), ``SystemExit`` gives the exit code, anything else escaping counts as a
  traceback; Hydra's global state, the environment, argv and the working directory are restored
  between cases. A case refused by Hydra or by validation costs 0.01-0.5 s (validation imports neither
  TensorFlow nor MLflow); a few percent are valid and train, 4-6 s each (plus TensorFlow's import once).
* Every case starts with safe base overrides (``BASE``: ``model=mlp12 data.limit=64 trainer.epochs=1
  ...``; with ``resume``, only what resume allows beside it) that its random overrides may replace.
  So that a valid case stays a tiny run, the runner is wrapped to train at most ``MAX_EPOCHS`` epochs
  on at most ``MAX_LIMIT`` images with at most a tenth held out, and to read the real MNIST files when
  a case removes ``data.dir`` (null would download them). Only the amount of training changes: the
  config is otherwise the one the case produced and validated.
* Real ``python run.py`` subprocesses (``test_subprocess_matches_in_process``): a fixed sample of
  cases, one of each kind of outcome and several that found bugs, gives the same exit code and the
  same ``error:`` line (or the same summary) as the in-process harness, so what the harness sees is
  what a user gets.
* ``REGRESSIONS``: each bug this test found, as a plain example with the line it now gives.

On this 2-core VM the file takes about 2 minutes (1:52 measured, idle; up to 3 minutes while other
suites ran): the 240 in-process cases 65 s, the subprocess comparison 27 s (one of its cases trains),
the regressions 15 s.

Nothing is written outside pytest's tmp folder: the store (``MLFLOW_TRACKING_URI``), ``root_dir``
(``MNISTLAB_ROOT``) and the working directory are there; generated values contain no ``/`` or ``..``
and read no environment variable that points elsewhere, so relative paths from ``tracking.uri``,
``root_dir`` or ``hydra.run.dir`` stay inside it; Hydra keys that would start a sweep or run code
(``hydra.mode``, ``hydra.callbacks``, ``hydra.job.env_set``, ...) are not drawn.
"""

from __future__ import annotations

import copy
import importlib.util
import os
import re
import sqlite3
import subprocess
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hypothesis import HealthCheck, Phase, event, given, note, settings
from hypothesis import strategies as st
from omegaconf import DictConfig, ListConfig, OmegaConf

from conftest import CONF_DIR, ROOT, RUN_PY, cli_env
from mnistlab.app import task as cli
from mnistlab.config.optimizers import OPTIMIZERS
from mnistlab.config.schedulers import SCHEDULERS

EXAMPLES = int(os.environ.get("HOSTILE_EXAMPLES", "240"))
#: HOSTILE_RANDOM=1: new cases on every run (to look for more bugs); CI always runs the same ones
DERANDOMIZE = not os.environ.get("HOSTILE_RANDOM")
MAX_EPOCHS, MAX_LIMIT, MAX_VAL_SPLIT = 2, 128, 0.1

#: safe defaults every case starts with; the random overrides come after them and may replace them
BASE = ("model=mlp12", "data.limit=64", "trainer.epochs=1", "trainer.verbose=0", "tracking.log_model=false")
RESUME_BASE = ("trainer.verbose=0",)
INFO_FLAGS = ("--cfg", "--help", "--info", "--hydra-help")
#: how cli.describe reports an exception nobody expected (its traceback saved or suppressed)
UNEXPECTED = re.compile(r"\((traceback in .*|set HYDRA_FULL_ERROR=1 for the traceback)\)$")
#: TensorFlow's C++ start-up lines, printed before its logging is set up (as conftest.error_lines)
TF_NOISE = ("WARNING: All log messages before absl::InitializeLog()", "I0000 ", "E0000 ", "W0000 ")


# ---------------------------------------------------------------------------------------------
# The keys: every path of the real composed config, the config groups, Hydra's safe keys, random


def _paths(node, prefix: str = "") -> list[str]:
    """Every dotted path in ``node`` (inner nodes and leaves, list items by index), unresolved."""
    paths = []
    items = node.items_ex(resolve=False) if isinstance(node, DictConfig) else enumerate(node._iter_ex(resolve=False))
    for key, value in items:
        path = f"{prefix}{key}"
        paths.append(path)
        if isinstance(value, (DictConfig, ListConfig)):
            paths += _paths(value, path + ".")
    return paths


def _config_paths() -> tuple[list[str], dict[str, list[str]]]:
    """(the dotted keys of the config under several group choices, each group's options)."""
    choices = [
        [],
        ["model=cnn_bn"],
        ["optimizer=sgd", "scheduler=cosine"],
        ["optimizer=rmsprop", "scheduler=step"],
        ["scheduler=onecycle", "callbacks=early_stopping"],
        ["scheduler=exponential", "loss=mse"],
    ]
    keys: set[str] = set()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            for overrides in choices:
                cfg = compose("config", overrides=list(overrides))
                keys.update(_paths(cfg))
    finally:
        GlobalHydra.instance().clear()
    groups = {p.name: sorted(f.stem for f in p.glob("*.yaml")) for p in CONF_DIR.iterdir() if p.is_dir()}
    groups["hydra/launcher"] = ["basic", "joblib"]
    groups["hydra/job_logging"] = ["default", "disabled", "none", "stdout"]
    return sorted(keys), groups


CONFIG_KEYS, GROUPS = _config_paths()
#: Hydra's own keys that are safe to throw values at: none starts a sweep, runs code or sets variables
HYDRA_KEYS = [
    "hydra.job.config.override_dirname.exclude_keys",
    "hydra.job_logging.root.level",
    "hydra.verbose",
    "hydra.hydra_logging.root.level",
    "hydra.job.chdir",
    "hydra.job.name",
    "hydra.run.dir",
    "hydra.output_subdir",
    "hydra.job.config.override_dirname.kv_sep",
    "hydra.job.config.override_dirname.item_sep",
    "hydra.job.override_dirname",
]


# ---------------------------------------------------------------------------------------------
# The values, as the text of the override


def _quoted(text: str, quote: str = "'") -> str:
    return quote + text.replace("\\", "\\\\").replace(quote, "\\" + quote) + quote


# printable text of any script, without NUL (impossible in argv), "/", "$" and "..": no absolute or
# parent paths and no environment lookups can be made by chance
TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00/$"), max_size=12).filter(
    lambda s: ".." not in s
)
HUGE = [2**31 - 1, 2**31, 2**32, 2**53 + 1, 2**63 - 1, 2**63, -(2**63) - 1, 10**23, 10**400]
INTS = st.one_of(st.integers(-3, 70), st.sampled_from(HUGE), st.sampled_from(HUGE).map(lambda n: -n))
FLOATS = st.one_of(st.floats(), st.sampled_from([1e308, -1e308, 5e-324, 1e-7, 0.5, 0.999999, 1.0]))
NAMED = {
    "bool": ["true", "false", "True", "FALSE", "yes", "on"],
    "null": ["null", "NULL", "None", "~"],
    "empty": ["", "''", '""', " ", "' '"],
    "grammar": [
        "choice(1,2)",
        "range(3)",
        "range(1,5,2)",
        "interval(0,1)",
        "glob(*)",
        "shuffle([1,2])",
        "sort([3,1])",
        "int(2.5)",
        "float(1)",
        "str(3)",
        "bool(0)",
        "json_str({a:1})",
        "tag(x,1)",
        "extend_list(1)",
        "nope(1)",
        "choice()",
        "1,2",
        "[1,2",
        "{a:",
        "a=b",
        "a b",
        "\\,",
        "'",
        '"',
        "(",
        ")",
        "*",
        "@",
        "#",
        ":",
        "\\",
        "=",
        "[]",
        "{}",
        "[[]]",
        "{a:{b:{c:[]}}}",
        "\t",
        "\n",
        "1_000",
        "0x10",
        "0o7",
        "1e3",
        "-0",
        "+1",
        ".5",
        "5.",
        "1e",
        "--",
        "-",
        "nan",
        "-inf",
        "+inf",
    ],
    "interpolation": [
        "${seed}",
        "${nope}",
        "${oc.env:MNISTLAB_NO_SUCH_VAR}",
        "${oc.env:MNISTLAB_NO_SUCH_VAR,3}",
        "'${oc.decode:\"{a: 1}\"}'",
        "${now:%Y}",
        "${hydra:job.name}",
        "${hydra:nope}",
        "${oc.create:{a:1}}",
        "${oc.select:nope,1}",
        "${trainer.epochs}",
        "${data}",
        "${trainer}",
        "${model.layers}",
        "${.}",
        "${..seed}",
        "${",
        "}",
        "${oc.env:}",
        "${oc.nope:1}",
        "${oc.decode:[1}",
        "${oc.deprecated:seed}",
        "${oc.dict.keys:trainer}",
        "${oc.dict.values:trainer}",
        "'${seed}'",
        "${seed} ${seed}",
        "\\${seed}",
        "${oc.env:MNISTLAB_ROOT}",
        "${oc.env:MLFLOW_TRACKING_URI}",
        "${hydra:runtime.output_dir}",
    ],
    "resume": [
        "0123456789abcdef0123456789abcdef",
        "ffffffffffffffffffffffffffffffff",
        ".",
        "outputs",
        "runs",
        "mlflow.db",
        "''",
        "null",
    ],
    # no "/": relative paths land in tmp; no "databricks" (see REGRESSIONS)
    "tracking.uri": [
        "abc",
        "a:b",
        "http:x",
        "https:x:0",
        "http:",
        "file:x",
        "sqlite:x",
        "sqlite:",
        "mlflow.db",
        "postgresql:x",
        "mlflow-artifacts:x",
    ],
}
SCALARS = st.one_of(
    INTS.map(str),
    FLOATS.map(repr),
    st.sampled_from(NAMED["bool"] + NAMED["null"] + NAMED["empty"]),
    TEXT.map(_quoted),
    TEXT.map(lambda s: _quoted(s, '"')),
    TEXT,  # unquoted: mostly refused by Hydra's grammar
)
COLLECTIONS = st.recursive(
    SCALARS.filter(lambda s: s.strip() not in ("", "'", '"')),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3).map(lambda xs: "[" + ",".join(xs) + "]"),
        st.dictionaries(st.from_regex(r"\A[a-z_][a-z0-9_]{0,5}\Z"), inner, max_size=3).map(
            lambda d: "{" + ",".join(f"{k}:{v}" for k, v in d.items()) + "}"
        ),
    ),
    max_leaves=6,
)
VALUES = st.one_of(SCALARS, COLLECTIONS, *(st.sampled_from(v) for v in NAMED.values()))

RANDOM_KEYS = st.one_of(
    st.from_regex(r"\A[a-z_][a-z0-9_]{0,8}(\.[a-z0-9_]{1,8}){0,3}\Z"),  # new keys, valid names
    st.sampled_from(CONFIG_KEYS).flatmap(  # a new key under an existing one
        lambda parent: st.from_regex(r"\A[a-z_]{1,6}\Z").map(lambda child: f"{parent}.{child}")
    ),
    TEXT.filter(lambda s: s and s.lstrip()[:1] not in ("-", "")),  # anything at all (not a flag)
)
# mostly keys that exist, whose values are checked (random keys are refused at once); Hydra's keys
# rarely: most of their values are valid, and a valid case trains
KEYS = st.one_of(*[st.sampled_from(CONFIG_KEYS)] * 8, *[RANDOM_KEYS] * 3, st.sampled_from(HYDRA_KEYS))
#: the bad inputs of the reliability issue (splits that leave no images, models too big to build,
#: misspelt layers and arguments, a sqlite path into a missing folder, credentials in a server's URI)
KNOWN_BAD = [
    "data.val_split=0.99999",
    "data.val_split=0.000001",
    "data.val_split=0.9999999999",
    "model.layers.3.units=1000000000",
    "model.layers.0.filters=100000",
    "trainer.batch_size=100000000",
    "model.layers.0.type=Dens",
    "model.layers.0.type=conv2d",
    "model.layers.3.unitz=10",
    "+model.layers.3.kernel=3",
    "tracking.uri=sqlite:///./mlfow/x.db",
    "tracking.uri=sqlite:///./missing/deeper/x.db",
    "tracking.uri=http://user:pass@127.0.0.1:9",
]


@st.composite
def overrides(draw) -> str:
    """One command-line override: ``key=value``, ``+key=value``, ``++key=value``, ``~key[=value]``,
    ``group=option``, or one of the known bad inputs."""
    kind = draw(st.sampled_from(["key", "key", "key", "key", "group", "known"]))
    if kind == "known":
        return draw(st.sampled_from(KNOWN_BAD))
    if kind == "group":
        group = draw(st.sampled_from(sorted(GROUPS)))
        # an existing option last: hypothesis favours the first branches, and a valid case trains
        option = draw(st.one_of(VALUES, TEXT, st.sampled_from(GROUPS[group] or ["none"])))
        prefix = draw(st.sampled_from(["", "", "+", "~"]))
        return f"{prefix}{group}" if prefix == "~" and draw(st.booleans()) else f"{prefix}{group}={option}"
    key = draw(KEYS)
    prefix = draw(st.sampled_from(["", "", "", "+", "++", "~"]))
    if prefix == "~" and draw(st.booleans()):
        return f"~{key}"
    value = draw(st.sampled_from(NAMED[key]) if key in ("resume", "tracking.uri") and draw(st.booleans()) else VALUES)
    return f"{prefix}{key}={value}"


CASES = st.tuples(
    st.lists(overrides(), min_size=1, max_size=3),
    st.sampled_from([(), (), (), (), (), (), (), (), ("--cfg", "job"), ("--cfg", "job", "--resolve")]),
).map(lambda t: [*t[0], *t[1]])


# ---------------------------------------------------------------------------------------------
# Running a case: in-process (the real entry point) or as a real `python run.py` subprocess


@dataclass(frozen=True)
class Outcome:
    code: int
    out: str
    err: str

    @property
    def lines(self) -> list[str]:
        """stderr without TensorFlow's C++ start-up noise (conftest.error_lines)."""
        return [line for line in self.err.splitlines() if line.strip() and not line.startswith(TF_NOISE)]


def _load_run_main():
    """run.py's @hydra.main function, found by Hydra as if run.py were __main__ (``conf/`` beside it)."""
    spec = importlib.util.spec_from_file_location("mnistlab_run_py", RUN_PY)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # under another name: its `if __name__ == "__main__"` stays off
    module.main.__wrapped__.__module__ = "__main__"  # Hydra then takes config_path relative to run.py
    return module.main


RUN_MAIN = _load_run_main()


class Harness:
    """One folder in tmp holding the store, root_dir, the working directory and every output."""

    def __init__(self, tmp: Path, capfd=None) -> None:
        self.tmp, self.capfd = tmp, capfd
        self.cwd = tmp / "cwd"
        self.cwd.mkdir(parents=True, exist_ok=True)
        self.store = f"sqlite:///{tmp / 'store' / 'mlflow.db'}"
        self.env = cli_env(self.store)  # MNIST_DIR, MLFLOW_TRACKING_URI, MNISTLAB_ROOT=<tmp>/store

    def args(self, case: list[str]) -> list[str]:
        """The base overrides, then the case's; with resume, only those allowed beside it (else every
        resume would be refused for them)."""
        resuming = any(re.match(r"\+{0,2}resume=", override) for override in case)
        return [*(RESUME_BASE if resuming else BASE), *case]

    def in_process(self, case: list[str]) -> Outcome:
        saved_env, saved_argv, saved_cwd = dict(os.environ), sys.argv, os.getcwd()
        for key in set(os.environ) - set(self.env):  # changed in place: MLflow's threads read os.environ
            del os.environ[key]
        os.environ.update(self.env)
        os.chdir(self.cwd)
        sys.argv = [str(RUN_PY), *self.args(case)]
        GlobalHydra.instance().clear()
        code, extra = 0, ""
        try:
            cli.entry(RUN_MAIN, root_dir=ROOT)
        except SystemExit as exc:  # as the interpreter turns it into an exit code
            if exc.code is None or isinstance(exc.code, int):
                code = exc.code or 0
            else:
                code, extra = 1, f"{exc.code}\n"
        except BaseException as exc:  # what would escape `python run.py`: a traceback, exit code 1
            code, extra = 1, "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        finally:
            GlobalHydra.instance().clear()
            sys.argv = saved_argv
            os.chdir(saved_cwd)
            for key in set(os.environ) - set(saved_env):
                del os.environ[key]
            os.environ.update(saved_env)
        out, err = self.capfd.readouterr()
        return Outcome(code, out, err + extra)

    def subprocess(self, case: list[str]) -> Outcome:
        proc = subprocess.run(
            [sys.executable, str(RUN_PY), *self.args(case)],
            cwd=self.cwd,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        return Outcome(proc.returncode, proc.stdout, proc.stderr)

    def runs(self) -> dict[str, str]:
        """{run id: status} of every run in every MLflow store under tmp (sqlite files and file stores)."""
        found = {}
        for db in self.tmp.rglob("*.db"):
            try:
                with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
                    found.update(conn.execute("SELECT run_uuid, status FROM runs").fetchall())
            except sqlite3.Error:  # not (yet) an MLflow database
                continue
        for meta in self.tmp.rglob("meta.yaml"):
            text = meta.read_text(errors="replace")
            run_id, status = re.search(r"^run_id: (\S+)", text, re.M), re.search(r"^status: (\d+)", text, re.M)
            if run_id and status:
                found[run_id.group(1)] = {
                    "1": "RUNNING",
                    "2": "SCHEDULED",
                    "3": "FINISHED",
                    "4": "FAILED",
                    "5": "KILLED",
                }.get(status.group(1), status.group(1))
        return found


def check(outcome: Outcome, case: list[str], runs_before: dict[str, str], runs_after: dict[str, str]) -> None:
    """The property, for one case."""
    shown = f"case: {case}\nexit code {outcome.code}\nstderr:\n{outcome.err[-3000:]}\nstdout:\n{outcome.out[-1500:]}"
    assert "Traceback" not in outcome.err + outcome.out, shown
    running = [run_id for run_id, status in runs_after.items() if status == "RUNNING"]
    assert not running, f"runs left RUNNING: {running}\n{shown}"
    if outcome.code != 0:
        assert len(outcome.lines) == 1 and outcome.lines[0].startswith("error: "), shown
        # nor an unexpected exception put on one line (cli.describe's last resort): a crash all the same
        assert not UNEXPECTED.search(outcome.lines[0]), shown
        return
    if any(flag in case for flag in INFO_FLAGS):
        assert outcome.out.strip(), shown  # it printed the config (or the help)
        assert runs_after == runs_before, shown  # and trained nothing
        return
    assert "test        accuracy" in outcome.out, shown
    run_id = re.search(r"^MLflow run  ([0-9a-f]{32}) ", outcome.out, re.M)
    assert run_id and runs_after.get(run_id.group(1)) == "FINISHED", f"{runs_after}\n{shown}"


# ---------------------------------------------------------------------------------------------
# Fixtures


@pytest.fixture
def harness(tmp_path, capfd, monkeypatch, mnist_dir) -> Harness:
    """The in-process harness, with the runner made cheap: a valid case trains a tiny run."""
    from absl import logging as absl_logging

    from mnistlab import runner  # TensorFlow and MLflow, once for the whole test

    # absl's handler keeps the sys.stderr of whichever test imported TensorFlow (pytest's capture
    # file), and Hydra's logging set-up closes every existing handler: absl then closes that file
    # unless it is a real stderr, and pytest's capture breaks ("I/O operation on closed file")
    absl_logging.get_absl_handler().python_handler.stream = sys.__stderr__
    real_run = runner.run

    def tiny_run(cfg: DictConfig, **kwargs):
        small = copy.deepcopy(cfg)
        OmegaConf.set_readonly(small, False)
        small.trainer.epochs = min(small.trainer.epochs, MAX_EPOCHS)
        small.data.limit = min(small.data.limit or MAX_LIMIT, MAX_LIMIT)
        small.data.val_split = min(small.data.val_split, MAX_VAL_SPLIT)
        if small.data.dir is None:  # null would download MNIST through Keras
            small.data.dir = str(mnist_dir)
        OmegaConf.set_readonly(small, True)
        return real_run(small, **kwargs)

    monkeypatch.setattr(runner, "run", tiny_run)
    return Harness(tmp_path, capfd)


# ---------------------------------------------------------------------------------------------
# The tests

NO_VAR = "${oc.env:MNISTLAB_NO_SUCH_VAR}"
#: every case that found a bug, and the line it now gives ("" = it trains)
REGRESSIONS = [
    # None where the schema has choices: passed validation, then int(None) in Keras's fit (TypeError, exit 1)
    (["trainer.verbose=null"], 2, "error: trainer.verbose=None: must be one of auto, 0, 1, 2"),
    # a group given a number, null or a list: Hydra's ValueError/TypeError came out as exit 1, "ValueError:
    # ... (set HYDRA_FULL_ERROR=1 for the traceback)", with Hydra's Override(...) repr for deletions
    (["callbacks=0"], 2, "error: callbacks=0: Config group override must be a string or a list. Got int"),
    (["optimizer=null"], 2, "error: optimizer=null: Config group override must be a string or a list. Got NoneType"),
    (["~loss=1.0"], 2, "error: ~loss=1.0: Config group override deletion value must be a string"),
    (["model=[1]"], 2, "error: Hydra cannot use this command line: argument of type 'int' is not iterable."),
    # Hydra's own logging keys: logging's ValueError/TypeError came out as exit 1 with the HYDRA_FULL_ERROR hint
    (
        ["hydra.job_logging.root.level=nope"],
        2,
        "error: Hydra cannot use this command line: Unable to configure root logger. Unknown level: 'nope'.",
    ),
    (["hydra.verbose=[1]"], 2, "error: Hydra cannot use this command line: A logger name must be a string."),
    # a key under a list that is not an index: OmegaConf's ValueError, through Hydra, came out as exit 1
    (["model.layers.abc=1"], 2, "error: model.layers.abc=1: invalid literal for int() with base 10: 'abc'"),
    # a mapping or a list as optimizer.name or scheduler.name: "TypeError: unhashable type: 'dict'", exit 1
    (
        ["+optimizer.name.x=0"],
        2,
        f"error: optimizer.name={{'x': 0}}: unknown optimizer; choose one of {', '.join(OPTIMIZERS.names())}",
    ),
    (
        ["scheduler.name=[1]"],
        2,
        f"error: scheduler.name=[1]: unknown scheduler; choose one of {', '.join(SCHEDULERS.names())}",
    ),
    # a scalar where a mapping belongs: "expected a value of another type", without the key
    (["model.layers.0=1"], 2, "error: model.layers.0=1: expected a mapping"),
    (["data.augment=1"], 2, "error: data.augment=1: expected a mapping"),
    (["+tracking.tags.team=null"], 2, "error: tracking.tags.team=None: expected a string"),
    # counts beyond TensorFlow's int32: failed after the data was loaded, with a traceback file and
    # warnings on stderr (batch size, steps), or blamed a layer (threads: "Keras refused this Dense")
    (
        ["trainer.batch_size=9223372036854775808"],
        2,
        "error: trainer.batch_size=9223372036854775808: must be <= 2147483647",
    ),
    (
        ["trainer.steps_per_execution=9223372036854775808"],
        2,
        "error: trainer.steps_per_execution=9223372036854775808: must be <= 2147483647",
    ),
    (["trainer.epochs=9223372036854775808"], 2, "error: trainer.epochs=9223372036854775808: must be <= 2147483647"),
    (
        ["scheduler=step", "scheduler.every_epochs=9223372036854775808"],
        2,
        "error: scheduler.every_epochs=9223372036854775808: must be <= 2147483647",
    ),
    (
        ["trainer.threads=9223372036854775808"],
        2,
        "error: trainer.threads=9223372036854775808: must be auto (cores / parallel jobs) or an integer >= 1 "
        "(at most 2147483647)",
    ),
    # a model name TensorFlow refuses as a name scope: exit 1, "ValueError: ... is not a valid root scope name"
    (["model.name=_a"], 2, "error: model.name='_a': must start with a letter, a digit or '.'"),
    # an empty data.dir was the current directory: "error: .: missing MNIST file(s) ...", exit 1
    (
        ["data.dir="],
        2,
        "error: data.dir='': must not be empty (the folder with the MNIST files, or null to download them)",
    ),
    # MLflow's own WARNING (Databricks SDK credentials) came before our line, from tracking.open_experiment
    (["tracking.uri=databricks"], 1, "error: tracking.uri='databricks': cannot open the MLflow store"),
    # an override whose text is an interpolation that cannot resolve: Hydra's "Error executing job with
    # overrides: [...]" came before our line (cli.task resolved hydra.job.override_dirname)
    ([f"seed={NO_VAR}"], 2, "error: seed"),
    # a valid value the wrong way round (a tag that is not a string): it must still train
    (["+tracking.tags.team=[1,2]"], 0, ""),
]


def _normalised(line: str) -> str:
    """An error line without what differs between two runs of a case (run folders, run ids)."""
    return re.sub(r"\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d-\d+|[0-9a-f]{32}", "<...>", line)


@pytest.mark.parametrize("case,code,line", REGRESSIONS)
def test_regressions(harness, case, code, line):
    before = harness.runs()
    outcome = harness.in_process(case)
    check(outcome, case, before, harness.runs())
    assert outcome.code == code, outcome.err[-2000:]
    assert not line or outcome.lines[0].startswith(line), outcome.lines


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=DERANDOMIZE,
    database=None,
    print_blob=True,
    # no shrinking in CI: a failing case is a short list of overrides already, and shrinking one that
    # trains can take hypothesis's whole five minutes; HOSTILE_RANDOM=1 shrinks
    phases=[Phase.explicit, Phase.generate, *([Phase.shrink] if not DERANDOMIZE else [])],
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
    ],
)
@given(case=CASES)
def test_random_overrides_fail_in_one_line_or_run(harness, case):
    note(f"python run.py {' '.join(BASE)} {' '.join(case)}")
    before = harness.runs()
    outcome = harness.in_process(case)
    event("trained" if outcome.code == 0 and "test        accuracy" in outcome.out else f"exit {outcome.code}")
    check(outcome, case, before, harness.runs())


#: cases run both ways: the base case (trains), `--cfg job` with a bad value (prints it), and a failure
#: of each kind: Hydra's grammar, Hydra's composition, Hydra's plain ValueError, our validation
SUBPROCESS_CASES = [
    [],
    ["trainer.epochs=abc", "--cfg", "job"],
    ["+a.b=\u00e9"],
    ["model=nope"],
    ["trainer.epochz=1"],
    ["callbacks=0"],
    ["trainer.verbose=null"],
    ["data.augment=1"],
    ["trainer.batch_size=9223372036854775808"],
    ["optimizer.lr=nan", "seed=-1"],
    ["hydra.verbose=[1]"],
    ["model.name='\u00e9'"],
]


def test_subprocess_matches_in_process(harness):
    """The in-process harness gives what `python run.py` gives: the same exit code, the same error line
    (or a summary of the same model), and the property holds for the real command too."""
    for case in SUBPROCESS_CASES:
        before = harness.runs()
        real = harness.subprocess(case)
        check(real, case, before, harness.runs())
        before = harness.runs()
        here = harness.in_process(case)
        check(here, case, before, harness.runs())
        assert real.code == here.code, (case, real.err[-2000:], here.err[-2000:])
        if real.code:
            assert _normalised(real.lines[0]) == _normalised(here.lines[0]), case
        elif "--cfg" in case:
            assert real.out == here.out, case
        else:  # the summary's first line: "model       mlp12 (9,862 parameters), adam, ..."
            assert _summary_model(real.out) == _summary_model(here.out) is not None, case


def _summary_model(stdout: str) -> str | None:
    return next((line for line in stdout.splitlines() if line.startswith("model       ")), None)
