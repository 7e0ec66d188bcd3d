"""A small reader of the commented YAML in conf/ and experiments/: every key with its path, its value
as written and the comment that documents it (on its line, on the lines above it, or continuing
below it in the same column), plus the file's header comment. PyYAML drops comments, so this reads
the lines; it knows the subset of YAML those files use (block mappings, block sequences of one-line
items, flow collections that may span lines, block scalars)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

#: a mapping key (``key:``, ``- key:`` in a sequence), its indent and what follows the colon
KEY = re.compile(r"^(?P<indent> *)(?P<dash>- +)?(?P<key>[^\s#:'\"{\[-][^:#]*?):(?:[ \t]+(?P<rest>.*)|$)")
#: a block-sequence item that is not a mapping key: ``- _self_``, ``- {type: Dense, units: 10}``
ITEM = re.compile(r"^(?P<indent> *)- +(?P<rest>.*)$")
COMMENT = re.compile(r"^(?P<indent> *)#(?P<text>.*)$")
BLOCK_SCALAR = re.compile(r"^[|>][-+]?\d*$")


@dataclass
class Entry:
    """A key (``item`` False) or a block-sequence item (``item`` True) of a YAML file."""

    path: str  # dotted path of the key, or of the sequence an item belongs to
    value: str  # as written; "" for a mapping or a sequence (the children follow), "(text)" for a block scalar
    comment: str
    item: bool = False
    line: int = 0
    #: the file's header comment runs straight into this key (no blank line): it documents the key too
    under_header: bool = False


@dataclass
class CommentedYaml:
    header: list[str] = field(default_factory=list)  # the file's leading comment, line by line
    entries: list[Entry] = field(default_factory=list)

    def key_entries(self) -> list[Entry]:
        return [e for e in self.entries if not e.item]

    def items(self, path: str) -> list[Entry]:
        return [e for e in self.entries if e.item and e.path == path]

    def get(self, path: str) -> Entry | None:
        return next((e for e in self.entries if not e.item and e.path == path), None)


def split_comment(rest: str) -> tuple[str, str, int | None]:
    """``value  # comment`` -> (value, comment, the column of '#' in ``rest``); quotes respected."""
    quote = None
    for i, char in enumerate(rest):
        if quote:
            if char == quote:
                quote = None
        elif char in "'\"" and (i == 0 or rest[i - 1] in " [{,:"):
            quote = char
        elif char == "#" and (i == 0 or rest[i - 1] in " \t"):
            return rest[:i].rstrip(), rest[i + 1 :].strip(), i
    return rest.rstrip(), "", None


def _balance(text: str) -> int:
    return text.count("[") + text.count("{") - text.count("]") - text.count("}")


def read(text: str) -> CommentedYaml:
    lines = text.splitlines()
    result = CommentedYaml()
    stack: list[tuple[int, str]] = []  # (indent, key) of the mappings the current line is inside
    above: list[str] = []  # the comment block just above the current line
    continues: tuple[Entry, int] | None = None  # an entry whose comment may go on below, and its '#' column
    seen_key = False
    i = 0
    while i < len(lines):
        line = lines[i]
        number = i + 1
        i += 1
        if not line.strip():
            if not seen_key and above and not result.header:
                result.header, above = above, []
            above, continues = [], None
            continue
        comment = COMMENT.match(line)
        if comment:
            text_ = comment["text"][1:] if comment["text"].startswith(" ") else comment["text"]
            if text_.startswith("@package"):
                continue
            if continues is not None and len(comment["indent"]) == continues[1]:
                entry = continues[0]
                entry.comment = f"{entry.comment} {text_.strip()}".strip()
                continue
            continues = None
            above.append(text_)
            continue
        under_header = False
        if not seen_key and above:  # the first comment block, right above the first key: the header
            result.header, above, under_header = above, [], True
        seen_key = True
        key = KEY.match(line)
        item = ITEM.match(line) if not key else None
        if key:
            indent = len(key["indent"]) + (len(key["dash"]) if key["dash"] else 0)
            rest = key["rest"] or ""
        elif item:
            indent = len(item["indent"])
            rest = item["rest"]
        else:
            raise ValueError(f"line {number}: not a key or a sequence item: {line!r}")
        value, inline, column = split_comment(rest)
        while value[:1] in "[{" and _balance(value) > 0 and i < len(lines):  # a flow collection over lines
            more, more_comment, _ = split_comment(lines[i].strip())
            value, inline = f"{value} {more}", " ".join(filter(None, [inline, more_comment]))
            i += 1
        if key and key["dash"]:  # ``- key: value``: an item of the enclosing sequence, written as a mapping
            while stack and stack[-1][0] >= len(key["indent"]) + 1:
                stack.pop()
            parent = ".".join(k for _, k in stack)
            entry = Entry(parent, f"{key['key'].strip()}: {value}".rstrip(": "), "", item=True, line=number)
        elif key:
            while stack and stack[-1][0] >= indent:
                stack.pop()
            name = key["key"].strip()
            path = ".".join([*(k for _, k in stack), name])
            if BLOCK_SCALAR.match(value):
                value = "(text)"
                while i < len(lines) and (not lines[i].strip() or len(lines[i]) - len(lines[i].lstrip()) > indent):
                    i += 1
            entry = Entry(path, value, "", line=number)
            if not value:
                stack.append((indent, name))
        else:
            while stack and stack[-1][0] > indent:
                stack.pop()
            entry = Entry(".".join(k for _, k in stack), value, "", item=True, line=number)
        entry.comment = " ".join([*(a.strip() for a in above), inline]).strip()
        entry.under_header = under_header
        result.entries.append(entry)
        above = []
        continues = (entry, len(line) - len(rest) + column) if column is not None else None
    return result
