"""The reference pages, generated from the project itself so that they cannot drift from it:

- every config group, its options (the files in conf/<group>/) and every key of every option, with
  its value as written and the comment that documents it there, and the type and bounds the
  schema in src/mnistlab/config/ gives it;
- the presets (experiment, sweep, hparams_search) and the Hydra launchers and sweepers;
- every ``mnistlab`` subcommand and flag, from the argparse parser the command builds.

mkdocs_hooks.py adds them to the site when it is built; tests/test_docs.py checks that they are
complete. Nothing here imports TensorFlow or MLflow.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import inspect
import os
import re
import textwrap
from pathlib import Path
from typing import Any
from unittest import mock

import yaml_comments
from omegaconf import OmegaConf

#: the groups of conf/config.yaml's defaults, in the order the reference gives them
GROUPS = ("data", "model", "optimizer", "scheduler", "loss", "trainer", "callbacks", "tracking")
PRESET_GROUPS = ("experiment", "sweep", "hparams_search")
HYDRA_GROUPS = ("hydra/launcher", "hydra/sweeper")
#: what the files cannot say about the Hydra groups (they are not in conf/config.yaml's defaults)
HYDRA_GROUP_TEXT = {
    "hydra/launcher": "how a sweep's (`-m`) jobs are run: one after another, in parallel processes, on SLURM, "
    "on Ray, or not at all (a dry run)",
    "hydra/sweeper": "how a sweep's jobs are chosen: Hydra's grid, or an Optuna search (set by the "
    "`hparams_search` presets)",
}
#: options Hydra itself provides (not files in conf/, not registered by src/hydra_plugins)
HYDRA_BUILTIN = {"hydra/launcher": {"basic": "Hydra's own launcher: the jobs run one after another in this process"}}

PAGES = {
    "reference/config.md": "config_page",
    "reference/presets.md": "presets_page",
    "reference/hydra.md": "hydra_page",
    "reference/cli.md": "cli_page",
}


def pages(root: Path) -> dict[str, str]:
    """Every generated page: its path in the site's docs folder -> its Markdown."""
    return {uri: globals()[function](root) for uri, function in PAGES.items()}


# --------------------------------------------------------------------------------------------- text


def _escape(text: str) -> str:
    """Plain text from a YAML or Python comment as Markdown: code spans kept, the rest escaped."""
    parts = re.split(r"(`[^`]*`)", text)
    out = []
    for i, part in enumerate(parts):
        if i % 2:
            out.append(part.replace("|", "\\|"))
        else:
            part = part.replace("\\", "\\\\").replace("*", "\\*").replace("_", "\\_")
            out.append(part.replace("<", "&lt;").replace(">", "&gt;").replace("|", "\\|"))
    return "".join(out)


def _code(value: Any) -> str:
    text = str(value)
    tick = "``" if "`" in text else "`"
    return f"{tick}{text.replace('|', chr(92) + '|')}{tick}" if text else ""


def _header(lines: list[str], lang: str = "bash") -> str:
    """A file's header comment as Markdown: indented lines (commands) as code, the rest as text."""
    blocks: list[tuple[str, list[str]]] = []
    for line in lines:
        kind = "code" if line.startswith("  ") else "text" if line.strip() else "blank"
        if blocks and blocks[-1][0] == kind:
            blocks[-1][1].append(line)
        else:
            blocks.append((kind, [line]))
    out = []
    for kind, chunk in blocks:
        if kind == "code":
            code = textwrap.dedent("\n".join(chunk))
            commands = all(re.match(r"(python|mnistlab|mlflow|[A-Z_]+=)", line) for line in code.splitlines())
            out.append(f"```{lang if commands else 'text'}\n{code}\n```")
        elif kind == "text":
            out.append(_escape(" ".join(line.strip() for line in chunk)))
    return "\n\n".join(out)


def _table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell.replace("\n", " ") for cell in row) + " |" for row in rows]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------- schema


def _python_comments(cls: type) -> dict[str, str]:
    """Field name -> the comment on its line or the comment lines right above it, from the source."""
    comments: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        above: list[str] = []
        for line in inspect.getsource(klass).splitlines():
            stripped = line.strip()
            if stripped.startswith("#"):
                above.append(stripped.lstrip("#:").strip())
                continue
            match = re.match(r"\s+(\w+)\s*:[^=#]*(?:=[^#]*)?(?:#\s*(.*))?$", line)
            if match and not stripped.startswith(("def ", "@", "return")):
                text = " ".join([*above, match[2] or ""]).strip()
                if text:
                    comments[match[1]] = text
            above = []
    return comments


def _type_name(annotation: Any) -> str:
    """A field's annotation in words (the config modules' annotations are strings or typing objects)."""
    text = annotation.__name__ if isinstance(annotation, type) else str(annotation)
    text = text.replace("typing.", "")
    optional = re.fullmatch(r"Optional\[(.*)\]", text)
    if optional:
        return f"{_type_name(optional[1])} or null"
    text = re.sub(r"Dict\[.*?\]", "mapping", text)
    text = re.sub(r"List\[(.*)\]", r"list of \1s", text)
    words = {"Any": "", "str": "string", "int": "integer", "bool": "boolean", "float": "number"}
    return words.get(text, text).replace("strs", "strings")


def _number(value: float) -> str:
    return f"{int(value):,}" if float(value).is_integer() else f"{value:g}"


def _rule(metadata: Any) -> str:
    """A field's bounds (fields.rule) in words: ``in [0, 1)``, ``>= 1``, ``one of a, b``."""
    m = dict(metadata)
    if "choices" in m:
        return "one of " + ", ".join(f"`{c}`" for c in m["choices"])
    low = ("[", m["ge"]) if "ge" in m else ("(", m["gt"]) if "gt" in m else None
    high = ("]", m["le"]) if "le" in m else (")", m["lt"]) if "lt" in m else None
    if low and high and "le" not in m:
        return f"in {low[0]}{_number(low[1])}, {_number(high[1])}{high[0]}"
    words = []
    if low:
        words.append(f"{'>=' if low[0] == '[' else '>'} {_number(low[1])}")
    if high:
        words.append(f"{'<=' if high[0] == ']' else '<'} {_number(high[1])}")
    return ", ".join(words)


@dataclasses.dataclass
class SchemaField:
    type: str
    rule: str
    default: Any
    comment: str


def _schema_fields(cls: type | None, prefix: str = "") -> dict[str, SchemaField]:
    """Every field of a schema class, nested dataclasses flattened: dotted name -> what it says."""
    if cls is None:
        return {}
    comments = _python_comments(cls)
    fields: dict[str, SchemaField] = {}
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else None
        if f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        if dataclasses.is_dataclass(default):
            fields.update(_schema_fields(type(default), f"{prefix}{f.name}."))
            continue
        fields[prefix + f.name] = SchemaField(_type_name(f.type), _rule(f.metadata), default, comments.get(f.name, ""))
    return fields


def _schema(group: str, option: str | None) -> type | None:
    """The schema class of a group's option (registries), or of a fixed section; None if there is none."""
    from mnistlab.config import callbacks, losses, optimizers, schedulers, schema

    fixed = {"": schema.Config, "data": schema.DataConfig, "model": schema.ModelConfig}
    fixed |= {"trainer": schema.TrainerConfig, "tracking": schema.TrackingConfig}
    if group in fixed:
        return fixed[group]
    registry = {"optimizer": optimizers.OPTIMIZERS, "scheduler": schedulers.SCHEDULERS, "loss": losses.LOSSES}
    registry["callbacks"] = callbacks.CALLBACKS
    if group in registry and option in registry[group].names():
        return registry[group].schema(option, group)
    return None


def _yaml_value(text: str) -> str:
    return {"": "", "(text)": "(text)"}.get(text, text)


# ------------------------------------------------------------------------------------ config groups


def _options(root: Path, group: str) -> list[Path]:
    return sorted((root / "conf" / group).glob("*.yaml"))


def _defaults(root: Path) -> dict[str, tuple[str, str]]:
    """conf/config.yaml's defaults: group -> (default option, the comment that says what it chooses)."""
    top = yaml_comments.read((root / "conf" / "config.yaml").read_text())
    chosen = {}
    for item in top.items("defaults"):
        if ":" in item.value:
            group, option = (part.strip() for part in item.value.split(":", 1))
            chosen[group] = (option, re.sub(r"^conf/[\w/]+/:\s*", "", item.comment))
    return chosen


def _key_rows(doc: yaml_comments.CommentedYaml, group: str, schema: dict[str, SchemaField]) -> list[tuple[str, ...]]:
    """One row per key of an option file: its full path, value, type and bounds, and comment."""
    rows = []
    prefix = f"{group}." if group else ""
    for entry in doc.key_entries():
        if entry.path == "defaults" or entry.path.startswith("defaults."):
            continue
        name = entry.path.rsplit(".", 1)[-1]
        comment = entry.comment
        if not comment and name == "name" and "." not in entry.path:
            comment = f"the option's name: `{group}={entry.value}` selects this file"
        elif not comment and name == "_target_":
            comment = "the class Hydra instantiates"
        elif not comment and entry.under_header:
            comment = " ".join(doc.header)
        field = schema.get(entry.path)
        kind = ", ".join(filter(None, [field.type, field.rule])) if field else ""
        kind = kind[:1].upper() + kind[1:] if kind.startswith("one of") else kind
        layers = doc.items(entry.path)
        value = f"{len(layers)} items, below" if layers and not entry.value else _yaml_value(entry.value)
        rows.append(
            (f"`{prefix}{entry.path}`", _code(value), _escape(kind) if "`" not in kind else kind, _escape(comment))
        )
    return rows


def _schema_only_rows(doc: yaml_comments.CommentedYaml, group: str, schema: dict[str, SchemaField]) -> list:
    """Keys the schema has and the file leaves out (set them with ``+key=value``)."""
    written = {e.path for e in doc.key_entries()}
    rows = []
    for name, field in schema.items():
        if name not in written and not any(w.startswith(name + ".") for w in written):
            kind = ", ".join(filter(None, [field.type, field.rule]))
            full = f"{group}.{name}" if group else name
            rows.append(
                (
                    f"`{full}`",
                    _code(field.default if field.default is not None else "null"),
                    kind,
                    _escape(f"{field.comment} (not in the file: the schema's default; set it with `+{full}=...`)"),
                )
            )
    return rows


KEY_HEADER = ("key", "default", "type, allowed values", "what it does")


def _inherit(doc: yaml_comments.CommentedYaml, parents: list, group: str) -> yaml_comments.CommentedYaml:
    """An option file with the keys it takes from the options its defaults list names (same group),
    in their order: what the option composes to."""
    own = {e.path: e for e in doc.key_entries() if e.path != "defaults"}
    entries = []
    for parent in parents:
        for entry in parent.key_entries():
            if entry.path in own:
                mine = own.pop(entry.path)
                entries.append(dataclasses.replace(mine, comment=mine.comment or entry.comment))
            else:
                entries.append(dataclasses.replace(entry, comment=f"{entry.comment} (as in the option it starts from)"))
    return yaml_comments.CommentedYaml(doc.header, entries + list(own.values()))


def _option_section(root: Path, group: str, path: Path, default: str | None) -> str:
    doc = yaml_comments.read(path.read_text())
    option = path.stem
    title = f"### `{group}={option}`" + (" (default)" if option == default else "") + f" {{#{group}-{option}}}"
    parts = [title, _header(doc.header)]
    if group == "callbacks":  # one schema class per key of the group, not per option
        schema = {}
        for name in ("early_stopping", "best_checkpoint"):
            schema |= {f"{name}.{k}": v for k, v in _schema_fields(_schema("callbacks", name)).items()}
    else:
        schema = _schema_fields(_schema(group, option))
    parents = [p.value for p in doc.items("defaults") if p.value != "_self_" and ":" not in p.value]
    if parents:
        parts.append(
            "Starts from "
            + ", ".join(f"[`{group}={p}`](#{group}-{p})" for p in parents)
            + ", then sets the keys without a note below."
        )
        doc = _inherit(doc, [yaml_comments.read((path.parent / f"{p}.yaml").read_text()) for p in parents], group)
    rows = _key_rows(doc, group, schema)
    if group in ("data", "model", "trainer", "tracking") and option == default:
        rows += _schema_only_rows(doc, group, schema)
    parts.append(_table(KEY_HEADER, rows))
    for entry in doc.key_entries():
        items = doc.items(entry.path)
        if items:
            parts.append(
                f"`{group}.{entry.path}`, item by item (override one by its position: "
                f"`{group}.{entry.path}.<n>.<argument>=...`):\n\n"
                + _table(
                    ("#", "item", "comment"),
                    [(str(i), _code(e.value), _escape(e.comment)) for i, e in enumerate(items)],
                )
            )
    return "\n\n".join(p for p in parts if p)


def config_page(root: Path) -> str:
    defaults = _defaults(root)
    top = yaml_comments.read((root / "conf" / "config.yaml").read_text())
    out = [
        "# Configuration reference",
        "Generated from `conf/` and the schema in `src/mnistlab/config/` each time the documentation is "
        "built: every group, every option (one YAML file each) and every key, with the comment that "
        "documents it in its file. `python run.py --cfg job` prints the composed config; "
        "`python run.py <group>=<option>` picks an option and `python run.py <key>=<value>` changes a "
        "value. Presets that change many keys at once are in [Presets](presets.md); Hydra's launchers "
        "and sweepers in [Hydra launchers and sweepers](hydra.md).",
        "## The groups",
    ]
    rows = []
    for group in GROUPS:
        default, text = defaults.get(group, ("", ""))
        options = ", ".join(f"[`{p.stem}`](#{group}-{p.stem})" for p in _options(root, group))
        rows.append((f"[`{group}`](#{group})", options, _code(default), _escape(text)))
    for group in PRESET_GROUPS:
        _, text = defaults.get(group, ("", ""))
        options = ", ".join(f"[`{p.stem}`](presets.md#{group}-{p.stem})" for p in _options(root, group))
        rows.append((f"[`{group}`](presets.md#{group})", options, "none", _escape(text)))
    for group in HYDRA_GROUPS:
        options = ", ".join(f"[`{name}`](hydra.md#{_anchor(group, name)})" for name in _hydra_options(root, group))
        rows.append((f"[`{group}`](hydra.md#{_anchor(group)})", options, "`basic`", _escape(HYDRA_GROUP_TEXT[group])))
    out.append(_table(("group", "options", "default", "what it chooses"), rows))

    out.append("## Top-level keys {#top-level}")
    out.append(
        "In `conf/config.yaml`, beside the groups' defaults (its `hydra:` settings are in "
        "[Hydra launchers and sweepers](hydra.md#hydra-settings))."
    )
    schema = _schema_fields(_schema("", None))
    top_only = yaml_comments.CommentedYaml(top.header, [e for e in top.entries if not e.path.startswith("hydra")])
    rows = [row for row in _key_rows(top_only, "", schema)]
    out.append(_table(KEY_HEADER, rows))

    for group in GROUPS:
        default, text = defaults.get(group, ("", ""))
        out.append(f"## `{group}` {{#{group}}}")
        options = _options(root, group)
        out.append(
            f"{_escape(text[:1].upper() + text[1:])}. Options: "
            + ", ".join(f"`{p.stem}`" for p in options)
            + f" (files in `conf/{group}/`); the default is `{default}`."
        )
        for path in options:
            out.append(_option_section(root, group, path, default))
    return "\n\n".join(out) + "\n"


# ------------------------------------------------------------------------------------------ presets


def _setting_rows(doc: yaml_comments.CommentedYaml) -> list[tuple[str, ...]]:
    rows = [("`defaults`", _code(item.value), _escape(item.comment)) for item in doc.items("defaults")]
    for entry in doc.key_entries():
        if entry.path == "defaults" or not entry.value:
            continue
        rows.append((f"`{entry.path}`", _code(entry.value), _escape(entry.comment)))
    return rows


def _folder(root: Path, group: str) -> str:
    """Where a group's files are: ``conf/<group>/``, and the folder it links to if it is a link."""
    folder = root / "conf" / group
    if folder.is_symlink():
        target = folder.resolve().relative_to(root.resolve()).as_posix()
        return f"`{target}/` (linked as `conf/{group}`)"
    return f"`conf/{group}/`"


def presets_page(root: Path) -> str:
    defaults = _defaults(root)
    usage = {
        "experiment": "`python run.py experiment=<name>` (a single run; `-m` for a preset that sweeps)",
        "sweep": "`python run.py -m sweep=<name>`",
        "hparams_search": "`python run.py -m hparams_search=<name>`",
    }
    out = [
        "# Presets",
        "Generated from "
        + ", ".join(f"{_folder(root, group)} (`{group}`)" for group in PRESET_GROUPS)
        + ". A preset is a `# @package _global_` file: it can change any group and key, and "
        "`hydra.sweeper.params` holds what `-m` sweeps. Command-line overrides still apply on top. "
        "Each table lists what the preset sets.",
    ]
    for group in PRESET_GROUPS:
        _, text = defaults.get(group, ("", ""))
        out.append(f"## `{group}` {{#{group}}}")
        out.append(f"{_escape(text[:1].upper() + text[1:])}. Use: {usage[group]}.")
        for path in _options(root, group):
            doc = yaml_comments.read(path.read_text())
            out.append(f"### `{group}={path.stem}` {{#{group}-{path.stem}}}")
            out.append(_header(doc.header))
            out.append(_table(("key", "value", "comment"), _setting_rows(doc)))
    return "\n\n".join(out) + "\n"


# -------------------------------------------------------------------------------------------- hydra


def _anchor(group: str, option: str | None = None) -> str:
    return group.replace("/", "-") + (f"-{option}" if option else "")


def _registered(root: Path, group: str) -> dict[str, Any]:
    """Options that this project's Hydra plugins (src/hydra_plugins/*/config.py) register in Hydra's ConfigStore."""
    from hydra.core.config_store import ConfigStore

    for path in sorted((root / "src" / "hydra_plugins").glob("*/config.py")):
        importlib.import_module(f"hydra_plugins.{path.parent.name}.config")
    repo = ConfigStore.instance().repo
    for part in group.split("/"):
        repo = repo.get(part, {})
    return {
        name.removesuffix(".yaml"): node
        for name, node in sorted(repo.items())
        if getattr(node, "provider", None) == "mnistlab"
    }


def _hydra_options(root: Path, group: str) -> list[str]:
    names = set(HYDRA_BUILTIN.get(group, {})) | {p.stem for p in _options(root, group)}
    return sorted(names | set(_registered(root, group)))


def hydra_page(root: Path) -> str:
    out = [
        "# Hydra launchers and sweepers",
        "Generated from `conf/hydra/`, the configs this project's plugins in `src/hydra_plugins/` "
        "register, and the `hydra:` block of `conf/config.yaml`. Choose one with "
        "`python run.py -m ... hydra/launcher=<name>` and change a key with `hydra.launcher.<key>=...`; "
        "`python run.py hydra/launcher=<name> --cfg hydra` prints every key as composed, the plugin's own included.",
    ]
    files = {group: {p.stem: p for p in _options(root, group)} for group in HYDRA_GROUPS}
    for group in HYDRA_GROUPS:
        out.append(f"## `{group}` {{#{_anchor(group)}}}")
        out.append(_escape(HYDRA_GROUP_TEXT[group][:1].upper() + HYDRA_GROUP_TEXT[group][1:]) + ".")
        registered = _registered(root, group)
        key = group.split("/")[1]
        for name in _hydra_options(root, group):
            out.append(f"### `{group}={name}` {{#{_anchor(group, name)}}}")
            if name in files[group]:
                doc = yaml_comments.read(files[group][name].read_text())
                out.append(_header(doc.header) + f"\n\nFile: `conf/{group}/{name}.yaml`.")
                rows = _key_rows(doc, f"hydra.{key}", {})
                out.append(_table(KEY_HEADER, rows))
            elif name in registered:
                node = registered[name].node
                cls = OmegaConf.get_type(node)  # the dataclass the plugin stored
                module = importlib.import_module(cls.__module__)
                first = re.split(r"(?<=\.)\s", " ".join((module.__doc__ or "").split()), maxsplit=1)[0]
                out.append(_escape(first.replace("``", "`")) + f" Registered by `{cls.__module__}`.")
                rows = []
                for field_name, field in _schema_fields(cls).items():
                    value = field.default
                    value = "null" if value is None else str(value).lower() if isinstance(value, bool) else value
                    rows.append(
                        (f"`hydra.{key}.{field_name}`", _code(value), _escape(field.type), _escape(field.comment))
                    )
                out.append(_table(KEY_HEADER, rows))
            else:
                out.append(_escape(HYDRA_BUILTIN[group][name]) + ".")
    top = yaml_comments.read((root / "conf" / "config.yaml").read_text())
    out.append("## Hydra's settings in conf/config.yaml {#hydra-settings}")
    out.append("Where runs and sweeps write, what `--help` prints, how runs are named, and the sweep tracker.")
    hydra_only = yaml_comments.CommentedYaml([], [e for e in top.key_entries() if e.path.startswith("hydra")])
    out.append(_table(KEY_HEADER, _key_rows(hydra_only, "", {})))
    return "\n\n".join(out) + "\n"


# ---------------------------------------------------------------------------------------------- cli


class _Built(Exception):
    """Raised in place of parsing: the parser is complete."""


def mnistlab_parser() -> argparse.ArgumentParser:
    """The ``mnistlab`` command's parser, exactly as ``mnistlab`` builds it: from a ``build_parser()``
    if the command module has one, else taken from ``main()`` at the moment it would parse."""
    from mnistlab.app import commands

    if callable(getattr(commands, "build_parser", None)):
        return commands.build_parser()
    built: list[argparse.ArgumentParser] = []

    def capture(self, args=None, namespace=None):
        built.append(self)
        raise _Built

    environ = dict(os.environ)
    try:
        with mock.patch.object(argparse.ArgumentParser, "parse_args", capture):
            commands.main([])
    except _Built:
        pass
    finally:  # main() sets a default or two in the environment; the build's own stays as it was
        os.environ.clear()
        os.environ.update(environ)
    return built[0]


def subcommands(parser: argparse.ArgumentParser) -> dict[str, tuple[argparse.ArgumentParser, str]]:
    """name -> (its parser, its one-line summary), in the order ``mnistlab --help`` lists them."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help or "" for a in action._choices_actions}
            return {name: (sub, helps.get(name, "")) for name, sub in action.choices.items()}
    return {}


def _argument(action: argparse.Action) -> str:
    if action.option_strings:
        names = ", ".join(action.option_strings)
        if action.nargs == 0:
            return f"`{names}`"
        metavar = action.metavar or (action.dest.upper() if not action.choices else None)
        if isinstance(metavar, tuple):
            metavar = " ".join(metavar)
        return f"`{names} {metavar}`" if metavar else f"`{names}`"
    name = action.metavar or action.dest
    return f"`{name} ...`" if action.nargs in ("+", "*") else f"`[{name}]`" if action.nargs == "?" else f"`{name}`"


def _argument_rows(parser: argparse.ArgumentParser) -> list[tuple[str, ...]]:
    exclusive = {}
    for group in parser._mutually_exclusive_groups:
        for action in group._group_actions:
            exclusive[action] = [a.option_strings[0] for a in group._group_actions if a is not action]
    rows = []
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        help_text = (action.help or "") % {"default": action.default, "prog": parser.prog}
        notes = []
        if action.choices:
            notes.append("one of " + ", ".join(f"`{c}`" for c in action.choices))
        if action in exclusive:
            notes.append("not with " + ", ".join(f"`{o}`" for o in exclusive[action]))
        if action.required and action.option_strings:
            notes.append("required")
        default = action.default
        shown = "" if default in (None, False, argparse.SUPPRESS) or action.nargs == 0 else _code(default)
        text = _escape(help_text) + ("" if not notes else " (" + "; ".join(notes) + ")")
        rows.append((_argument(action), shown, text))
    return rows


def cli_page(root: Path) -> str:
    parser = mnistlab_parser()
    commands = subcommands(parser)
    out = [
        "# The `mnistlab` command",
        "Generated from the command's own argparse parser (`src/mnistlab/app/commands/`) each time the "
        "documentation is built; `mnistlab <command> --help` prints the same. Training itself is "
        "`python run.py` (a Hydra app: see the [configuration reference](config.md)). Every command "
        "also runs as `python -m mnistlab <command> ...`.",
        "```text\n" + parser.format_usage().strip() + "\n```",
        _escape(parser.description or "") + " Options of `mnistlab` itself: `--help`, and `--version`, "
        "which prints the versions of mnistlab and of the libraries a bug report needs.",
        _table(
            ("command", "what it does"), [(f"[`{name}`](#{name})", _escape(s)) for name, (_, s) in commands.items()]
        ),
    ]
    for name, (sub, summary) in commands.items():
        out.append(f"## `mnistlab {name}` {{#{name}}}")
        out.append(_escape(summary[:1].upper() + summary[1:]) + ".")
        out.append("```text\n" + sub.format_usage().strip() + "\n```")
        description = (sub.description or "").strip("\n")
        if description:
            out.append(_header(description.splitlines(), lang="text"))
        out.append(_table(("argument", "default", "what it does"), _argument_rows(sub)))
    return "\n\n".join(out) + "\n"
