"""The training options of issue 4 (schedules, callbacks, augmentation, label smoothing, precision),
each trained end to end on a slice of the real MNIST and checked in the real MLflow store."""

from __future__ import annotations

import math

import numpy as np
import pytest

from conftest import mlflow_client
from mnistlab.config import validate

SMALL = ["data.limit=256", "trainer.batch_size=64", "trainer.verbose=0", "model=tiny_cnn"]
STEPS_PER_EPOCH = 4  # 256 images / batch 64


@pytest.fixture
def train(compose_cfg, tmp_path, store, mnist_dir):
    """train(*overrides) -> (RunResult, the MLflow run): one real run, in this process."""
    from mnistlab import runner

    count = iter(range(100))

    def _train(*overrides: str):
        cfg = validate(compose_cfg([*SMALL, f"data.dir={mnist_dir}", f"tracking.uri={store}", *overrides]))
        out = tmp_path / f"run{next(count)}"
        out.mkdir()
        result = runner.run(cfg, str(out), run_name=",".join(overrides) or "defaults")
        return result, mlflow_client(store).get_run(result.run_id)

    yield _train
    import keras

    keras.mixed_precision.set_global_policy("float32")  # whatever a test left, the next starts clean


def _history(store: str, run_id: str, key: str) -> list[float]:
    return [m.value for m in sorted(mlflow_client(store).get_metric_history(run_id, key), key=lambda m: m.step)]


def _cosine(lr: float, step: float, steps: float, floor: float) -> float:
    return lr * ((1 - floor) * 0.5 * (1 + math.cos(math.pi * min(step, steps) / steps)) + floor)


# The learning rate after each of 4 epochs of 4 steps, from the formulas the YAML files document.
SCHEDULES = {
    "step": (
        ["scheduler=step", "scheduler.every_epochs=2", "scheduler.factor=0.5"],
        lambda lr, s: lr * 0.5 ** (s // 8),
    ),
    "exponential": (["scheduler=exponential", "scheduler.factor=0.8"], lambda lr, s: lr * 0.8 ** (s / 4)),
    "cosine": (
        ["scheduler=cosine", "scheduler.warmup_epochs=1", "scheduler.final_lr_fraction=0.1"],
        lambda lr, s: _cosine(lr, s - 4, 12, 0.1),
    ),
    "onecycle": (
        ["scheduler=onecycle", "scheduler.pct_start=0.25", "scheduler.div_factor=10", "scheduler.final_div_factor=100"],
        lambda lr, s: _cosine(lr, s - 4, 12, 1 / 1000),
    ),
}


@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_schedule_sets_the_learning_rate_logged_per_epoch(train, store, name):
    overrides, expected = SCHEDULES[name]
    result, run = train("trainer.epochs=4", "optimizer.lr=0.01", *overrides)
    assert run.data.params["scheduler.name"] == name
    logged = _history(store, result.run_id, "lr")
    assert logged == pytest.approx([expected(0.01, STEPS_PER_EPOCH * (e + 1)) for e in range(4)], rel=1e-5)
    assert len(set(logged)) > 1  # it did change


def test_warmup_starts_low_and_reaches_the_peak(train, store):
    """Cosine warmup over 2 of 4 epochs: half-way up after epoch 1, the peak after epoch 2."""
    result, _ = train("trainer.epochs=4", "optimizer.lr=0.02", "scheduler=cosine", "scheduler.warmup_epochs=2")
    lr = _history(store, result.run_id, "lr")
    assert lr[:2] == pytest.approx([0.01, 0.02], rel=1e-5) and lr[3] == pytest.approx(0, abs=1e-9)


def test_early_stopping_stops_and_the_best_epoch_is_tested(train, store, mnist_dir):
    """min_delta=0.5: no epoch after the first can count as an improvement, so with patience 2
    training stops after epoch 3 of 10; the weights tested are those of the best val_accuracy."""
    import mlflow.keras

    from mnistlab.data import load_mnist, prepare

    result, run = train(
        "trainer.epochs=10",
        "callbacks=early_stopping",
        "callbacks.early_stopping.patience=2",
        "callbacks.early_stopping.min_delta=0.5",
        "optimizer.lr=0.01",
    )
    val = _history(store, result.run_id, "val_accuracy")
    assert len(val) == 3 and run.data.metrics["epochs_run"] == 3 and run.info.status == "FINISHED"
    best = int(np.argmax(val))
    assert run.data.metrics["best_epoch"] == best + 1
    assert run.data.params["callbacks.early_stopping.enabled"] == "True"

    model = mlflow.keras.load_model(f"runs:/{result.run_id}/model")
    data = prepare(load_mnist(mnist_dir), val_split=0.1, limit=256, encoding="integer")
    reloaded = float(np.mean(model.predict(data.x_val, verbose=0).argmax(axis=1) == data.y_val))
    assert reloaded == pytest.approx(val[best], abs=1e-6)  # the logged model holds the best epoch's weights


def test_best_checkpoint_alone_trains_every_epoch(train, store, tmp_path):
    result, run = train("trainer.epochs=3", "callbacks=best_checkpoint", "callbacks.best_checkpoint.monitor=val_loss")
    val_loss = _history(store, result.run_id, "val_loss")
    assert len(val_loss) == 3 and run.data.metrics["best_epoch"] == int(np.argmin(val_loss)) + 1
    assert list(tmp_path.glob("run*/checkpoints/best.weights.h5"))


def test_augmentation_is_seeded_and_stays_out_of_the_logged_model(train, store):
    import mlflow.keras

    augment = ["data.augment.rotation=15", "data.augment.shift=0.1", "data.augment.zoom=0.1", "trainer.epochs=2"]
    first, run = train(*augment)
    again, _ = train(*augment)
    plain, _ = train("trainer.epochs=2")
    losses = [_history(store, r.run_id, "loss") for r in (first, again, plain)]
    assert losses[0] == losses[1]  # same seed, same distortions
    assert losses[0] != losses[2]  # and they did change the training images
    assert run.data.params["data.augment.rotation"] == "15.0"
    layers = [type(layer).__name__ for layer in mlflow.keras.load_model(f"runs:/{first.run_id}/model").layers]
    assert layers and not any(name.startswith("Random") for name in layers)


def test_label_smoothing_trains_towards_softened_targets(train):
    """With smoothing s the smallest possible cross-entropy is the entropy of the soft target
    (1 - s + s/10 for the true digit, s/10 for the others): no model scores below it."""
    s = 0.2
    _result, run = train("trainer.epochs=3", "optimizer.lr=0.01", f"loss.label_smoothing={s}")
    soft = np.array([1 - s + s / 10] + [s / 10] * 9)
    assert run.data.params["loss.label_smoothing"] == str(s)
    assert run.data.metrics["test_loss"] > -np.sum(soft * np.log(soft))
    assert run.data.metrics["test_accuracy"] > 0.3  # and it still learns digits


def test_mixed_bfloat16_computes_in_bfloat16_with_a_float32_output(train):
    import mlflow.keras

    short = ("trainer.epochs=3", "optimizer.lr=0.01")
    result, mixed = train(*short, "trainer.precision=mixed_bfloat16")
    assert mixed.data.params["trainer.precision_used"] == "mixed_bfloat16"
    model = mlflow.keras.load_model(f"runs:/{result.run_id}/model")
    assert model.layers[0].compute_dtype == "bfloat16" and model.layers[-1].compute_dtype == "float32"

    result, plain = train(*short)  # the next run in this process is float32 again
    assert plain.data.params["trainer.precision_used"] == "float32"
    assert mlflow.keras.load_model(f"runs:/{result.run_id}/model").layers[0].compute_dtype == "float32"
    # bfloat16 rounds differently, yet learns as well
    accuracies = [r.data.metrics["test_accuracy"] for r in (mixed, plain)]
    assert min(accuracies) > 0.5 and abs(accuracies[0] - accuracies[1]) < 0.1, accuracies


@pytest.mark.parametrize(
    "flags,expected",
    [
        ({"avx2", "avx512f"}, "float32"),
        ({"avx2", "avx512_bf16"}, "mixed_bfloat16"),
        ({"amx_bf16"}, "mixed_bfloat16"),
    ],
)
def test_auto_precision_follows_the_cpu(flags, expected):
    from mnistlab.train.runtime import resolve_precision

    assert resolve_precision("auto", cpu_flags=flags, gpu_capabilities=[]) == expected
    assert resolve_precision("float32", cpu_flags=flags, gpu_capabilities=[]) == "float32"


@pytest.mark.parametrize(
    "capability,expected", [((7, 5), "float32"), ((8, 0), "mixed_bfloat16"), ((9, 0), "mixed_bfloat16")]
)
def test_auto_precision_follows_the_gpu_when_there_is_one(capability, expected):
    """A GPU trains, whatever the CPU can do: a Turing card (7.5) has no bfloat16, an Ampere one (8.0) has."""
    from mnistlab.train.runtime import resolve_precision

    assert resolve_precision("auto", cpu_flags={"amx_bf16"}, gpu_capabilities=[capability]) == expected
    assert resolve_precision("auto", cpu_flags=set(), gpu_capabilities=[capability]) == expected


@pytest.mark.parametrize(
    "model,on_bf16_hardware",
    [("cnn", "mixed_bfloat16"), ("dense", "mixed_bfloat16"), ("tiny_cnn", "float32"), ("mlp12", "float32")],
)
def test_auto_is_the_default_and_each_model_says_what_it_picks(compose_cfg, model, on_bf16_hardware):
    """benchmarks/RESULTS.md (precision): bfloat16 ran cnn 1.7x and dense 1.1x as fast, accuracy tied;
    tiny_cnn ran slower, so its file keeps it in float32. Without native bfloat16, every model is float32."""
    from mnistlab.config import validate
    from mnistlab.train.runtime import resolve_precision

    cfg = validate(compose_cfg([f"model={model}"]))
    assert cfg.trainer.precision == "auto"
    choice = cfg.model.auto_precision
    assert resolve_precision("auto", choice, cpu_flags={"amx_bf16"}, gpu_capabilities=[]) == on_bf16_hardware
    assert resolve_precision("auto", choice, cpu_flags={"avx512f"}, gpu_capabilities=[]) == "float32"
    assert resolve_precision("float32", choice, cpu_flags={"amx_bf16"}, gpu_capabilities=[]) == "float32"
