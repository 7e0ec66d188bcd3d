"""The code's shape, checked: the layer contract (lint-imports, which sees imports inside functions
too), the linter and formatter, and the "Project layout" page (docs/explanation/layout.md) naming
exactly the packages there are."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT

pytestmark = pytest.mark.fast  # make test-fast: no training, no subprocess runs of training

BIN = Path(sys.executable).parent
PACKAGES = sorted(p.parent.name for p in (ROOT / "src" / "mnistlab").glob("*/__init__.py"))


def run(*command: str) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_the_import_contracts_hold():
    proc = run(str(BIN / "lint-imports"), "--no-cache")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "0 broken" in proc.stdout


@pytest.mark.parametrize("command", [["check"], ["format", "--check"]], ids=["lint", "format"])
def test_ruff_passes(command):
    proc = run(str(BIN / "ruff"), *command, "src", "tests", "benchmarks", "docs_hooks", "run.py")  # as make lint
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]


def test_every_package_says_what_it_owns_and_the_layout_page_lists_it():
    page = (ROOT / "docs" / "explanation" / "layout.md").read_text()
    layout = page[page.index("# Project layout") :]
    listed = re.findall(r"^  (\w+)/ ", layout, flags=re.M)
    assert sorted(listed) == PACKAGES
    layers = re.search(r"layers = \[(.*?)\]", (ROOT / "pyproject.toml").read_text(), flags=re.S).group(1)
    in_contract = sorted(re.findall(r"mnistlab\.(\w+)", layers))
    assert in_contract == PACKAGES  # every package has its place in the layer order
    assert listed == [name for name in re.findall(r"mnistlab\.(\w+)", layers)]  # the page lists them in that order
    for package in PACKAGES:
        doc = (ROOT / "src" / "mnistlab" / package / "__init__.py").read_text()
        assert doc.startswith('"""') and len(doc.split('"""')[1].split()) >= 8, package
