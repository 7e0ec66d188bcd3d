"""A throwaway PostgreSQL cluster for tests: Debian's ``initdb`` and ``postgres`` run as the
``postgres`` user, listening on 127.0.0.1:<free port> and a socket in its own temp folder,
stopped by its pid at the end (also when a test fails) and deleted.

Plain helpers, not fixtures: a test module wraps them in fixtures of the scope it needs.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from servers import free_port, log_tail

USER = "postgres"


@dataclass(frozen=True)
class Postgres:
    port: int
    pid: int  # the postmaster
    folder: Path  # data/, the socket and the log

    def url(self, database: str, driver: str = "postgresql") -> str:
        """A SQLAlchemy URL, e.g. postgresql://postgres@127.0.0.1:5433/optuna (psycopg 3 under SQLAlchemy 2.1)."""
        return f"{driver}://{USER}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(host="127.0.0.1", port=self.port, user=USER, dbname="postgres", autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


def _as_postgres() -> list[str]:
    """Run a command as the postgres user (initdb and postgres refuse to run as root)."""
    return ["setpriv", f"--reuid={USER}", f"--regid={USER}", "--init-groups", "--"]


@contextmanager
def postgres_cluster(timeout: float = 60) -> Iterator[Postgres]:
    """initdb, start, yield, stop by pid, delete. Durability is switched off: nothing here must
    survive a crash, and fsync on this VM's disk costs seconds."""
    if not shutil.which("initdb") or not shutil.which("postgres"):
        pytest.fail("PostgreSQL is needed (Debian: apt-get install -y postgresql; initdb and postgres on PATH)")
    try:
        account = pwd.getpwnam(USER)
    except KeyError:
        pytest.fail(f"no {USER!r} user (Debian's postgresql package creates it)")
    folder = Path(tempfile.mkdtemp(prefix="mnistlab-pg-"))  # /tmp, not pytest's root-only tmp: postgres must enter it
    os.chown(folder, account.pw_uid, account.pw_gid)
    data, log_path = folder / "data", folder / "postgres.log"
    init = subprocess.run(
        [
            *_as_postgres(),
            "initdb",
            "-D",
            str(data),
            "-U",
            USER,
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if init.returncode:
        shutil.rmtree(folder, ignore_errors=True)
        pytest.fail(f"initdb failed: {init.stderr[-2000:]}")
    port = free_port()
    with open(log_path, "wb") as log:
        os.chown(log_path, account.pw_uid, account.pw_gid)
        proc = subprocess.Popen(
            [
                *_as_postgres(),
                "postgres",
                "-D",
                str(data),
                "-p",
                str(port),
                "-k",
                str(folder),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "max_connections=200",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:
        _wait_ready(proc, port, log_path, timeout)
        yield Postgres(port=port, pid=proc.pid, folder=folder)
    finally:
        _stop(proc)
        shutil.rmtree(folder, ignore_errors=True)


def _wait_ready(proc: subprocess.Popen, port: int, log_path: Path, timeout: float) -> None:
    import psycopg

    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            pytest.fail(f"postgres exited with {proc.returncode}; {log_path}:\n{log_tail(log_path)}")
        try:
            with psycopg.connect(host="127.0.0.1", port=port, user=USER, dbname="postgres", connect_timeout=2):
                return
        except psycopg.OperationalError:
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"postgres did not accept connections within {timeout:.0f} s; {log_tail(log_path)}")
        time.sleep(0.1)


def _stop(proc: subprocess.Popen) -> None:
    """SIGINT to the postmaster: PostgreSQL's fast shutdown (ends the sessions, then exits);
    SIGKILL to its process group if it is still there after 20 s."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(timeout=10)
