"""The documentation: the generated reference names every config key, every option file and every
``mnistlab`` flag; the site builds with ``mkdocs build --strict`` (no broken link or anchor, every
page in the nav); README stays a front page whose relative links all resolve."""

from __future__ import annotations

import importlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from conftest import CONF_DIR, ROOT

pytestmark = pytest.mark.fast  # make test-fast: no training; the site builds in seconds

BIN = Path(sys.executable).parent
HOOKS = ROOT / "docs_hooks"
#: the config groups of conf/config.yaml's defaults, whose options compose into the run's config
GROUPS = ("data", "model", "optimizer", "scheduler", "loss", "trainer", "callbacks", "tracking")


@pytest.fixture(scope="module")
def reference():
    """docs_hooks/reference.py, imported as the mkdocs hook imports it (its folder on sys.path)."""
    sys.path.insert(0, str(HOOKS))
    try:
        return importlib.import_module("reference")
    finally:
        sys.path.remove(str(HOOKS))


@pytest.fixture(scope="module")
def pages(reference) -> dict[str, str]:
    return reference.pages(ROOT)


def keys_of(tree, prefix: str = "") -> list[str]:
    """Every key path of a config tree; a list or an empty mapping is one key (``model.layers``)."""
    if not isinstance(tree, dict) or not tree:
        return [prefix]
    return [key for name, value in tree.items() for key in keys_of(value, f"{prefix}.{name}" if prefix else name)]


def composed_keys(compose_cfg, overrides: list[str]) -> list[str]:
    cfg = compose_cfg(overrides)
    tree = OmegaConf.to_container(cfg, resolve=False)
    tree.pop("hydra", None)
    return keys_of(tree)


def test_every_key_of_the_default_config_is_in_the_reference(compose_cfg, pages):
    keys = composed_keys(compose_cfg, [])
    assert {"seed", "optimizer.lr", "model.layers", "data.augment.rotation", "tracking.tags"} <= set(keys)
    missing = [key for key in keys if f"`{key}`" not in pages["reference/config.md"]]
    assert not missing


@pytest.mark.parametrize("group", GROUPS)
def test_every_key_of_every_option_is_in_the_reference(compose_cfg, pages, group):
    options = sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))
    assert options
    for option in options:
        keys = [k for k in composed_keys(compose_cfg, [f"{group}={option}"]) if k.startswith(group + ".")]
        section = pages["reference/config.md"].split(f"{{#{group}-{option}}}")[1].split("\n### ")[0]
        missing = [key for key in keys if f"`{key}`" not in section]
        assert not missing, f"{group}={option}"


def test_every_option_file_of_every_group_is_in_the_reference(pages):
    text = "\n".join(pages.values())
    groups = [d for d in sorted(CONF_DIR.iterdir()) if d.is_dir() and d.name != "hydra"]  # experiment and sweep:
    groups += sorted(d for d in (CONF_DIR / "hydra").iterdir() if d.is_dir())  # links into experiments/
    assert len(groups) >= 13
    missing = []
    for folder in groups:
        group = folder.relative_to(CONF_DIR).as_posix()
        for path in sorted(folder.glob("*.yaml")):
            if f"### `{group}={path.stem}`" not in text:
                missing.append(f"{group}={path.stem}")
    assert not missing


def help_text(monkeypatch, capsys, *argv: str) -> str:
    from mnistlab.app.commands import main

    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)  # main() sets it; restored afterwards
    monkeypatch.setenv("COLUMNS", "200")
    with pytest.raises(SystemExit):
        main([*argv, "--help"])
    return capsys.readouterr().out


def test_every_flag_of_every_subcommand_is_in_the_cli_reference(monkeypatch, capsys, pages):
    cli = pages["reference/cli.md"]
    top = help_text(monkeypatch, capsys)
    commands = re.findall(r"^    (\w[\w-]*)", top.split("positional arguments:", 1)[1], flags=re.M)
    assert {"compare", "predict", "preprocess", "continue", "promote"} <= set(commands)
    assert "`--version`" in cli
    for command in commands:
        assert f"## `mnistlab {command}`" in cli, command
        section = cli.split(f"## `mnistlab {command}`")[1].split("\n## ")[0]
        text = help_text(monkeypatch, capsys, command)
        flags = set(re.findall(r"(?<![\w-])(--[a-z][\w-]*)", text.split("options:", 1)[1])) - {"--help"}
        block = text.partition("positional arguments:")[2].split("options:")[0]  # compare has none
        positionals = re.findall(r"^  (\w+)\s", block, flags=re.M)
        assert flags or positionals, command
        missing = [f for f in sorted(flags) if f"`{f}" not in section]
        missing += [p for p in positionals if f"`{p}" not in section and f"`[{p}]" not in section]
        assert not missing, command


def test_the_site_builds_strictly(tmp_path):
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    proc = subprocess.run(
        [str(BIN / "mkdocs"), "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    for page in ("index.html", "reference/config/index.html", "reference/cli/index.html", "tutorial/seeds/index.html"):
        assert (tmp_path / "site" / page).is_file(), page


def test_readme_is_a_front_page_whose_links_resolve():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 200
    targets = re.findall(r"\]\(([^)\s]+)\)", readme)
    relative = [t.split("#")[0] for t in targets if not re.match(r"[a-z][a-z0-9+.-]*:|#", t)]
    assert any(t.startswith("docs/") for t in relative)
    missing = [t for t in relative if not (ROOT / t).exists()]
    assert not missing
