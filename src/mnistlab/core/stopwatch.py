"""Where a run's time goes, phase by phase."""

from __future__ import annotations

import time

from mnistlab.core import processes

_started_once = False  # a launcher's reused worker: its later runs did not pay for the start-up


class Stopwatch:
    """Where a run's time goes, phase by phase (the ``time_<phase>_s`` metrics); ``startup`` is
    what the process spent before its first run began (Python, Hydra, the config)."""

    def __init__(self) -> None:
        global _started_once
        self.last = time.perf_counter()
        age = None if _started_once else processes.age()
        _started_once = True
        self.laps: dict[str, float] = {"startup": age} if age is not None else {}

    def lap(self, phase: str) -> None:
        now = time.perf_counter()
        self.laps[phase] = self.laps.get(phase, 0.0) + now - self.last
        self.last = now
