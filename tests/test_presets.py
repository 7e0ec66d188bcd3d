"""The experiment presets of experiments/: the published baselines, the sweep of all six, and
the presets that beat them. Composed through Hydra exactly as `python run.py experiment=...`."""

from __future__ import annotations

import pytest

from conftest import ROOT, mlflow_client, run_cli
from mnistlab.config import validate

#: issue 4's reference table: preset -> (model, optimizer, loss, epochs, batch size)
BASELINES = {
    "baseline_conv64": ("cnn", "adam", "crossentropy", 5, 32),
    "baseline_conv32": ("cnn32", "adam", "crossentropy", 10, 200),
    "baseline_dense512x2": ("dense", "adam", "crossentropy", 8, 32),
    "baseline_mlp12": ("mlp12", "sgd", "mse", 30, 32),
    "baseline_tiny_cnn": ("tiny_cnn", "adam", "mse", 5, 32),
    "baseline_dense512": ("dense512", "rmsprop", "crossentropy", 5, 128),
}
BEST = ("best_tiny_cnn", "best_cnn", "best_dense")
PRESETS = sorted(p.stem for p in (ROOT / "experiments").glob("*.yaml"))


@pytest.mark.fast
def test_every_preset_of_the_issue_exists():
    assert {*BASELINES, *BEST} <= set(PRESETS)
    assert (ROOT / "conf" / "sweep" / "baselines.yaml").is_file()


@pytest.mark.fast
@pytest.mark.parametrize("preset", PRESETS)
def test_each_preset_composes_and_validates(compose_cfg, preset):
    cfg = validate(compose_cfg([f"experiment={preset}"]))
    assert cfg.tracking.tags.preset == preset


@pytest.mark.fast
@pytest.mark.parametrize("preset", sorted(BASELINES))
def test_baseline_presets_match_the_published_setup(compose_cfg, preset):
    cfg = validate(compose_cfg([f"experiment={preset}"]))
    setup = (cfg.model.name, cfg.optimizer.name, cfg.loss.name, cfg.trainer.epochs, cfg.trainer.batch_size)
    assert setup == BASELINES[preset]
    # nothing beyond the published recipe: Keras's default optimizer, no schedule, no extras
    assert cfg.scheduler.name == "constant" and cfg.loss.label_smoothing == 0
    assert not (cfg.callbacks.early_stopping.enabled or cfg.callbacks.best_checkpoint.enabled)
    assert not any(cfg.data.augment.values())


def _keras_model(cfg):
    from mnistlab.build.model import build_model

    return build_model(cfg.model.name, cfg.model.layers, (28, 28, 1), 10)


@pytest.mark.fast
@pytest.mark.parametrize("preset", BEST)
def test_best_presets_keep_their_architecture_character(compose_cfg, preset):
    cfg = validate(compose_cfg([f"experiment={preset}"]))
    model = _keras_model(cfg)
    convs = [layer for layer in model.layers if type(layer).__name__ == "Conv2D"]
    dense = [layer for layer in model.layers if type(layer).__name__ == "Dense"]
    if preset == "best_tiny_cnn":
        assert convs and model.count_params() < 10_000
    elif preset == "best_cnn":
        assert 64 in [c.filters for c in convs] and 128 in [d.units for d in dense]
    else:
        assert not convs and [d.units for d in dense[:-1]] == [512, 512]
    assert cfg.scheduler.name != "constant" and any(cfg.data.augment.values())
    assert any(type(layer).__name__ == "BatchNormalization" for layer in model.layers)


def test_baselines_sweep_runs_all_six_as_one_sweep(tmp_path):
    """`-m sweep=baselines`, shrunk by command-line overrides (they win over the presets' values)."""
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    proc = run_cli(
        "-m",
        "sweep=baselines",
        "data.limit=256",
        "data.val_split=0.02",
        "trainer.epochs=1",
        "trainer.batch_size=64",
        "tracking.log_model=false",
        "trainer.verbose=0",
        store=store,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    client = mlflow_client(store)
    runs = client.search_runs([client.get_experiment_by_name("mnistlab").experiment_id])
    children = {r.data.tags["preset"]: r for r in runs if "mlflow.parentRunId" in r.data.tags}
    assert set(children) == set(BASELINES)
    for preset, run in children.items():
        model, optimizer, loss, _, _ = BASELINES[preset]
        params = run.data.params
        assert (params["model.name"], params["optimizer.name"], params["loss.name"]) == (model, optimizer, loss)
        assert params["trainer.epochs"] == "1" and run.info.status == "FINISHED"
        assert run.data.tags["sweep_preset"] == "baselines"
