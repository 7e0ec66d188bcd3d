"""A real Ray head for tests, inside a private network namespace, stopped by its pid.

Ray's processes open many ports (GCS, raylet, object manager, agents, one per worker), which
interfaces they bind differs between versions and components, and anyone who reaches them runs code
on the machine. So the head runs in a network namespace of its own (``unshare -n``: only a loopback interface, nothing
else on this machine or the network can reach it) and with token authentication (``RAY_AUTH_MODE=token``,
a random ``RAY_AUTH_TOKEN``). Drivers join that namespace with ``nsenter --net=/proc/<head pid>/ns/net``.

It is stopped by its pid (``ray stop`` would stop every Ray process of the machine, also other
people's): SIGTERM to ``ray start --block``, which ends the processes it started; whatever is then
still in the namespace (the namespace is ours alone; workers run in process groups of their own, so
the head's group alone would miss them) gets SIGKILL, by pid.

Plain helpers, not fixtures: tests/test_ray.py wraps them in a module-scoped fixture.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from servers import free_port, group_alive, log_tail, stop_process_group

RAY = Path(sys.executable).with_name("ray")  # the virtualenv's, as for mlflow in servers.py
STARTED = "Ray runtime started"  # what `ray start` prints once every head process is up
UNIX_SOCKET_MAX = 107  # bytes in an AF_UNIX path; Ray puts its sockets under --temp-dir/session_.../sockets/
SESSION_SUFFIX = len("/session_2026-11-22_14-27-22_256584_1234567/sockets/plasma_store")

NODE_ONLY = "set by ray start"  # $NODE_ONLY on the head, nowhere else

# Variables a test host may have that would point Ray (or the jobs) elsewhere, or hand the head what
# its jobs must get from the launcher config (hydra.launcher.ray.init.runtime_env) instead.
HEAD_ENV_DROP = (
    "RAY_ADDRESS",
    "RAY_AUTH_MODE",
    "RAY_AUTH_TOKEN",
    "RAY_AUTH_TOKEN_PATH",
    "MNIST_DIR",
    "MLFLOW_TRACKING_URI",
    "HYDRA_FULL_ERROR",
    "TF_CPP_MIN_LOG_LEVEL",
)


@dataclass
class RayHead:
    pid: int  # `ray start --head --block`; also its process group id and the namespace's first process
    port: int  # the GCS port, inside the namespace
    token: str  # RAY_AUTH_TOKEN of the cluster
    temp_dir: Path  # --temp-dir: session folders, logs (worker-*.out), sockets
    netns: str  # the namespace, as readlink /proc/<pid>/ns/net says it: net:[<inode>]
    log_path: Path
    proc: subprocess.Popen
    started_s: float = 0.0  # seconds from `ray start` to STARTED
    memory: dict[str, dict] = field(default_factory=dict)  # label -> head_memory() then (idle, peak of a sweep)
    listeners: set[tuple[int, str]] = field(default_factory=set)  # (port, bound address) seen by watch()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def driver_env(self, env: dict[str, str]) -> dict[str, str]:
        """``env`` plus what a driver needs to reach this cluster (address and token)."""
        return {**env, "RAY_ADDRESS": self.address, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": self.token}

    def session_logs(self) -> Path:
        return self.temp_dir / "session_latest" / "logs"


def check_can_run() -> None:
    """Skip (fail in CI) where the head cannot run as this module runs it."""
    why = None
    if not RAY.exists():
        why = f"Ray is not installed next to {sys.executable} (pip install -e .[ray])"
    elif not all(shutil.which(tool) for tool in ("unshare", "nsenter", "ip")):
        why = "needs unshare, nsenter (util-linux) and ip (iproute2)"
    elif os.geteuid() != 0:
        why = "needs root for unshare -n / nsenter (a private network namespace for the Ray head)"
    else:
        probe = subprocess.run(["unshare", "-n", "ip", "link", "set", "lo", "up"], capture_output=True, text=True)
        if probe.returncode != 0:
            why = f"cannot create a network namespace here: {probe.stderr.strip()[:300]}"
    if why:
        if os.environ.get("CI"):
            pytest.fail(why)
        pytest.skip(why)


def netns_of(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/net")
    except OSError:  # gone, or a zombie
        return None


def pids_in_netns(netns: str) -> list[int]:
    """Live processes (not zombies) in the network namespace ``netns``."""
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            state = Path(entry.path, "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state != "Z" and netns_of(int(entry.name)) == netns:
            found.append(int(entry.name))
    return found


def _parent(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return 0


def head_processes(head: RayHead) -> list[int]:
    """The head's processes: `ray start` and its descendants (its daemons and the workers, which
    the raylet starts in process groups of their own), not the drivers that joined its namespace."""
    found = []
    for pid in pids_in_netns(head.netns):
        ancestor = pid
        while ancestor > 1 and ancestor != head.pid:
            ancestor = _parent(ancestor)
        if ancestor == head.pid:
            found.append(pid)
    return found


def head_memory(head: RayHead) -> dict:
    """Memory of head_processes(): RSS summed (counts shared pages once per process) and PSS summed
    (shares them out: the better total), in MiB, and how many processes."""
    rss = pss = 0
    count = 0
    for pid in head_processes(head):
        try:
            rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
        except OSError:
            continue
        count += 1
        rss += int(re.search(r"^Rss:\s+(\d+) kB", rollup, re.M).group(1))
        pss += int(re.search(r"^Pss:\s+(\d+) kB", rollup, re.M).group(1))
    return {"processes": count, "rss_mib": round(rss / 1024), "pss_mib": round(pss / 1024)}


@contextmanager
def watch(head: RayHead, label: str, every: float = 0.5) -> Iterator[None]:
    """While the block runs, sample head_memory() (the largest PSS sample goes to head.memory[label])
    and the namespace's listening sockets (into head.listeners: does anything bind beyond loopback?)."""
    stop = threading.Event()
    peak: dict = {}

    def sample() -> None:
        while not stop.wait(every):
            now = head_memory(head)
            if now["pss_mib"] > peak.get("pss_mib", -1):
                peak.update(now)
            head.listeners.update(listening_ports(head.pid).items())

    thread = threading.Thread(target=sample, name="ray-watch", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=10)
        head.memory[label] = peak


def listening_ports(pid: int) -> dict[int, str]:
    """TCP ports listened on in ``pid``'s network namespace -> the address bound."""
    ports: dict[int, str] = {}
    for name in ("tcp", "tcp6"):
        try:
            lines = Path(f"/proc/{pid}/net/{name}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            local, _remote, state = line.split()[1:4]
            if state == "0A":  # LISTEN
                address, port = local.rsplit(":", 1)
                ports[int(port, 16)] = _address(address)
    return ports


def _address(hexed: str) -> str:
    """/proc/net/tcp*'s address (32-bit words in host order, here little-endian) as text."""
    raw = b"".join(bytes.fromhex(hexed[i : i + 8])[::-1] for i in range(0, len(hexed), 8))
    return socket.inet_ntop(socket.AF_INET if len(raw) == 4 else socket.AF_INET6, raw)


def host_addresses() -> list[str]:
    """Every address of this machine's interfaces (in the tests' own namespace), IPv6 link-local
    ones with their interface."""
    out = subprocess.run(["ip", "-j", "addr", "show"], capture_output=True, text=True, check=True).stdout
    addresses = []
    for interface in json.loads(out):
        for info in interface.get("addr_info", []):
            address = info["local"]
            if info.get("scope") == "link" and ":" in address:
                address += f"%{interface['ifname']}"
            addresses.append(address)
    return addresses


def reachable(address: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    try:
        target = socket.getaddrinfo(address, port, family, socket.SOCK_STREAM)[0][4]
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.settimeout(2)
            sock.connect(target)
        return True
    except OSError:
        return False


def start_in_netns(head: RayHead, argv: list[str], env: dict[str, str], cwd: Path | None = None) -> subprocess.Popen:
    """Start ``argv`` inside the head's network namespace (nsenter execs it: same pid), in a session
    of its own; its output piped."""
    return subprocess.Popen(
        ["nsenter", f"--net=/proc/{head.pid}/ns/net", "--", *argv],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def finish(proc: subprocess.Popen, timeout: float = 300) -> subprocess.CompletedProcess:
    """Wait for ``proc`` (from start_in_netns); on a timeout its process group is stopped and the test fails."""
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        stop_process_group(proc, grace=5)
        out, err = proc.communicate()
        pytest.fail(f"{' '.join(proc.args[3:7])}... did not end within {timeout:.0f} s; stderr:\n{err[-3000:]}")
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def in_netns(
    head: RayHead, argv: list[str], env: dict[str, str], cwd: Path | None = None, timeout: float = 300
) -> subprocess.CompletedProcess:
    """Run ``argv`` inside the head's network namespace, to its end (see start_in_netns, finish)."""
    return finish(start_in_netns(head, argv, env, cwd), timeout)


@contextmanager
def ray_head(tmp: Path, num_cpus: int = 2, timeout: float = 120) -> Iterator[RayHead]:
    """``ray start --head --block`` in a fresh network namespace, with token auth, its temp dir in
    ``tmp``; yields once it says it started. Stopped on exit (also when the test fails) by its pid;
    raises AssertionError when a process of it is left over (after killing it)."""
    check_can_run()
    temp_dir = tmp / "ray"
    if len(str(temp_dir)) + SESSION_SUFFIX > UNIX_SOCKET_MAX:  # e.g. pytest-xdist's popen-gw<n> folders
        temp_dir = Path(tempfile.mkdtemp(prefix="ray-"))
    temp_dir.mkdir(parents=True, exist_ok=True)
    assert len(str(temp_dir)) + SESSION_SUFFIX <= UNIX_SOCKET_MAX, (
        f"--temp-dir {temp_dir} is too long for Ray's unix sockets; use a shorter --basetemp"
    )
    log_path = tmp / "head.log"
    port = free_port()  # free on this machine too: shows that the head's port is not reachable from here
    token = secrets.token_hex(24)
    env = {k: v for k, v in os.environ.items() if k not in HEAD_ENV_DROP and not k.startswith("MNISTLAB_")}
    env |= {
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": token,
        "RAY_USAGE_STATS_ENABLED": "0",
        "NODE_ONLY": NODE_ONLY,  # in the node's environment only: shows what a worker gets from there
        # SIGTERM to `ray start --block` first asks the GCS to drain the node (up to 30 s); a test
        # head has nothing to drain
        "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0",
    }
    command = [
        str(RAY),
        "start",
        "--head",
        "--block",
        "--node-ip-address=127.0.0.1",
        f"--port={port}",
        f"--num-cpus={num_cpus}",
        "--include-dashboard=false",
        "--disable-usage-stats",
        f"--temp-dir={temp_dir}",
        "--object-store-memory=100000000",
    ]  # the default is 30% of RAM; the jobs pass tiny objects
    # bring up the namespace's loopback, then become `ray start` (exec: the pid stays the same)
    script = 'ip link set lo up && exec "$@"'
    started = time.monotonic()
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            ["unshare", "--net", "bash", "-c", script, "ray-head", *command],
            cwd=tmp,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    netns, own = None, netns_of(os.getpid())
    try:
        deadline = started + timeout
        while STARTED not in log_path.read_text(errors="replace"):
            if netns is None and netns_of(proc.pid) not in (None, own):  # known early: stop_head cleans it
                netns = netns_of(proc.pid)
            if proc.poll() is not None:
                pytest.fail(f"ray start exited with {proc.returncode}; {log_path}:\n{log_tail(log_path)}")
            if time.monotonic() > deadline:
                pytest.fail(f"ray start did not start within {timeout:.0f} s; {log_path}:\n{log_tail(log_path)}")
            time.sleep(0.2)
        netns = netns_of(proc.pid)
        assert netns and netns != own, (netns, "the head is not in a network namespace of its own")
        head = RayHead(
            proc.pid, port, token, temp_dir, netns, log_path, proc, started_s=round(time.monotonic() - started, 1)
        )
        head.memory["idle"] = head_memory(head)
        head.listeners.update(listening_ports(head.pid).items())
        yield head
    finally:
        left = stop_head(proc, netns)
        if not temp_dir.is_relative_to(tmp):  # the short folder made above
            shutil.rmtree(temp_dir, ignore_errors=True)
    # (not when the block failed: that error is the one to see; the head is stopped all the same)
    assert not left, f"processes of the Ray head were left and had to be killed: {left}"


def stop_head(proc: subprocess.Popen, netns: str | None, grace: float = 30) -> list[str]:
    """Stop the head by its pid: SIGTERM to `ray start` (it ends what it started), then its process
    group, then SIGKILL, by pid, to whatever is still in its namespace. Returns what had to be killed
    after the grace period (empty: it all ended by itself)."""

    def leftovers() -> list[int]:
        proc.poll()  # reap the leader, so that it does not count as alive
        in_ns = pids_in_netns(netns) if netns else []
        return sorted(set(in_ns) | ({proc.pid} if group_alive(proc.pid) else set()))

    if proc.poll() is None:
        try:
            os.kill(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + grace
    while leftovers() and time.monotonic() < deadline:
        time.sleep(0.2)
    left = leftovers()
    described = [f"{pid} {_cmdline(pid)}" for pid in left]
    if left:
        stop_process_group(proc, grace=5)
        for pid in leftovers():  # in our private namespace: ours alone
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 10
        while leftovers() and time.monotonic() < deadline:
            time.sleep(0.2)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass
    still = leftovers()
    if still:
        described.append(f"still alive after SIGKILL: {still}")
    return described


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")[:120]
    except OSError:
        return "?"
