"""Real servers and a real browser for tests: ``mlflow server`` on a free local port, stopped by its
pid, and headless Chromium that returns the page as rendered (after the React app has fetched its data).

Plain helpers, not fixtures: a test module wraps them in fixtures of the scope it needs.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

# The mlflow of the interpreter running the tests (the virtualenv's), not whatever is on PATH.
MLFLOW = Path(sys.executable).with_name("mlflow")

# What `mlflow server` 3.17 needs to be small and quiet on a test host:
SERVER_ENV = {
    # By default the server also starts a job runner (7 huey consumers, ~2 GB RSS and ~8 s more to
    # start); nothing a test looks at uses it.
    "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
    # No usage reports sent from the server (there is no network in CI anyway).
    "MLFLOW_DISABLE_TELEMETRY": "true",
}


def free_port() -> int:
    """A TCP port nobody listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def log_tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as exc:
        return f"(no log: {exc})"


@dataclass(frozen=True)
class MlflowServer:
    url: str  # http://127.0.0.1:<port>, no trailing slash
    pid: int  # the `mlflow server` process, also its process group id
    log_path: Path

    def get_json(self, path: str, **params) -> dict:
        """GET ``path`` (e.g. /api/2.0/mlflow/metrics/get-history) with query ``params``; the JSON answer."""
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        return self._request(urllib.request.Request(f"{self.url}{path}{query}"))

    def post_json(self, path: str, body: dict) -> dict:
        """POST ``body`` as JSON to ``path`` (e.g. /api/2.0/mlflow/runs/search); the JSON answer."""
        return self._request(
            urllib.request.Request(
                f"{self.url}{path}", data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
            )
        )

    def _request(self, request: urllib.request.Request) -> dict:
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return json.load(response)
        except urllib.error.HTTPError as exc:
            raise AssertionError(
                f"{request.get_method()} {request.full_url} -> {exc.code}: {exc.read().decode(errors='replace')[:2000]}"
            ) from None


@contextmanager
def mlflow_server(
    backend_store_uri: str, artifacts_dir: Path, log_path: Path, timeout: float = 60
) -> Iterator[MlflowServer]:
    """``mlflow server`` on 127.0.0.1:<free port> against ``backend_store_uri``, up once /health answers 200.

    Its output goes to ``log_path``; it runs in ``artifacts_dir`` and proxies artifacts there, so
    nothing lands in the current directory (MLflow's default would be ./mlartifacts). It is stopped
    on exit, also when the test fails, by its pid: SIGTERM to its process group (the CLI, uvicorn
    and its worker), SIGKILL for whatever is left after a grace period.

    MLflow 3.17's security middleware allows Host: 127.0.0.1/localhost on any port and same-origin
    requests by default, which is all urllib and the browser send here; no --allowed-hosts needed.
    (/health is exempt from the Host check, so it answering does not prove the API would.)
    """
    if not MLFLOW.exists():
        pytest.fail(f"no mlflow executable next to {sys.executable}")
    artifacts_dir.mkdir(parents=True, exist_ok=True)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [
        str(MLFLOW),
        "server",
        "--backend-store-uri",
        backend_store_uri,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",  # the default 4 uvicorn workers cost ~250 MB each and start-up time
        "--artifacts-destination",
        str(artifacts_dir),
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")} | SERVER_ENV
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            command,
            cwd=artifacts_dir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        _wait_healthy(proc, url, log_path, timeout)
        yield MlflowServer(url=url, pid=proc.pid, log_path=log_path)
    finally:
        stop_process_group(proc)


@contextmanager
def model_server(model_uri: str, tracking_uri: str, log_path: Path, timeout: float = 120) -> Iterator[str]:
    """``mlflow models serve -m <model_uri> --env-manager local`` on 127.0.0.1:<free port>, as README
    shows it, with MLFLOW_TRACKING_URI naming the store whose registry resolves ``models:/NAME@alias``.
    Yields its URL once /ping answers; stopped by its pid (process group) on exit, also on failure."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [
        str(MLFLOW),
        "models",
        "serve",
        "-m",
        model_uri,
        "--host",
        "127.0.0.1",
        "-p",
        str(port),
        "--env-manager",
        "local",
        "--workers",
        "1",
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")} | SERVER_ENV
    env["MLFLOW_TRACKING_URI"] = tracking_uri
    # it runs `uvicorn` from PATH, as in an activated virtualenv
    env["PATH"] = f"{MLFLOW.parent}{os.pathsep}{env.get('PATH', '')}"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            command,
            cwd=log_path.parent,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        _wait_healthy(proc, url, log_path, timeout, path="/ping", what="mlflow models serve")
        yield url
    finally:
        stop_process_group(proc)


def _wait_healthy(
    proc: subprocess.Popen, url: str, log_path: Path, timeout: float, path: str = "/health", what: str = "mlflow server"
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            pytest.fail(
                f"{what} exited with {proc.returncode} before answering {path}; {log_path}:\n{log_tail(log_path)}"
            )
        try:
            with urllib.request.urlopen(f"{url}{path}", timeout=2) as response:
                if response.status == 200:
                    return
        except (OSError, urllib.error.URLError):
            pass  # not listening yet
        if time.monotonic() > deadline:
            pytest.fail(f"{what} did not answer {url}{path} within {timeout:.0f} s; {log_path}:\n{log_tail(log_path)}")
        time.sleep(0.2)


def stop_process_group(proc: subprocess.Popen, grace: float = 15) -> None:
    """SIGTERM to the group led by ``proc`` (started with start_new_session=True), wait until the whole
    group is gone, SIGKILL what is still there after ``grace`` seconds. Reaps ``proc``."""
    pgid = proc.pid  # a session leader's group id is its own pid

    def signal_group(sig: int) -> bool:
        try:
            os.killpg(pgid, sig)
            return True
        except ProcessLookupError:  # nobody left in the group
            return False

    if signal_group(signal.SIGTERM):
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            proc.poll()  # reap the leader as soon as it exits, so it does not count as alive
            if not group_alive(pgid):
                break
            time.sleep(0.1)
        else:
            signal_group(signal.SIGKILL)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass


def group_alive(pgid: int) -> bool:
    """Whether a process of group ``pgid`` still runs. Zombies do not count: an init that does not reap
    orphans (a container without --init) would otherwise keep a stopped group "alive" forever."""
    if not Path("/proc/self/stat").exists():  # not Linux: signal 0 reaches zombies too, good enough
        try:
            os.killpg(pgid, 0)
            return True
        except ProcessLookupError:
            return False
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:  # gone meanwhile
            continue
        state, _ppid, pgrp = stat.rsplit(")", 1)[1].split()[:3]  # the command name may contain spaces
        if int(pgrp) == pgid and state != "Z":
            return True
    return False


def chromium_executable() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--window-size=1600,1000",
)


def chromium(
    url: str, *, screenshot: Path | None = None, dump_dom: bool = True, budget_ms: int = 15_000, timeout: float = 90
) -> str:
    """Load ``url`` in headless Chromium with a fresh profile; the DOM as rendered (``--dump-dom``), or ""
    when ``dump_dom`` is false; the page is also saved as a PNG at ``screenshot`` when given.

    ``--virtual-time-budget`` is what makes a single-page app render: without it Chromium dumps the
    DOM at the load event, before the app has fetched anything (MLflow's runs table is then empty).
    Virtual time waits for pending fetches and fast-forwards timers, so a 15 s budget takes ~2 s.
    """
    exe = chromium_executable()
    if exe is None:
        raise FileNotFoundError("no chromium (or chromium-browser) on PATH")
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        args = [exe, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--virtual-time-budget={budget_ms}"]
        if screenshot is not None:
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            screenshot.unlink(missing_ok=True)
            args.append(f"--screenshot={screenshot}")
        if dump_dom:
            args.append("--dump-dom")
        # own process group: on a timeout the renderer and zygote children go too, not just the parent
        proc = subprocess.Popen(
            [*args, url],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            stop_process_group(proc, grace=5)
            raise AssertionError(f"chromium did not finish {url} within {timeout:.0f} s") from None
        finally:
            if proc.poll() is None:
                stop_process_group(proc, grace=5)
    # no D-Bus in a container: Chromium logs its attempts as errors, which are noise here
    noise = ("dbus", "unexpected operator")
    errors = "\n".join(line for line in err.splitlines() if not any(n in line for n in noise))
    if proc.returncode != 0:
        raise AssertionError(f"chromium exited with {proc.returncode} on {url}:\n{errors[-3000:]}")
    if screenshot is not None and not screenshot.is_file():
        raise AssertionError(f"chromium wrote no screenshot to {screenshot}:\n{errors[-3000:]}")
    return out if dump_dom else ""
