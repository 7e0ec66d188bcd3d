"""Whether a process recorded earlier (a checkpoint's trainer, a search trial's worker) still runs.

One place for it: a killed process's zombie, and a pid the system reused for another process,
must both count as gone.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def _stat(pid: int) -> list[str] | None:
    """/proc/<pid>/stat after the command name (which may hold spaces), or None off Linux or when gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (tells a reused pid from the original)."""
    fields = _stat(pid)
    return fields[19] if fields and len(fields) > 19 else None


def alive(pid: Any, started: Any = None) -> bool:
    """``pid`` runs and is not a zombie; with ``started`` (from ``start_time``), it is also the same
    process that was recorded."""
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: it exists
        pass
    fields = _stat(pid)
    if fields and fields[0] == "Z":
        return False
    return started is None or start_time(pid) in (None, started)


def age() -> float | None:
    """Seconds since this process started (Linux), or None where /proc cannot tell."""
    fields = _stat(os.getpid())
    try:
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return uptime - int(fields[19]) / os.sysconf("SC_CLK_TCK") if fields else None
    except (OSError, ValueError, IndexError):
        return None
