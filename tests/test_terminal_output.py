"""What a user sees: a run prints only mnistlab's lines, Keras's progress and the summary (no
TensorFlow start-up chatter); run.log holds the same; a refused command leaves no folder behind."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from conftest import run_cli
from mnistlab.core import quiet, transcript

TINY = ("model=tiny_cnn", "data.limit=300", "trainer.epochs=2", "tracking.log_model=false")
OURS = [
    r"\[\d{4}-\d\d-\d\d [\d:,]+\]\[mnistlab[.\w]*\]\[(INFO|WARNING)\] - .+",  # mnistlab's log records
    r"Epoch \d+/\d+",  # Keras's progress, one line per epoch when not on a terminal
    r"\d+/\d+ - \d+m?s - \d+m?s/step - accuracy: [\d.]+ - loss: .+",
    r"(model|test|time|MLflow run|look at it) +\S.+",  # the summary
    r" {12}then http://127\.0\.0\.1:5000/#/experiments/\d+/runs/\w+\?workflowType=machine_learning",
]


def root_of(store: str) -> Path:
    return Path(store[len("sqlite:///") :]).parent


def test_a_run_prints_only_its_own_lines_and_run_log_holds_them(store):
    proc = run_cli(*TINY, store=store)
    assert proc.returncode == 0, proc.stderr[-3000:]
    printed = [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]
    strangers = [line for line in printed if not any(re.fullmatch(p, line) for p in OURS)]
    assert strangers == []
    assert sum(line.startswith("Epoch ") for line in printed) == 2
    (log,) = root_of(store).glob("outputs/runs/*/run.log")
    logged = log.read_text().splitlines()
    assert [line for line in printed if not line.startswith("[")] == [
        line for line in logged if not line.startswith("[")
    ]  # the epochs and the summary, as the terminal showed them
    assert [line for line in logged if line.startswith("[")] == [line for line in printed if line.startswith("[")]


def test_a_failed_run_keeps_its_folder_and_the_error_line_in_run_log(store, tmp_path):
    proc = run_cli(*TINY, f"data.dir={tmp_path / 'no-such-folder'}", store=store)
    assert proc.returncode != 0
    error = proc.stderr.strip().splitlines()[-1]
    assert error.startswith("error: ") and "no-such-folder" in error
    logs = list(root_of(store).glob("outputs/runs/*/run.log"))
    assert len(logs) == 1 and logs[0].read_text().splitlines()[-1] == error


@pytest.mark.parametrize("override", ["optimizer.lr=-1", "model.layers.0.type=Nope", "resume=nope"])
def test_a_refused_command_leaves_no_folder_behind(store, override):
    proc = run_cli(*TINY, override, store=store)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.startswith("error: ")
    assert not (root_of(store) / "outputs").exists()


def test_a_refused_command_keeps_a_folder_that_holds_more_than_hydra_put_there(store, tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    proc = run_cli(*TINY, "optimizer.lr=-1", f"hydra.run.dir={mine}", store=store)
    assert proc.returncode == 2
    assert (mine / "notes.txt").read_text() == "keep me"


@pytest.mark.fast
def test_the_chatter_filter_drops_tensorflow_start_up_lines_and_keeps_its_errors():
    text = (
        "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
        "I0000 00:00:1796220290.390516    3243 port.cc:153] oneDNN custom operations are on.\n"
        "E0000 00:00:1796220293.876138    3243 cuda_platform.cc:52] failed call to cuInit: UNKNOWN ERROR (303)\n"
        "E0000 00:00:1796220293.876138    3243 op_kernel.cc:1841] OP_REQUIRES failed: out of memory\n"
        "Traceback (most recent call last):\n"
    )
    assert quiet.filtered(text) == (
        "E0000 00:00:1796220293.876138    3243 op_kernel.cc:1841] OP_REQUIRES failed: out of memory\n"
        "Traceback (most recent call last):\n"
    )


@pytest.mark.fast
@pytest.mark.parametrize(
    ("drawn", "shown"),
    [
        ("plain", "plain"),
        ("1/3 [==>   ]\r2/3 [====> ]\r3/3 [======]  ", "3/3 [======]"),
        ("12345\b\b\b\bab", "1ab"),
        ("\x1b[1m3/3\x1b[0m \x1b[32m━━\x1b[0m done", "3/3 ━━ done"),
    ],
)
def test_a_redrawn_line_is_logged_as_it_finally_reads(drawn, shown):
    assert transcript.final_state(drawn) == shown
