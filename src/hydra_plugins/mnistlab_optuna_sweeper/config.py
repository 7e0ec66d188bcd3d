"""The sweeper's config, registered as ``hydra/sweeper: mnistlab_optuna``. Its keys mirror the
official hydra-optuna-sweeper 1.4 (``direction``, ``study_name``, ``storage``, ``n_trials``,
``n_jobs``, ``sampler``, ``params``, ``custom_search_space``), so moving to it later is a config change; ``pruner`` and
``max_failures`` are this project's."""

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from hydra.core.config_store import ConfigStore


@dataclass
class MnistlabOptunaSweeperConf:
    _target_: str = "hydra_plugins.mnistlab_optuna_sweeper.optuna_sweeper.OptunaSweeper"
    # Hydra leaves the sampler and pruner configs alone (the search instantiates them, a GridSampler
    # with the grid of params when it has no search_space of its own)
    _recursive_: bool = False
    # maximize or minimize the job's objective (validation accuracy: maximize); a list of them for a
    # multi-objective search, with `objectives` naming each one's metric
    direction: Any = "maximize"
    # the study's name in the storage; the same name continues the same study
    study_name: Optional[str] = None
    # SQLAlchemy URL of the Optuna storage; null: sqlite:///<root_dir>/optuna.db (beside mlflow.db)
    storage: Optional[str] = None
    # the study's total of finished (COMPLETE or PRUNED) trials; a rerun tops the study up to it
    n_trials: int = 20
    # trials launched at once (a batch, through the configured launcher); null: as many as the
    # launcher runs at once (joblib: its n_jobs; slurm: its array_parallelism), else 1
    n_jobs: Optional[int] = None
    # an Optuna sampler (_target_ and its arguments); its seed is offset by the trials already in the study
    sampler: Any = field(default_factory=lambda: {"_target_": "optuna.samplers.TPESampler", "seed": None})
    # null, a name (median, percentile, successive_halving, hyperband, threshold, patient, nop),
    # or a mapping with _target_ (e.g. optuna.pruners.MedianPruner and its arguments)
    pruner: Any = None
    # failed trials (an exception, or a NaN/inf objective) tolerated; one more stops the search
    max_failures: int = 3
    # the search space: key -> choice(...), interval(...), tag(log, interval(...)), range(...), or a fixed value
    params: Optional[Dict[str, Any]] = None
    # dotted path of a function (cfg, trial) -> None that suggests more keys (trial.suggest_*): a
    # conditional space, as the official plugin's custom_search_space; its keys become overrides
    custom_search_space: Optional[str] = None
    # a multi-objective search: the final metric of each trial's run for each direction, e.g.
    # [val_accuracy, num_params]; null: the job returns one value per direction
    objectives: Optional[List[str]] = None


ConfigStore.instance().store(
    group="hydra/sweeper", name="mnistlab_optuna", node=MnistlabOptunaSweeperConf, provider="mnistlab"
)
