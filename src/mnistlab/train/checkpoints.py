"""Per-epoch checkpoints and resuming from them.

After every epoch a run writes ``<output dir>/checkpoints/epoch-NNNN.weights.h5`` (Keras's weights
file: the model's and the optimizer's variables, as BackupAndRestore keeps them) and then
``last.json``, which names that file and holds everything else a resume needs: the epochs done,
their metrics, the random generators' states, the callbacks' state, the MLflow run id and the
run's resolved config. ``last.json`` is replaced atomically, so an interrupt at any moment leaves
the previous complete epoch in place. No Keras here: finding what to resume must stay fast.
"""

from __future__ import annotations

import json
import os
import re
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mnistlab.core import processes
from mnistlab.core.errors import ConfigError, MnistlabError
from mnistlab.core.redaction import redact

try:
    import fcntl
except ImportError:  # Windows: no lock
    fcntl = None

CHECKPOINT_DIR = "checkpoints"
STATE_FILE = "last.json"
WEIGHTS_PATTERN = "epoch-*.weights.h5"
WEIGHTS_NAME = re.compile(r"epoch-\d{4,}\.weights\.h5")
RUN_ID = re.compile(r"[0-9a-f]{32}")
#: overrides allowed next to resume=...: they change where things are or what is printed, not the result
RESUME_OVERRIDES = ("resume", "trainer.verbose", "data.dir", "tracking.uri")


class CheckpointError(MnistlabError):
    """An epoch's checkpoint could not be written (a full disk, a folder that went away)."""


@dataclass(frozen=True)
class Checkpoint:
    """The last complete epoch of a run, as ``last.json`` describes it."""

    output_dir: Path
    state: dict[str, Any]

    @property
    def directory(self) -> Path:
        return self.output_dir / CHECKPOINT_DIR

    @property
    def epochs_done(self) -> int:
        return int(self.state["epochs_done"])

    @property
    def run_id(self) -> str:
        return self.state["run_id"]

    @property
    def weights(self) -> Path:
        """The weights file last.json names, which must be one of this folder's epoch files."""
        name = self.state["weights"]
        if not isinstance(name, str) or not WEIGHTS_NAME.fullmatch(name):
            raise ValueError(f"weights {name!r} is not an epoch file of this folder")
        return self.directory / name

    @property
    def config(self) -> dict[str, Any]:
        return self.state["config"]

    @property
    def train_time_s(self) -> float:
        """Training time of the parts before this checkpoint (a resumed run adds its own)."""
        return float(self.state.get("train_time_s", 0.0))

    @property
    def training_done(self) -> bool:
        """All epochs ran, or early stopping had already ended training."""
        return self.epochs_done >= self.config["trainer"]["epochs"] or bool(self.state.get("stopped_early"))


def write(directory: Path, epochs_done: int, weights_file: str, state: dict[str, Any]) -> None:
    """Commit epoch ``epochs_done``: its weights file is already written; replace last.json, then
    drop older weights files (never the one last.json names)."""
    state = {
        **state,
        "epochs_done": epochs_done,
        "weights": weights_file,
        "host": socket.gethostname(),
        "pid": os.getpid(),
    }
    tmp = directory / f".{STATE_FILE}.tmp"
    try:
        tmp.write_text(redact(json.dumps(state, indent=1)))  # the run's resolved config: no secret on disk
        os.replace(tmp, directory / STATE_FILE)
    except OSError as exc:  # the previous last.json stays whole: the last epoch that was written is resumable
        tmp.unlink(missing_ok=True)
        raise CheckpointError(f"could not checkpoint epoch {epochs_done} in {directory} ({exc})") from None
    for old in directory.glob(WEIGHTS_PATTERN):
        if old.name != weights_file:
            old.unlink(missing_ok=True)


def weights_name(epochs_done: int) -> str:
    return WEIGHTS_PATTERN.replace("*", f"{epochs_done:04d}")


def read(output_dir: Path) -> Checkpoint | None:
    path = output_dir / CHECKPOINT_DIR / STATE_FILE
    if not path.is_file():
        return None
    try:
        checkpoint = Checkpoint(output_dir, json.loads(path.read_text()))
        ok = (
            checkpoint.weights.is_file()
            and not checkpoint.weights.is_symlink()
            and checkpoint.epochs_done >= 1
            and isinstance(checkpoint.run_id, str)
            and RUN_ID.fullmatch(checkpoint.run_id) is not None
            and isinstance(checkpoint.config, dict)
        )
    except (OSError, ValueError, KeyError, TypeError):
        ok = False
    if not ok:
        raise ConfigError("resume", f"the checkpoint {path} is damaged or its weights file is missing", str(output_dir))
    return checkpoint


def remove(output_dir: Path) -> None:
    """A finished run needs no resume point (the best-epoch weights, if any, stay)."""
    directory = output_dir / CHECKPOINT_DIR
    for path in [
        directory / STATE_FILE,
        *directory.glob(WEIGHTS_PATTERN),
        *directory.glob(f"partial-{WEIGHTS_PATTERN}"),
    ]:
        path.unlink(missing_ok=True)


def locate(target: str, folder_of_run: Callable[[str], Path]) -> Checkpoint:
    """The checkpoint ``resume=target`` means: an output folder, or an MLflow run id, whose output
    folder ``folder_of_run`` finds (the run's record in the store)."""
    folder = Path(target).expanduser()
    if not folder.is_dir():
        if not RUN_ID.fullmatch(target):
            raise ConfigError("resume", "is neither an output folder nor an MLflow run id (32 hex digits)", target)
        folder = folder_of_run(target)
    checkpoint = read(folder.resolve())
    if checkpoint is None:
        raise ConfigError(
            "resume",
            f"{folder} holds no checkpoint ({CHECKPOINT_DIR}/{STATE_FILE}): no epoch of "
            "that run finished, or it finished and its checkpoint was removed",
            target,
        )
    if RUN_ID.fullmatch(target) and checkpoint.run_id != target:
        raise ConfigError("resume", f"the checkpoint in {folder} belongs to run {checkpoint.run_id}", target)
    pid = checkpoint.state.get("pid")
    if checkpoint.state.get("host") == socket.gethostname() and pid != os.getpid() and processes.alive(pid):
        raise ConfigError(
            "resume",
            f"the run is still training in process {pid} on this machine; stop it first "
            f"(kill -TERM {pid}) or wait for it",
            target,
        )
    return checkpoint


@contextmanager
def exclusive(directory: Path, run_id: str | None = None) -> Iterator[None]:
    """Hold the run's checkpoint folder for as long as it trains: a second process that would
    resume it at the same time (and log its epochs twice, or delete what the first one reads) is
    refused. The lock goes with the process, however it ends."""
    if fcntl is None:  # not POSIX: no lock
        yield
        return
    directory.mkdir(parents=True, exist_ok=True)
    fd = os.open(directory, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConfigError(
                "resume",
                f"run {run_id or directory.parent.name} is being trained or resumed by another "
                "process right now; wait for it to end, or stop it",
                str(directory.parent),
            ) from None
        yield
    finally:
        os.close(fd)  # closing releases the lock


def check_overrides(overrides: list[str]) -> None:
    """A resumed run keeps its own config: refuse command-line changes to anything that matters."""
    for override in overrides:
        key = override.split("=", 1)[0].lstrip("+~")
        if key not in RESUME_OVERRIDES:
            raise ConfigError(
                "resume",
                f"continues the run with its own config; {override!r} would change it "
                f"(allowed next to resume: {', '.join(RESUME_OVERRIDES[1:])})",
            )
