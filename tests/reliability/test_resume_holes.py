"""The ways resume= could be misused, tried for real (real runs interrupted by real signals, a real
sqlite store): two resumes at once, a FINISHED run's leftover checkpoint, an empty resume=, a
project folder that moved, a tampered checkpoint. Each is refused in one line, or continues the
run exactly once in the store it was told to use."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import time
from pathlib import Path

from conftest import error_lines, mlflow_client, run_cli
from reliability.test_interrupt_resume import interrupt_after_first_checkpoint, start, the_run

LONG = ("model=mlp12", "data.limit=2000", "trainer.epochs=40", "trainer.batch_size=64", "tracking.log_model=false")


def interrupted(store: str, name: str, *extra: str) -> tuple[str, Path]:
    """(run id, output folder) of a run stopped by Ctrl-C after its first checkpoint."""
    proc, folder = interrupt_after_first_checkpoint(store, signal.SIGINT, *LONG, f"tracking.run_name={name}", *extra)
    assert proc.returncode == 130, proc.stderr[-2000:]
    run = the_run(store, name)
    assert run.info.status == "KILLED"
    return run.info.run_id, folder


def points(store: str, run_id: str, key: str) -> list[int]:
    return sorted(m.step for m in mlflow_client(store).get_metric_history(run_id, key))


def locked(folder: Path) -> bool:
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def test_a_second_resume_of_the_same_run_is_refused_while_the_first_runs(store):
    run_id, folder = interrupted(store, "twice")
    first = start(store, f"resume={run_id}")
    try:
        deadline = time.monotonic() + 120
        while not locked(folder / "checkpoints") and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert first.poll() is None, first.communicate()[1][-2000:]
        second = run_cli(f"resume={run_id}", store=store)
        while "resumed" not in the_run(store, "twice").data.tags and time.monotonic() < deadline:
            time.sleep(0.2)  # the first has reopened the run
        assert second.returncode == 2
        (line,) = error_lines(second)
        assert line.startswith("error: resume=") and ("right now" in line or "still training" in line), line
        first.send_signal(signal.SIGINT)
        first.communicate(timeout=120)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    steps = points(store, run_id, "loss")
    assert steps == sorted(set(steps)) == list(range(len(steps)))  # every epoch once: the second never ran
    assert the_run(store, "twice").data.tags["resumed"] == "1"


def test_a_finished_runs_leftover_checkpoint_does_not_reopen_it(store, tmp_path):
    run_id, folder = interrupted(store, "done")
    kept = tmp_path / "kept"
    shutil.copytree(folder / "checkpoints", kept)
    done = run_cli(f"resume={run_id}", "trainer.verbose=0", store=store, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert the_run(store, "done").info.status == "FINISHED"
    shutil.rmtree(folder / "checkpoints")
    shutil.copytree(kept, folder / "checkpoints")  # as if the end of the run had not removed it
    before = points(store, run_id, "loss")
    for target in (str(folder), run_id):
        proc = run_cli(f"resume={target}", store=store)
        assert proc.returncode == 2
        assert error_lines(proc) == [
            f"error: resume={target!r}: that run is FINISHED ({run_id}); there is nothing to resume"
        ]
    assert points(store, run_id, "loss") == before and the_run(store, "done").info.status == "FINISHED"


def test_an_empty_resume_is_refused_and_other_overrides_first(store):
    proc = run_cli("resume=", store=store)
    assert proc.returncode == 2
    assert error_lines(proc) == [
        "error: resume='': is empty: give the MLflow run id or the output folder of the run "
        "to continue (an unset variable?), or leave resume out to start a new run"
    ]
    proc = run_cli("resume=", "trainer.epochs=0", store=store)  # the resume rule comes before the epochs'
    assert proc.returncode == 2
    (line,) = error_lines(proc)
    assert line.startswith("error: resume:") and "'trainer.epochs=0' would change it" in line
    assert not Path(store[len("sqlite:///") :]).exists()


def test_a_moved_project_resumes_into_the_store_named_on_the_command_line(tmp_path):
    old = tmp_path / "old"
    old.mkdir()
    store = f"sqlite:///{old / 'mlflow.db'}"
    run_id, folder = interrupted(store, "moved")
    new = tmp_path / "new"
    shutil.move(old, new)
    new_store = f"sqlite:///{new / 'mlflow.db'}"
    moved_folder = new / folder.relative_to(old)
    proc = run_cli(
        f"resume={moved_folder}",
        f"tracking.uri={new_store}",
        "trainer.verbose=0",
        env={"MNISTLAB_ROOT": str(new)},
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert not old.exists()  # nothing created where the project used to be
    run = mlflow_client(new_store).get_run(run_id)
    assert run.info.status == "FINISHED" and "test_accuracy" in run.data.metrics
    assert points(new_store, run_id, "loss") == list(range(40))


def test_a_tampered_checkpoint_is_refused_before_the_run_reopens(store, tmp_path):
    _, folder = interrupted(store, "tampered")
    last = folder / "checkpoints" / "last.json"
    state = json.loads(last.read_text())
    original = dict(state)
    tags_before = the_run(store, "tampered").data.tags
    state["weights"] = "../../../../../../etc/hostname"
    last.write_text(json.dumps(state))
    proc = run_cli(f"resume={folder}", store=store)
    assert proc.returncode == 2
    assert error_lines(proc) == [
        f"error: resume={str(folder)!r}: the checkpoint {last} is damaged or its weights file is missing"
    ]
    # another model's weights under the right name
    _, other = interrupted(store, "other", "model=dense512")
    other_weights = json.loads((other / "checkpoints" / "last.json").read_text())["weights"]
    last.write_text(json.dumps(original))
    shutil.copy(other / "checkpoints" / other_weights, folder / "checkpoints" / original["weights"])
    proc = run_cli(f"resume={folder}", store=store)
    assert proc.returncode == 2
    assert len(error_lines(proc)) == 1, error_lines(proc)
    line = error_lines(proc)[-1]
    assert line.startswith(f"error: resume={str(folder)!r}: the checkpoint's weights") and "do not fit" in line, (
        proc.stderr[-3000:]
    )
    run = the_run(store, "tampered")
    assert run.info.status == "KILLED" and run.data.tags == tags_before  # never reopened
