"""Secrets out of what we write or print: MLflow params and tags, logs, the terminal.

Kept apart from ``tracking`` (which imports MLflow) so that the CLI can use it before anything heavy loads.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from typing import Any

#: environment variables whose values never reach MLflow (matched case-insensitively)
SECRET_NAME = re.compile(r"TOKEN|SECRET|PASSW|API_?KEY|ACCESS_?KEY|PRIVATE|CREDENTIAL|AUTH|COOKIE|SESSION", re.I)
_URL_PASSWORD = re.compile(r"(\w+://[^/\s:@]+):[^/\s@]+@")


def redact(text: str) -> str:
    """``text`` with the values of secret-looking environment variables and URL passwords masked."""
    text = _URL_PASSWORD.sub(r"\1:***@", text)
    for name in list(os.environ):  # a snapshot: MLflow's threads set and unset variables meanwhile
        value = os.environ.get(name) or ""
        if len(value) >= 6 and SECRET_NAME.search(name) and value in text:
            text = text.replace(value, "***")
    return text


def redact_all(values: Mapping[str, Any]) -> dict[str, str]:
    return {redact(str(k)): redact(str(v)) for k, v in values.items()}


class Redacted(logging.Filter):
    """A logger's records, redacted: for plugins that log their whole config (hydra-ray-launcher
    prints every ray.init argument, the jobs' environment variables included)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = redact(record.getMessage()), ()
        return True
