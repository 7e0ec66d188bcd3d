"""The ``mnistlab`` command and run.py's help as a user first meets them: real subprocesses."""

from __future__ import annotations

import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
import yaml

import mnistlab
from conftest import ROOT, RUN_PY, cli_env

pytestmark = pytest.mark.fast
MNISTLAB = Path(sys.executable).parent / "mnistlab"


def test_version_names_mnistlab_and_the_stack_as_installed():
    proc = subprocess.run([str(MNISTLAB), "--version"], capture_output=True, text=True, env=cli_env(), timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert metadata.version("mnistlab") == mnistlab.__version__  # pyproject and the package agree
    expected = ", ".join(f"{name} {metadata.version(name)}" for name in ("hydra-core", "keras", "tensorflow"))
    assert proc.stdout.startswith(f"mnistlab {mnistlab.__version__} ({expected}, mlflow ")
    assert proc.stdout.count("\n") == 1  # one line, whatever the terminal's width


def test_run_py_help_starts_with_the_version_and_lists_the_commands():
    proc = subprocess.run(
        [sys.executable, str(RUN_PY), "--help"], cwd=ROOT, capture_output=True, text=True, env=cli_env(), timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"mnistlab {mnistlab.__version__}: train and evaluate")
    help_text = subprocess.run([str(MNISTLAB), "--help"], capture_output=True, text=True, timeout=60).stdout
    for command in ("compare", "continue", "predict", "preprocess", "promote"):
        assert f"    {command}" in help_text


@pytest.mark.parametrize("flag", ["--help", "--hydra-help"])
def test_the_help_is_hydras_own_with_each_group_listed_once(flag):
    # run.py computes each config group's listing once for the help (task.list_config_groups_once);
    # with Hydra's own listing, call after call, the text is the same
    def help_text(own_listing: bool) -> str:
        code = (
            "import runpy, sys; from mnistlab.app import task; "
            + ("task.list_config_groups_once = lambda: None; " if own_listing else "")
            + f"sys.argv = ['run.py', '{flag}']; runpy.run_path('run.py', run_name='__main__')"
        )
        proc = subprocess.run(
            [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, env=cli_env(), timeout=60
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        return proc.stdout

    once = help_text(own_listing=False)
    assert "== Configuration groups ==" in once or "hydra/launcher:" in once
    assert once == help_text(own_listing=True)


@pytest.mark.parametrize("mnistlab", [False, True])
def test_a_closed_pipe_stops_the_output_without_an_error(tmp_path, mnistlab):
    """`python run.py --help | head`, `mnistlab preprocess digit.png | head`: the reader is gone
    before the text is written (its end of the pipe is closed here first); no error line about
    it, and the exit code of a Unix tool it kills."""
    from PIL import Image

    digit = Image.new("L", (28, 28))
    digit.paste(255, (12, 4, 16, 24))  # a white stroke on black: a 1
    digit.save(tmp_path / "digit.png")
    command = [str(MNISTLAB), "preprocess", str(tmp_path / "digit.png")] if mnistlab else [sys.executable, str(RUN_PY)]
    command += [] if mnistlab else ["--help"]
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        proc = subprocess.run(command, cwd=ROOT, stdout=write_end, stderr=subprocess.PIPE, text=True, env=cli_env())
    finally:
        os.close(write_end)
    assert (proc.returncode, proc.stderr) == (141, ""), proc.stderr


def test_help_lists_exactly_the_config_groups_there_are_and_the_launchers():
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    proc = subprocess.run(
        [sys.executable, str(RUN_PY), "--help"], cwd=ROOT, capture_output=True, text=True, env=cli_env(), timeout=60
    )
    section = proc.stdout.split("== Configuration groups ==\n", 1)[1].split("== Config ==", 1)[0]
    listed = dict(line.split(": ", 1) for line in section.splitlines()[1:] if ": " in line)
    launchers = listed.pop("hydra/launcher").split("   (", 1)[0].split(", ")
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        loader = GlobalHydra.instance().config_loader()

        def groups(parent: str = "") -> list[str]:
            found = []
            for name in loader.list_groups(parent):
                group = f"{parent}/{name}" if parent else name
                if group != "hydra":
                    found += [group, *groups(group)]
            return found

        real = {g: ", ".join(sorted(loader.get_group_options(g))) for g in groups() if loader.get_group_options(g)}
        launcher_options = set(loader.get_group_options("hydra/launcher"))
    assert listed == real
    # every group listed is one the config chooses from (a folder inside a group's folder is not one)
    defaults = yaml.safe_load((ROOT / "conf" / "config.yaml").read_text())["defaults"]
    assert set(listed) == {next(iter(d)) for d in defaults if isinstance(d, dict)}
    ours = {p.stem for p in (ROOT / "conf" / "hydra" / "launcher").glob("*.yaml")} | {"basic", "dry_run"}
    assert set(launchers) == ours and ours <= launcher_options


@pytest.mark.parametrize(
    ("typed", "offered"), [("mod", "model="), ("optimizer.l", "optimizer.lr="), ("model=tiny", "model=tiny_cnn")]
)
def test_shell_completion_as_the_docs_install_it_completes_groups_options_and_keys(typed, offered):
    line = f"python run.py {typed}"
    proc = subprocess.run(
        [sys.executable, str(RUN_PY), "-sc", "query=bash"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**cli_env(), "COMP_LINE": line, "COMP_POINT": str(len(line))},
        timeout=60,
    )
    assert offered in proc.stdout.split(), proc.stdout + proc.stderr
