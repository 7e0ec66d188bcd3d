"""Secrets out of what we write or print: the store, files under outputs/, logs, the terminal.

A secret is the value of an environment variable whose name looks secret (``*TOKEN*``,
``*PASSW*``, ...), or a password in a URL. It is masked in every form text can carry it in: as
itself, escaped by JSON or YAML (non-ASCII characters), or URL-encoded. Kept apart from
``tracking`` (which imports MLflow) so that the CLI can use it before anything heavy loads.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import quote

#: environment variables whose values never reach MLflow (matched case-insensitively)
SECRET_NAME = re.compile(r"TOKEN|SECRET|PASSW|API_?KEY|ACCESS_?KEY|PRIVATE|CREDENTIAL|AUTH|COOKIE|SESSION", re.I)
MASK = "***"
_URL_PASSWORD = re.compile(r"(\w+://[^/\s:@]+):[^/\s@]+@")


def secrets() -> Iterator[tuple[str, str]]:
    """(variable name, value) of each secret-looking environment variable worth masking."""
    for name in list(os.environ):  # a snapshot: MLflow's threads set and unset variables meanwhile
        value = os.environ.get(name) or ""
        if len(value) >= 6 and SECRET_NAME.search(name):
            yield name, value


def _forms(value: str) -> set[str]:
    """The ways text can spell ``value``: as is, JSON- and YAML-escaped, URL-encoded."""
    forms = {value, json.dumps(value)[1:-1], quote(value, safe="")}
    escaped = value.encode("unicode_escape").decode("ascii")
    forms |= {escaped, re.sub(r"\\x([0-9a-f]{2})", lambda m: "\\x" + m.group(1).upper(), escaped)}
    return {form for form in forms if form}


def masked_forms() -> list[str]:
    """Every form of every secret now in the environment, longest first: a form may contain another."""
    return sorted({form for _, value in secrets() for form in _forms(value)}, key=len, reverse=True)


def redact(text: str, forms: list[str] | None = None) -> str:
    """``text`` with secrets and URL passwords masked; ``forms``: ``masked_forms()`` taken once for
    many texts (a config's every string), instead of reading the environment for each."""
    text = _URL_PASSWORD.sub(rf"\1:{MASK}@", text)
    for form in masked_forms() if forms is None else forms:
        if form in text:
            text = text.replace(form, MASK)
    return text


def redact_all(values: Mapping[str, Any]) -> dict[str, str]:
    forms = masked_forms()
    return {redact(str(k), forms): redact(str(v), forms) for k, v in values.items()}


def redact_tree(tree: Any, forms: list[str] | None = None) -> Any:
    """A config (mappings, lists, scalars) with every string redacted: serialise it afterwards."""
    forms = masked_forms() if forms is None else forms
    if isinstance(tree, Mapping):
        return {redact(str(k), forms): redact_tree(v, forms) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return [redact_tree(v, forms) for v in tree]
    return redact(tree, forms) if isinstance(tree, str) else tree


def redact_figure(figure: Any, forms: list[str] | None = None) -> Any:
    """Every text of a matplotlib figure (titles hold run names) with secrets masked; matplotlib's
    texts are the artists with get_text and set_text (no import of matplotlib here)."""
    forms = masked_forms() if forms is None else forms
    for text in figure.findobj(lambda artist: hasattr(artist, "get_text") and hasattr(artist, "set_text")):
        masked = redact(text.get_text(), forms)
        if masked != text.get_text():
            text.set_text(masked)
    return figure


def secret_in(text: str) -> str | None:
    """The name of the variable whose secret ``text`` holds, if any."""
    for name, value in secrets():
        if any(form in text for form in _forms(value)):
            return name
    return None


class Redacted(logging.Filter):
    """A logger's or handler's records, redacted (plugins that log their whole config; a run's log file)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = redact(message)
        if masked != message:
            record.msg, record.args = masked, ()
        return True
