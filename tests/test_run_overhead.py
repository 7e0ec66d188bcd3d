"""What a run skips to start and finish sooner (issue 19's per-run overhead), checked by what the
process really imported and computed, each in a fresh interpreter: no timings here (those are
benchmarks/run_overhead.py's)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
from mlflow.tracking import MlflowClient

from conftest import ROOT, run_cli


def python(code: str, tmp_path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )


@pytest.mark.fast
def test_keras_loads_without_scikit_learn_and_matplotlib_which_stay_importable(tmp_path):
    proc = python(
        """
        import sys
        from mnistlab.core import imports
        with imports.without_unused():
            import keras
        print("during:", "sklearn" in sys.modules, "matplotlib" in sys.modules)
        import sklearn.base  # code that uses them still can
        import matplotlib.figure
        print("after:", sklearn.base.BaseEstimator.__name__, matplotlib.figure.Figure.__name__)
        """,
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["during:", "False", "False", "after:", "BaseEstimator", "Figure"]


@pytest.mark.fast
def test_keras_loads_with_scikit_learn_when_it_was_already_imported(tmp_path):
    # a module already loaded is left alone: the block only keeps an unused import from starting
    proc = python(
        """
        import sys
        import sklearn
        from mnistlab.core import imports
        with imports.without_unused():
            import keras
        print(sys.modules["sklearn"] is sklearn)
        """,
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["True"]


@pytest.mark.fast
def test_a_logged_model_pins_the_running_versions_without_mapping_every_package(tmp_path):
    # MLflow's requirement check builds a map of every installed distribution (the slow part of
    # logging a model); the pins are the running versions, so the model is logged without it
    proc = python(
        f"""
        import keras, mlflow, tensorflow as tf
        from mlflow.utils import requirements_utils
        from mlflow.utils import environment
        from mnistlab.tracking.models import log_keras_model
        check = environment.warn_dependency_requirement_mismatches
        mlflow.set_tracking_uri("sqlite:///{tmp_path}/mlflow.db")
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
        with mlflow.start_run() as run:
            log_keras_model(model, (4,), 3)
        print("mapped:", requirements_utils._MODULES_TO_PACKAGES is not None)
        print("restored:", environment.warn_dependency_requirement_mismatches is check)
        uri = mlflow.get_logged_model(mlflow.last_logged_model().model_id).artifact_location
        path = mlflow.artifacts.download_artifacts(uri + "/requirements.txt", dst_path="{tmp_path}")
        print("pins:", *open(path).read().split())
        print("expected:", f"mlflow=={{mlflow.__version__}}", f"tensorflow=={{tf.__version__}}",
              f"keras=={{keras.__version__}}")
        """,
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = dict(line.split(": ", 1) for line in proc.stdout.splitlines() if ": " in line)
    assert lines["mapped"] == "False" and lines["restored"] == "True"
    assert sorted(lines["pins"].split()) == sorted(lines["expected"].split())


def test_a_training_run_imports_neither_scikit_learn_scipy_stats_nor_matplotlib(tmp_path, mnist_dir, store):
    # the run's own entry, as `python run.py` starts it: nothing on its path imports scikit-learn,
    # nor scipy.stats (a second of start-up; one run's interval is reports.proportion's), nor
    # matplotlib (the figures' helper process draws), and the figures are still logged
    proc = python(
        f"""
        import atexit, os, runpy, sys
        os.environ.update(MNIST_DIR="{mnist_dir}", MLFLOW_TRACKING_URI="{store}", MNISTLAB_ROOT="{tmp_path}")
        sys.argv = ["run.py", "model=tiny_cnn", "data.limit=300", "trainer.epochs=1", "trainer.verbose=0"]

        @atexit.register  # run.py ends in exit_now(), which still runs the atexit handlers
        def report():
            print("sklearn imported:", "sklearn" in sys.modules, file=sys.stderr)
            print("scipy.stats imported:", "scipy.stats" in sys.modules, file=sys.stderr)
            print("matplotlib imported:", "matplotlib" in sys.modules, file=sys.stderr)

        runpy.run_path("{ROOT / "run.py"}", run_name="__main__")
        """,
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "sklearn imported: False" in proc.stderr
    assert "scipy.stats imported: False" in proc.stderr
    assert "matplotlib imported: False" in proc.stderr
    (run,) = MlflowClient(store).search_runs(["1"])
    logged = {a.path for a in MlflowClient(store).list_artifacts(run.info.run_id)}
    assert {"learning_curves.png", "confusion_matrix.png", "misclassified.png"} <= logged


def test_a_sweep_opens_its_parent_run_before_it_imports_matplotlib_or_scipy_stats(tmp_path, mnist_dir, store):
    # the sweep process sets up the parent run while its workers (joblib) wait for their first job:
    # the comparison's matplotlib and scipy.stats (about a second) wait for the sweep's summary
    (tmp_path / "probe_callback.py").write_text(
        textwrap.dedent(
            """
            import sys
            from hydra.experimental.callback import Callback

            class Probe(Callback):  # called after the sweep tracker, which comes first in hydra.callbacks
                def on_multirun_start(self, config, **kwargs):
                    loaded = [name for name in ("matplotlib", "scipy.stats") if name in sys.modules]
                    print("loaded when the parent run started:", *loaded or ["nothing"], file=sys.stderr)
            """
        )
    )
    proc = run_cli(
        "-m",
        "model=tiny_cnn",
        "data.limit=300",
        "trainer.epochs=1",
        "trainer.verbose=0",
        "tracking.log_model=false",
        "+hydra.callbacks.probe._target_=probe_callback.Probe",
        store=store,
        env={"PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "loaded when the parent run started: nothing" in proc.stderr
    (parent,) = MlflowClient(store).search_runs(["1"], "tags.`mnistlab.role` = 'sweep'")
    summary = {a.path for a in MlflowClient(store).list_artifacts(parent.info.run_id, "summary")}
    assert "summary/comparison.json" in summary  # the summary imported them, once the job was done


@pytest.mark.fast
def test_exit_now_finishes_every_write_python_would_before_it_skips_the_teardown(tmp_path):
    # run.py's last step: what Python's shutdown does before the interpreter's teardown must still
    # happen (threads joined, executors drained, atexit handlers, logging's files, buffered stdout)
    proc = python(
        """
        import atexit, concurrent.futures, logging, pathlib, threading, time
        from mnistlab.core.exits import exit_now

        def write_late(name):
            time.sleep(0.3)
            pathlib.Path(name).write_text("done")

        threading.Thread(target=write_late, args=("thread.txt",)).start()
        concurrent.futures.ThreadPoolExecutor(1).submit(write_late, "executor.txt")
        atexit.register(pathlib.Path("atexit.txt").write_text, "done")
        handler = logging.FileHandler("run.log", delay=True)
        logging.getLogger("job").addHandler(handler)
        logging.getLogger("job").warning("the last record")
        print("buffered, never flushed by hand")

        class Teardown:  # freed only by the interpreter's teardown, which exit_now skips
            def __del__(self):
                print("teardown ran")

        keep = Teardown()
        exit_now(3)
        """,
        tmp_path,
    )
    assert proc.returncode == 3, proc.stderr[-2000:]
    assert proc.stdout.splitlines() == ["buffered, never flushed by hand"]
    for name in ("thread.txt", "executor.txt", "atexit.txt"):
        assert (tmp_path / name).read_text() == "done", name
    assert (tmp_path / "run.log").read_text() == "the last record\n"


@pytest.mark.fast
def test_the_imports_are_frozen_once_so_a_later_runs_garbage_stays_collectable(tmp_path):
    # settle() after the first run's imports; a reused worker's later runs call it again, and what
    # the runs left in between (a model's reference cycles) must still be collected
    proc = python(
        """
        import gc, weakref
        from mnistlab.core import imports

        imports.settle()
        frozen = gc.get_freeze_count()

        class Model:  # a cycle, as a Keras model and its layers make one
            pass

        model = Model()
        model.me = model
        gone = weakref.ref(model)
        del model
        imports.settle()  # the next run
        print(frozen > 0, gc.get_freeze_count() == frozen)
        gc.collect()
        print(gone() is None)
        """,
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["True", "True", "True"]
