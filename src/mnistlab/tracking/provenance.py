"""Where a run came from and what is needed to repeat it: the checkout's commit and changes, the
machine, the packages, the command line. No TensorFlow import: a sweep's launcher process records
the same without loading it."""

from __future__ import annotations

import functools
import os
import platform
import shlex
import socket
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, distributions
from importlib.metadata import version as distribution_version
from pathlib import Path

import mnistlab
from mnistlab.core.redaction import redact


def installed_packages() -> str:
    """pip freeze, without running pip: every distribution in this environment, name==version.
    A reused worker's later runs reuse the list while no folder on sys.path has changed (an install
    or removal changes its folder's time): reading every distribution's metadata took 0.2 s a run."""
    return _freeze(tuple(_folder_time(entry) for entry in sys.path))


@functools.lru_cache(maxsize=1)
def _freeze(folders: tuple[tuple[str, int | None], ...]) -> str:
    metadata = [d.metadata for d in distributions()]  # parsed once each: a quarter of the time of d.version's
    names = {f"{m['Name']}=={m['Version']}" for m in metadata if m["Name"]}
    return "\n".join(sorted(names, key=str.lower)) + "\n"


def _folder_time(entry: str) -> tuple[str, int | None]:
    try:
        return entry, os.stat(entry or ".").st_mtime_ns
    except OSError:
        return entry, None


def environment_tags(root_dir: str, output_dir: str) -> dict[str, str]:
    """What is needed to know where a run came from and to repeat it (no TensorFlow import:
    a sweep's launcher process records the same without loading it)."""
    commit = git(code_dir(root_dir), "rev-parse", "HEAD")
    dirty = git(code_dir(root_dir), "status", "--porcelain", "--untracked-files=no")
    return {
        "git.commit": commit or "unknown (not a git checkout)",
        "git.dirty": "unknown" if commit is None else str(bool(dirty)).lower(),
        "hostname": socket.gethostname(),
        "host.cpu": cpu_model(),
        "host.cores": str(os.cpu_count()),
        "host.os": platform.platform(),
        "command": redact(os.environ.get("MNISTLAB_COMMAND") or shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]])),
        "version.python": platform.python_version(),
        "version.tensorflow": version("tensorflow", "tensorflow-cpu", "tensorflow-macos", "tf-nightly"),
        "version.keras": version("keras"),
        "version.mlflow": version("mlflow"),
        "version.mnistlab": mnistlab.__version__,
        "hydra.output_dir": output_dir,
    }


def code_dir(root_dir: str) -> str:
    """The checkout the code runs from (run.py's folder), whose git state a run records; outputs
    may go elsewhere (MNISTLAB_ROOT)."""
    return os.environ.get("MNISTLAB_CODE_DIR") or root_dir


def cpu_model() -> str:
    """The CPU's marketing name (results differ across CPU models: instruction sets, thread counts)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def version(*names: str) -> str:
    """The installed version of the first of these distributions (names of one package)."""
    for name in names:
        try:
            return distribution_version(name)
        except PackageNotFoundError:
            continue
    return "not installed"


def git(cwd: str, *args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None
