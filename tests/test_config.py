"""The real config: every combination composes, validates and builds; bad values are refused
with one line naming the key, before TensorFlow or MLflow are imported."""

from __future__ import annotations

import itertools
import re

import pytest
import yaml

from conftest import CONF_DIR, ROOT, run_cli
from mnistlab.config import validate
from mnistlab.core.errors import ConfigError

pytestmark = pytest.mark.fast  # make test-fast: no training, no subprocess runs of training

MODELS = sorted(p.stem for p in (CONF_DIR / "model").glob("*.yaml"))
OPTIMIZERS = sorted(p.stem for p in (CONF_DIR / "optimizer").glob("*.yaml"))
LOSSES = sorted(p.stem for p in (CONF_DIR / "loss").glob("*.yaml"))

#: parameter counts of the published architectures (issue 2)
PARAMS = {
    "dense": 669_706,
    "cnn": 1_394_122,
    "tiny_cnn": 9_940,
    "dense512": 407_050,
    "cnn32": 693_962,
    "mlp12": 9_862,
    # and the batch-normalised ones of the best_* presets (issue 4)
    "tiny_cnn_bn": 9_362,
    "cnn_bn": 225_706,
    "cnn_bn16": 109_146,  # experiment=fast's (issue 19)
    "dense_bn": 672_778,
}


def test_every_option_of_the_issue_exists():
    assert set(MODELS) == set(PARAMS)
    assert {"adam", "rmsprop", "sgd"} <= set(OPTIMIZERS)
    assert LOSSES == ["crossentropy", "mse"]


@pytest.mark.parametrize(
    "group,registry", [("optimizer", "OPTIMIZERS"), ("scheduler", "SCHEDULERS"), ("loss", "LOSSES")]
)
def test_each_option_file_has_its_registered_class(group, registry):
    """One place per option: conf/<group>/<name>.yaml and the class registered as <name>, each
    naming a Keras class that exists; no file without a class and no class without a file."""
    import importlib

    import keras

    module = importlib.import_module(f"mnistlab.config.{registry.lower()}")
    options = getattr(module, registry)
    files = {p.stem: yaml.safe_load(p.read_text()) for p in (CONF_DIR / group).glob("*.yaml")}
    assert set(files) == set(options.names())
    for name, values in files.items():
        assert values["name"] == name
        spec = options.instance(values)
        keras_name = spec.keras()[0] if group == "loss" else spec.keras_class
        namespace = {"optimizer": keras.optimizers, "scheduler": keras.optimizers.schedules, "loss": keras.losses}[
            group
        ]
        assert keras_name is None or isinstance(getattr(namespace, keras_name), type), (name, keras_name)


@pytest.mark.parametrize("model,optimizer,loss", list(itertools.product(MODELS, OPTIMIZERS, LOSSES)))
def test_every_combination_composes_validates_and_builds(compose_cfg, model, optimizer, loss):
    from mnistlab.build.model import build_model, compile_model

    cfg = validate(compose_cfg([f"model={model}", f"optimizer={optimizer}", f"loss={loss}"]))
    assert (cfg.model.name, cfg.optimizer.name, cfg.loss.name) == (model, optimizer, loss)
    net = build_model(cfg.model.name, cfg.model.layers, (28, 28, 1), 10)
    compile_model(net, cfg.optimizer, cfg.loss, cfg.trainer)
    assert net.count_params() == PARAMS[model]
    assert net.output_shape == (None, 10)
    assert net.layers[-1].activation.__name__ == "softmax"
    assert net.optimizer.__class__.__name__.lower() == optimizer


def test_optimizer_options_reach_keras(compose_cfg):
    from mnistlab.build.optimizers import make_optimizer

    sgd = make_optimizer(
        validate(
            compose_cfg(["optimizer=sgd", "optimizer.lr=0.05", "optimizer.momentum=0.9", "optimizer.nesterov=true"])
        ).optimizer
    )
    assert (float(sgd.learning_rate), sgd.momentum, sgd.nesterov) == (pytest.approx(0.05), 0.9, True)
    rms = make_optimizer(
        validate(compose_cfg(["optimizer=rmsprop", "optimizer.rho=0.8", "optimizer.centered=true"])).optimizer
    )
    assert (rms.rho, rms.centered) == (0.8, True)
    adam = make_optimizer(validate(compose_cfg(["optimizer.beta_1=0.8", "optimizer.clipnorm=1.0"])).optimizer)
    assert (adam.beta_1, adam.clipnorm) == (0.8, 1.0)


def test_every_yaml_key_is_commented():
    """Each option file explains itself: every key and every layer line carries a comment, or the
    line above it is one. (Text inside block scalars such as the --help header is not a key.)"""
    presets = sorted((ROOT / "experiments").rglob("*.yaml"))  # conf/experiment links there
    assert presets
    for path in [*sorted(CONF_DIR.rglob("*.yaml")), *presets]:
        lines = path.read_text().splitlines()
        block_indent = None
        for i, line in enumerate(lines):
            indent = len(line) - len(line.lstrip())
            if block_indent is not None and (not line.strip() or indent > block_indent):
                continue
            block_indent = indent if re.search(r":\s*[|>][-+]?\s*(#.*)?$", line) else None
            if re.match(r"\s*(- )?[\w.]+:|\s*- \{", line):
                above = lines[i - 1].strip() if i else ""
                assert "#" in line or above.startswith("#"), f"{path.relative_to(ROOT)}:{i + 1}: {line.strip()!r}"


@pytest.mark.parametrize(
    "overrides,key,phrase",
    [
        (["trainer.epochs=0"], "trainer.epochs=0", "must be >= 1"),
        (["trainer.batch_size=0"], "trainer.batch_size=0", "must be >= 1"),
        (["trainer.epochs=abc"], "trainer.epochs='abc'", "expected an integer"),
        (["trainer.batch_size=1.5"], "trainer.batch_size=1.5", "expected an integer"),
        (["optimizer.lr=0"], "optimizer.lr=0.0", "must be > 0"),
        (["optimizer=sgd", "optimizer.lr=-0.1"], "optimizer.lr=-0.1", "must be > 0"),
        (["optimizer.lr=inf"], "optimizer.lr=inf", "finite"),
        (["optimizer=sgd", "optimizer.momentum=1.5"], "optimizer.momentum=1.5", "[0, 1)"),
        (["model.layers.4.rate=1.0"], "model.layers.4.rate=1.0", "[0, 1)"),
        (["model=tiny_cnn", "model.layers.4.rate=-0.1"], "model.layers.4.rate=-0.1", "[0, 1)"),
        (["data.val_split=1.0"], "data.val_split=1.0", "[0, 1)"),
        (["data.val_split=-0.2"], "data.val_split=-0.2", "[0, 1)"),
        (["data.limit=0"], "data.limit=0", ">= 1"),
        (["seed=-1"], "seed=-1", "[0, 4294967296)"),
        (["+trainer.epochz=3"], "trainer.epochz=3", "unknown key; allowed keys here: epochs, batch_size"),
        (["+optimizer.nesterov=true"], "optimizer.nesterov=True", "unknown key"),
        (["optimizer.name=adagrad"], "optimizer.name='adagrad'", "adam, sgd, rmsprop"),
        (["loss.name=hinge"], "loss.name='hinge'", "crossentropy, mse"),
        (["trainer.verbose=3"], "trainer.verbose=3", "auto, 0, 1, 2"),
        (["trainer.threads=0"], "trainer.threads=0", "auto (cores / parallel jobs) or an integer >= 1"),
        (["trainer.threads=many"], "trainer.threads='many'", "auto (cores / parallel jobs) or an integer >= 1"),
        (["data.verify=maybe"], "data.verify='maybe'", "true or false"),
        (["model.layers.6.activation=relu"], "model.layers.6=", "softmax"),
        (["model.layers=[]"], "model.layers=[]", "at least one layer"),
        (["tracking.experiment=' '"], "tracking.experiment=' '", "must not be empty"),
        (["scheduler.name=linear"], "scheduler.name='linear'", "constant, step, exponential, cosine, onecycle"),
        (
            ["scheduler=cosine", "scheduler.warmup_epochs=5"],
            "scheduler.warmup_epochs=5",
            "must be < trainer.epochs (5)",
        ),
        (["scheduler=onecycle", "scheduler.pct_start=1"], "scheduler.pct_start=1.0", "must be in (0, 1)"),
        (["scheduler=step", "scheduler.factor=0"], "scheduler.factor=0.0", "must be in (0, 1)"),
        (["loss=mse", "+loss.label_smoothing=0.1"], "loss.label_smoothing=0.1", "crossentropy only"),
        (["loss.label_smoothing=1"], "loss.label_smoothing=1.0", "must be in [0, 1)"),
        (["data.augment.rotation=-5"], "data.augment.rotation=-5.0", "must be in [0, 180)"),
        (["data.augment.shift=2"], "data.augment.shift=2.0", "must be in [0, 1)"),
        (["trainer.precision=float16"], "trainer.precision='float16'", "float32, mixed_bfloat16, auto"),
        (
            ["callbacks=early_stopping", "data.val_split=0"],
            "callbacks.early_stopping.monitor='val_accuracy'",
            "needs a validation split",
        ),
        (
            ["callbacks.best_checkpoint.monitor=val_f1"],
            "callbacks.best_checkpoint.monitor='val_f1'",
            "val_accuracy, val_loss, accuracy, loss",
        ),
        (["callbacks.early_stopping.patience=0"], "callbacks.early_stopping.patience=0", "must be >= 1"),
    ],
)
def test_bad_values_are_refused_naming_key_and_rule(compose_cfg, overrides, key, phrase):
    with pytest.raises(ConfigError) as info:
        validate(compose_cfg(overrides))
    message = str(info.value)
    assert message.startswith(key) and phrase in message and "\n" not in message


def test_defaults_are_valid_and_typed(compose_cfg, monkeypatch, tmp_path):
    monkeypatch.setenv("MNISTLAB_ROOT", str(tmp_path))  # what run.py sets to its own folder
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    cfg = validate(compose_cfg())
    assert (cfg.model.name, cfg.optimizer.name, cfg.loss.name) == ("cnn", "adam", "crossentropy")
    assert isinstance(cfg.trainer.epochs, int) and isinstance(cfg.optimizer.lr, float)
    assert cfg.root_dir == str(tmp_path)
    assert cfg.tracking.uri == f"sqlite:///{tmp_path}/mlflow.db"  # absolute: sqlite:////...


def _imports(proc_stderr: str) -> set[str]:
    """Top-level modules listed by python -X importtime."""
    names = set()
    for line in proc_stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            names.add(line.rsplit("|", 1)[1].strip().split(".")[0])
    return names


def test_cfg_job_prints_config_without_tensorflow(tmp_path):
    proc = run_cli(
        "model=tiny_cnn",
        "optimizer=sgd",
        "--cfg",
        "job",
        env={"PYTHONPROFILEIMPORTTIME": "1", "MNISTLAB_ROOT": str(tmp_path)},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    printed = yaml.safe_load(proc.stdout)
    assert printed["model"]["name"] == "tiny_cnn" and printed["optimizer"]["name"] == "sgd"
    assert {"tensorflow", "keras", "mlflow"}.isdisjoint(_imports(proc.stderr))


@pytest.mark.parametrize(
    "override,expected",
    [
        ("trainer.epochs=0", "error: trainer.epochs=0: must be >= 1"),
        ("optimizer.lr=-1", "error: optimizer.lr=-1.0: must be > 0"),
        ("data.val_split=1.5", "error: data.val_split=1.5: must be in [0, 1)"),
        ("model.layers.4.rate=2", "error: model.layers.4.rate=2: dropout rate must be a number in [0, 1)"),
        ("trainer.epochz=3", "error: trainer.epochz: no such key in the config"),
        (
            "model=nope",
            "error: In 'config': Could not find 'model/nope'. Available options in 'model': cnn, cnn32, "
            "cnn_bn, cnn_bn16, dense, dense512, dense_bn, mlp12, tiny_cnn, tiny_cnn_bn",
        ),
    ],
)
def test_cli_refuses_bad_config_in_one_line_without_heavy_imports(tmp_path, override, expected):
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    proc = run_cli(override, store=store, env={"PYTHONPROFILEIMPORTTIME": "1"})
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if not line.startswith("import time:")]
    assert len(lines) == 1 and lines[0].startswith(expected), proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr + proc.stdout
    assert {"tensorflow", "keras", "mlflow"}.isdisjoint(_imports(proc.stderr))
    assert not (tmp_path / "mlflow.db").exists()  # nothing was written to MLflow


def test_layer_errors_name_the_layer(compose_cfg, tmp_path):
    """What only Keras can judge (class names, arguments, shapes) still names model.layers.N."""
    from mnistlab.build.model import build_model

    cases = [
        ({"type": "Dens", "units": 10, "activation": "softmax"}, "model.layers.0.type='Dens'", "did you mean Dense"),
        ({"type": "Dense", "unit": 10, "activation": "softmax"}, "model.layers.0=", "Keras refused this Dense"),
        ({"type": "Conv2D", "filters": 4, "kernel_size": 40}, "model.layers.0=", "Keras refused this Conv2D"),
        ({"type": "Dense", "units": 10, "activation": "softmax"}, "model.layers:", "expected (10,)"),
    ]
    for layer, key, phrase in cases:
        with pytest.raises(ConfigError) as info:
            build_model("m", [layer], (28, 28, 1), 10)
        assert str(info.value).startswith(key) and phrase in str(info.value), str(info.value)


def test_compare_models_preset_is_the_model_optimizer_grid(compose_cfg):
    cfg = compose_cfg(["experiment=compare_models"])
    grid = cfg.hydra.sweeper.params
    assert grid.model.split(",") == ["dense", "cnn", "tiny_cnn"]
    assert grid.optimizer.split(",") == ["adam", "sgd", "rmsprop"]  # the three the grid compares
    valid = validate(cfg)  # without -m: one valid run of the defaults, tagged
    assert valid.tracking.tags.preset == "compare_models" and valid.model.name == "cnn"


@pytest.mark.parametrize(
    "threads,parallel,omp,expected",
    [
        ("auto", 1, None, lambda cores: cores),
        ("auto", 2, None, lambda cores: max(1, cores // 2)),
        ("auto", 1000, None, lambda cores: 1),
        ("auto", -1, None, lambda cores: 1),
        (3, 4, None, lambda cores: 3),
        # $OMP_NUM_THREADS (Ray sets it to a task's num_cpus): auto takes it, up to the cores there are
        ("auto", 1, "1", lambda cores: 1),
        ("auto", 1, "64", lambda cores: cores),
        ("auto", 2, "x", lambda cores: max(1, cores // 2)),
        (3, 1, "1", lambda cores: 3),
    ],
)
def test_threads_share_the_cores_between_parallel_jobs(threads, parallel, omp, expected, monkeypatch):
    from mnistlab.train.runtime import cpu_cores, resolve_threads

    if omp is None:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    else:
        monkeypatch.setenv("OMP_NUM_THREADS", omp)
    assert resolve_threads(threads, parallel) == expected(cpu_cores())


@pytest.mark.parametrize("model", MODELS)
def test_the_size_estimate_is_keras_own_count(model):
    """The parameter count validation estimates without Keras equals the built model's, for every
    architecture in conf/model/ (the estimate is what refuses models too large to build)."""
    from mnistlab.config.layers import estimate

    layers = yaml.safe_load((CONF_DIR / "model" / f"{model}.yaml").read_text())["layers"]
    sizes = estimate(layers, (28, 28, 1))
    assert sizes is not None and sum(params for params, _ in sizes) == PARAMS[model]


def test_the_layer_table_is_the_installed_keras():
    """config/keras_layers.json (validation's view of keras.layers) was written from this Keras;
    after an upgrade: python -m mnistlab.build.layer_table."""
    import json

    from mnistlab.build.layer_table import TABLE, table

    assert json.loads(TABLE.read_text()) == json.loads(json.dumps(table()))
