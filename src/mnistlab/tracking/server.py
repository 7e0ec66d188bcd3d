"""A tracking server asked whether it answers, before anything heavy loads: no MLflow here (a
dead server is refused before TensorFlow and MLflow are imported)."""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from urllib.parse import urlparse

import requests

from mnistlab.core.errors import TrackingError, one_line
from mnistlab.core.redaction import redact

log = logging.getLogger(__name__)


def reachable_uri(uri: str, fallback_to_local: bool, root_dir: str) -> str:
    """``uri`` itself, unless it is a tracking server that does not answer: then a one-line error
    before any work (MLflow's client would retry for minutes), or with ``fallback_to_local`` the
    project's own sqlite store, said in a warning."""
    if urlparse(uri).scheme not in ("http", "https"):
        return uri
    problem = server_problem(uri)
    if problem is None:
        return uri
    local = f"sqlite:///{Path(root_dir).resolve() / 'mlflow.db'}"
    if fallback_to_local:
        log.warning(
            "tracking server %s does not answer (%s); tracking.fallback_to_local=true: logging to %s instead",
            redact(uri),
            problem,
            local,
        )
        return local
    raise TrackingError(
        f"tracking.uri={redact(uri)!r} does not answer ({problem}): start the server "
        "(mlflow server --host 127.0.0.1 --port <port>), fix tracking.uri or MLFLOW_TRACKING_URI, "
        f"or add tracking.fallback_to_local=true to log to {local} instead"
    )


def server_problem(uri: str, timeout: float = 5.0) -> str | None:
    """None when an MLflow server answers at ``uri`` (any HTTP answer counts: auth is MLflow's business),
    else what went wrong (refused, timed out, unknown host). Asked as MLflow's client asks: with the
    URL's user and password or MLFLOW_TRACKING_USERNAME/PASSWORD, and its TLS settings."""
    username, password = os.environ.get("MLFLOW_TRACKING_USERNAME"), os.environ.get("MLFLOW_TRACKING_PASSWORD")
    verify: bool | str = os.environ.get("MLFLOW_TRACKING_SERVER_CERT_PATH") or True
    if os.environ.get("MLFLOW_TRACKING_INSECURE_TLS", "").lower() == "true":
        verify = False
    try:
        requests.get(
            uri.rstrip("/") + "/health",
            timeout=timeout,
            verify=verify,
            auth=(username, password) if username and password else None,
        )
        return None
    except requests.RequestException as exc:
        text = one_line(exc, 300)
        socket_words = re.search(r"\[Errno -?\d+\][^')\]\"]*", text)  # urllib3 wraps the socket's own words
        return redact(socket_words.group(0).strip() if socket_words else text[:200]) or type(exc).__name__
